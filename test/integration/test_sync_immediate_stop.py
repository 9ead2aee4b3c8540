"""PostgreSQL stopped with `pg_ctl stop -m immediate` in the middle of a
sync, then started: crm.sync_status shows the run as interrupted (not
running), the next sync closes it as failed, completes, and the data equals
the remote exactly."""

import os
import subprocess

import sync_helpers as sh
from helpers import MockProcess, env, query, wait_until

ROWS = 2000
SLOW = 0.25


def _pg_ctl(*args):
    bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                            check=True).stdout.strip()
    cmd = [os.path.join(bindir, "pg_ctl"), "-D", os.path.join(env("CRM_WORK"), "data")] + list(args)
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def test_sync_survives_immediate_stop():
    with MockProcess(rows=ROWS, seed=11) as mp, sh.SyncDB("immediate") as db:
        conn = db.connect()
        sh.add_server(conn, "imm", mp.url)
        conn.close()
        mp.mock.config(fault={"mode": "slow", "count": -1, "slow_seconds": SLOW,
                              "path": "/appointments"})
        watch = db.connect()
        t = sh.start_sync(db, "imm")
        try:
            row = wait_until(lambda: (sh.running_row(watch, "imm") or {}).get("pages_done", 0) >= 3
                             and sh.running_row(watch, "imm"),
                             timeout=60, what="the sync to store 3 pages")
            interrupted = row["id"]
        finally:
            watch.close()
        _pg_ctl("stop", "-m", "immediate", "-w")
        t.wait(30)
        assert t.error is not None, "the caller got rows: %r" % (t.rows,)
        t.close()
        _pg_ctl("start", "-w", "-t", "60", "-l", os.path.join(env("CRM_WORK"), "postgres.log"))
        sh.wait_for_cluster(60).close()

        mp.mock.config(fault=None)
        conn = db.connect()
        try:
            status = query(conn, "SELECT last_sync_id, last_status, running_sync_id"
                                 " FROM crm.sync_status WHERE server_name = 'imm'")[0]
            assert status == (interrupted, "interrupted", None), status
            done = sh.sync_ok(conn, "imm")
            assert done["id"] > interrupted
            old = sh.log_rows(conn, "imm", "id = %d" % interrupted)[0]
            assert old["status"] == "failed" and (old["error_message"] or "").startswith("interrupted"), old
            assert not sh.log_rows(conn, "imm", "status = 'running'")
            sh.assert_synced(conn, "imm", mp.mock, "after the immediate stop")
        finally:
            conn.close()
