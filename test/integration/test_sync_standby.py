"""On a hot standby, crm_sync_now() and crm_sync_full() refuse at once with
SQLSTATE 25006, instead of registering a worker that would wait for the end
of recovery and write then."""

import os
import shutil
import subprocess

import psycopg2

import sync_helpers as sh
from helpers import MockProcess, env, expect_error, free_port, scalar, wait_until


def _as_pg(*cmd):
    cmd = list(cmd)
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, capture_output=True, timeout=180)


def _bindir():
    return os.environ.get("PG_BIN") or subprocess.run(
        ["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()


def test_sync_is_refused_on_a_standby():
    standby = os.path.join(env("CRM_WORK"), "standby")
    shutil.rmtree(standby, ignore_errors=True)
    port = free_port()
    with MockProcess(rows=10, seed=17) as mp, sh.SyncDB("standby") as db:
        conn = db.connect()
        sh.add_server(conn, "sb", mp.url)
        conn.close()
        _as_pg(os.path.join(_bindir(), "pg_basebackup"), "-D", standby, "-R", "-X", "stream", "-c", "fast",
               "-h", env("PGHOST"), "-p", env("PGPORT"), "-U", "postgres")
        _as_pg(os.path.join(_bindir(), "pg_ctl"), "-D", standby, "-l", standby + ".log",
               "-w", "-t", "60", "-o", "-p %d" % port, "start")
        try:
            conn = wait_until(lambda: _try_connect(port, db.name), timeout=30,
                              what="the standby to accept connections")
            assert scalar(conn, "SELECT pg_is_in_recovery()") is True
            for call in ("crm_sync_now('sb')", "crm_sync_full('sb')", "crm_sync_now()"):
                e = expect_error(conn, "SELECT * FROM " + call)
                assert e.pgcode == "25006", (call, e.pgcode, str(e))
                assert "cannot run a crm_fdw sync during recovery" in str(e), str(e)
            conn.close()
        finally:
            _as_pg(os.path.join(_bindir(), "pg_ctl"), "-D", standby, "-m", "fast", "-w", "stop")
            shutil.rmtree(standby, ignore_errors=True)


def _try_connect(port, dbname):
    try:
        # a sync that waited for the promotion would hang the test: cut it short
        conn = psycopg2.connect(host=env("PGHOST"), port=port, user="postgres", dbname=dbname,
                                options="-c statement_timeout=20s")
    except psycopg2.OperationalError:
        return None
    conn.autocommit = True
    return conn
