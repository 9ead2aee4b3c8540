"""Cancelling the caller of crm_sync_now stops the sync worker too.

A slow remote keeps a sync busy; pg_cancel_backend (or statement_timeout) of
the backend waiting in crm_sync_now ends it within 1 s with SQLSTATE 57014,
and the 'crm_fdw sync' worker is gone within a few seconds.  The pages it
stored stay; the next sync marks the cancelled run failed (interrupted),
completes, and the data equals the remote exactly.
"""

import time

import psycopg2

import sync_helpers as sh
from helpers import MockProcess, scalar, wait_until

ROWS = 2000
SLOW = 0.3
CANCEL_BOUND = 1.0
WORKER_GONE_BOUND = 5.0


def _interrupt_and_recover(db, mp, server, interrupt, what):
    conn = db.connect()
    sh.add_server(conn, server, mp.url)
    mp.mock.config(fault={"mode": "slow", "count": -1, "slow_seconds": SLOW,
                          "path": "/appointments"})
    t, t0 = interrupt(db, conn)
    try:
        t.wait(15)
        took = t.finished_at - t0
        assert isinstance(t.error, psycopg2.Error), "no error after the %s: %r" % (what, t.rows)
        assert t.error.pgcode == "57014", "SQLSTATE %s: %s" % (t.error.pgcode, t.error)
        assert took < CANCEL_BOUND, "%s of crm_sync_now took %.2fs" % (what, took)
        row = sh.log_rows(conn, server)[-1]
        worker = row["worker_pid"]
        wait_until(lambda: worker not in sh.worker_pids(conn), timeout=WORKER_GONE_BOUND,
                   what="the sync worker %d to stop after the %s" % (worker, what))
        wait_until(lambda: not scalar(conn, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                      (worker,)), timeout=WORKER_GONE_BOUND,
                   what="the sync worker %d to leave pg_stat_activity" % worker)
        # no more requests from the stopped worker
        n = len(mp.mock.log())
        time.sleep(SLOW * 2)
        assert len(mp.mock.log()) == n, "requests went on after the %s" % what
        # the interrupted caller's session works
        assert scalar(t.conn, "SELECT 1") == 1
        interrupted = row["id"]
    finally:
        t.close()

    mp.mock.config(fault=None)
    done = sh.sync_ok(conn, server)
    assert done["id"] > interrupted
    old = sh.log_rows(conn, server, "id = %d" % interrupted)[0]
    assert old["status"] == "failed", "the run interrupted by the %s is %r" % (what, old["status"])
    assert (old["error_message"] or "").startswith("interrupted"), old["error_message"]
    assert not sh.log_rows(conn, server, "status = 'running'"), "a run stays 'running'"
    sh.assert_synced(conn, server, mp.mock, "after the %s" % what)
    conn.close()


def _started(db, conn, server, **settings):
    t = sh.start_sync(db, server, **settings)
    wait_until(lambda: (sh.running_row(conn, server) or {}).get("pages_done", 0) >= 2,
               timeout=30, what="the sync to store 2 pages")
    return t


def test_sync_cancel_caller():
    """pg_cancel_backend of a backend waiting in crm_sync_now: 57014 within
    1 s, the worker stops within 5 s, the next sync completes exactly."""
    def cancel(db, conn):
        t = _started(db, conn, "cx")
        t0 = time.monotonic()
        assert scalar(conn, "SELECT pg_cancel_backend(%s)", (t.pid,))
        return t, t0
    with MockProcess(rows=ROWS, seed=5) as mp, sh.SyncDB("cancel") as db:
        _interrupt_and_recover(db, mp, "cx", cancel, "cancel")


def test_sync_statement_timeout():
    """statement_timeout on crm_sync_now works as a cancel: 57014 on time,
    the worker stops, the next sync completes exactly."""
    def timeout(db, conn):
        t = sh.start_sync(db, "st", statement_timeout="1500ms")
        wait_until(lambda: sh.running_row(conn, "st"), timeout=5, what="the sync to start")
        return t, t.started_at + 1.5
    with MockProcess(rows=ROWS, seed=6) as mp, sh.SyncDB("stimeout") as db:
        _interrupt_and_recover(db, mp, "st", timeout, "statement_timeout")


def test_sync_terminate_caller():
    """pg_terminate_backend of a backend waiting in crm_sync_now (a FATAL,
    which no PG_CATCH sees) stops the worker too; the next sync completes
    exactly."""
    with MockProcess(rows=ROWS, seed=6) as mp, sh.SyncDB("terminate") as db:
        conn = db.connect()
        sh.add_server(conn, "tx", mp.url)
        mp.mock.config(fault={"mode": "slow", "count": -1, "slow_seconds": SLOW,
                              "path": "/appointments"})
        t = _started(db, conn, "tx")
        try:
            worker = sh.running_row(conn, "tx")["worker_pid"]
            assert scalar(conn, "SELECT pg_terminate_backend(%s)", (t.pid,))
            t.wait(15)
            assert isinstance(t.error, psycopg2.Error), "no error after the terminate: %r" % (t.rows,)
            wait_until(lambda: not scalar(conn, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                          (worker,)), timeout=WORKER_GONE_BOUND,
                       what="the sync worker %d to stop after its caller was terminated" % worker)
        finally:
            t.close()
        mp.mock.config(fault=None)
        sh.sync_ok(conn, "tx")
        assert not sh.log_rows(conn, "tx", "status = 'running'"), "a run stays 'running'"
        sh.assert_synced(conn, "tx", mp.mock, "after the terminate")
        conn.close()
