"""Cancel, statement_timeout and terminate stop a scan within a second.

The remote hangs, trickles its body or asks for a 30 s wait; a cancel from
another connection (or statement_timeout, or pg_terminate_backend) must end
the query within 1 s, whatever the FDW is waiting for.  Afterwards the same
backend runs a normal scan (its curl handle is still usable), and a
terminated backend takes nobody else with it.
"""

import time

import psycopg2

import helpers
from helpers import backend_pid, mock, query, scalar, start_query

SCAN = "SELECT count(*) FROM remote.appointments"
CANCEL_BOUND = 1.0          # seconds from the cancel to the query's end


def db():
    return helpers.module_db(__name__)


def assert_backend_still_scans(conn):
    """The backend that was interrupted runs a full scan correctly."""
    mock().config(fault=None)
    n = scalar(conn, "SELECT count(DISTINCT id) FROM remote.appointments")
    assert n == 500, "after the cancel a scan returned %r distinct ids, not 500" % n


def cancel_while(fault, what, sql=SCAN):
    """Start sql against fault, cancel it once the fault fired, and check the
    bound, the SQLSTATE and the backend afterwards."""
    conn, other = db().connect(), db().connect()
    try:
        mock().config(fault=fault)
        q = start_query(conn, sql)
        mock().wait_fault_fired(1)
        time.sleep(0.3)                         # now waiting inside the FDW
        assert q.is_alive(), "the query ended before the cancel: %r %r" % (q.rows, q.error)
        t0 = time.monotonic()
        assert scalar(other, "SELECT pg_cancel_backend(%s)", (backend_pid(conn),))
        q.wait(15)
        took = q.finished_at - t0
        assert isinstance(q.error, psycopg2.Error), "no error after the cancel: %r" % (q.rows,)
        assert q.error.pgcode == "57014", "SQLSTATE %s: %s" % (q.error.pgcode, q.error)
        assert took < CANCEL_BOUND, "cancel during %s took %.2fs" % (what, took)
        assert_backend_still_scans(conn)
    finally:
        conn.close()
        other.close()


def test_cancel_while_remote_hangs():
    """pg_cancel_backend ends a scan waiting on a silent remote (hang 30 s)
    within 1 s with SQLSTATE 57014."""
    cancel_while({"mode": "hang", "count": 1, "hang_seconds": 30}, "a hang")


def test_cancel_while_body_trickles():
    """pg_cancel_backend ends a scan receiving a body spread over 20 s."""
    cancel_while({"mode": "slow", "count": 1, "slow_seconds": 20}, "a slow body")


def test_cancel_during_retry_after_wait():
    """pg_cancel_backend ends the wait a 429 with Retry-After: 30 asked for,
    and no retry is sent."""
    mock().clear_log()
    cancel_while({"mode": "429", "count": 1, "retry_after_seconds": 30}, "a Retry-After wait",
                 sql="SELECT count(*) FROM remote.appointments WHERE id = 77")
    sent = [(e["path"], e["status"]) for e in mock().log()]
    # then only the pages of the scan that checks the backend afterwards
    assert sent[0] == ("/api/crm/appointments/77", 429), "requests: %r" % sent
    assert all(p != "/api/crm/appointments/77" for p, _ in sent[1:]), \
        "the request was retried after the cancel: %r" % sent


def test_cancel_on_id_lookup_hang():
    """A cancel also ends a GET /appointments/{id} that hangs (a nested-loop
    style lookup), within 1 s."""
    cancel_while({"mode": "hang", "count": 1, "hang_seconds": 30, "path": "/appointments/"},
                 "an id lookup", sql="SELECT * FROM remote.appointments WHERE id IN (3, 4)")


def test_statement_timeout_while_remote_hangs():
    """statement_timeout = 500ms ends a scan of a hanging remote in < 1.5 s
    with SQLSTATE 57014, and the backend scans normally afterwards."""
    conn = db().connect(statement_timeout="500ms")
    try:
        mock().config(fault={"mode": "hang", "count": 1, "hang_seconds": 30})
        t0 = time.monotonic()
        e = helpers.expect_error(conn, SCAN)
        took = time.monotonic() - t0
        assert e.pgcode == "57014", "SQLSTATE %s: %s" % (e.pgcode, e)
        assert 0.45 <= took < 1.5, "statement_timeout 500ms took %.2fs" % took
        helpers.execute(conn, "SET statement_timeout = '60s'")
        assert_backend_still_scans(conn)
    finally:
        conn.close()


def test_terminate_while_remote_hangs():
    """pg_terminate_backend of a backend waiting on a hang: its connection is
    gone within 1 s, other sessions live on, and there is no crash restart."""
    conn, bystander, killer = db().connect(), db().connect(), helpers.connect()
    try:
        started = scalar(killer, "SELECT pg_postmaster_start_time()")
        log_from = helpers.log_size()
        pid = backend_pid(conn)
        mock().config(fault={"mode": "hang", "count": 1, "hang_seconds": 30})
        q = start_query(conn, SCAN)
        mock().wait_fault_fired(1)
        time.sleep(0.3)
        t0 = time.monotonic()
        assert scalar(killer, "SELECT pg_terminate_backend(%s)", (pid,))
        q.wait(15)
        took = q.finished_at - t0
        assert q.error is not None, "the query returned %r" % (q.rows,)
        assert took < CANCEL_BOUND, "terminate took %.2fs" % took
        helpers.wait_until(lambda: not scalar(
            killer, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)),
            timeout=CANCEL_BOUND, what="the terminated backend to exit")
        try:
            query(conn, "SELECT 1")
            raise AssertionError("the terminated connection still answers")
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            pass
        # a crash would have made the postmaster kill every other session too
        assert scalar(bystander, "SELECT 1") == 1, "another session died"
        assert scalar(killer, "SELECT pg_postmaster_start_time()") == started
        mock().config(fault=None)
        assert scalar(bystander, SCAN) == 500
        time.sleep(0.2)
        log = helpers.read_log_since(log_from)
        for sign in ("was terminated by signal", "terminating any other active server processes",
                     "all server processes terminated"):
            assert sign not in log, "server log shows a crash: %r" % sign
    finally:
        for c in (conn, bystander, killer):
            c.close()
