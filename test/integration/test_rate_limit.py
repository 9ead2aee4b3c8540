"""Rate limits: the remote's (429 + Retry-After) and the client-side one.

A scan that runs into the remote's limit waits as told and completes with
every row, or, with no retries left, fails with a clear error: never a short
or empty result.  The server option rate_limit_per_minute holds requests
back on the client side.  The tests that must wait for a real one-minute
window run only with CRM_TEST_LONG=1.
"""

import time

import psycopg2

import helpers
from helpers import backend_pid, mock, query, scalar

_ready = set()


def db():
    """This module's database, with servers over the default mock:
    limited (3 retries), noretry (none) -- both 50 rows a page, no client
    limit -- and client3 (rate_limit_per_minute 3)."""
    d = helpers.module_db(__name__)
    if d.name not in _ready:
        conn = d.connect()
        try:
            url = helpers.env("CRM_MOCK_URL")
            helpers.create_server(conn, "limited", url, schema="limited",
                                  max_retries=3, page_size=50)
            helpers.create_server(conn, "noretry", url, schema="noretry",
                                  max_retries=0, page_size=50)
            helpers.create_server(conn, "client3", url, schema="client3",
                                  rate_limit_per_minute=3, max_retries=0)
        finally:
            conn.close()
        _ready.add(d.name)
    return d


def same_as_local(conn, table, where="true"):
    """The ids and typed columns of table equal the local copy's."""
    cols = ", ".join(helpers.TYPED_COLUMNS)
    got = query(conn, "SELECT %s FROM %s WHERE %s" % (cols, table, where))
    want = query(conn, "SELECT %s FROM local_copy WHERE %s" % (cols, where))
    ids = [r[0] for r in got]
    assert len(ids) == len(set(ids)), "duplicate rows: %d rows, %d ids" % (len(ids), len(set(ids)))
    assert sorted(got) == sorted(want), "remote %d rows, local %d; missing %s" % (
        len(got), len(want), sorted({r[0] for r in want} - set(ids))[:20])
    return len(got)


def retries_honour_retry_after(log, seconds):
    """Every 429 is followed by a retry of the same request after >= seconds."""
    for i, e in enumerate(log):
        if e["status"] != 429:
            continue
        later = [x for x in log[i + 1:] if x["raw_query"] == e["raw_query"]
                 and x["path"] == e["path"]]
        assert later, "request %s?%s was never retried" % (e["path"], e["raw_query"])
        gap = later[0]["ts"] - e["ts"]
        assert gap >= seconds, "retried after %.2fs, Retry-After said %ds" % (gap, seconds)


def test_remote_limit_heals_with_retry_after():
    """A scan of 10 pages against a limit of 5 requests (the remote sends no
    X-RateLimit headers, so the FDW learns of it from the 429) waits
    Retry-After and returns every row exactly once."""
    conn = db().connect()
    try:
        helpers.load_local_copy(conn)
        mock().config(rate_limit_per_minute=5, rate_limit_window_seconds=2,
                      rate_limit_headers=False, retry_after_seconds=2)
        mock().clear_log()
        assert same_as_local(conn, "limited.appointments") == 500
        log = mock().log()
        assert any(e["status"] == 429 for e in log), "no 429 was received: %d requests" % len(log)
        retries_honour_retry_after(log, 2)
    finally:
        conn.close()


def test_remote_limit_used_up_by_another_client():
    """When another client of the same token has used the window up (the
    remote sends the contract's X-RateLimit headers), the scan's first request
    gets a 429, waits, and the scan completes with every row."""
    conn = db().connect()
    try:
        helpers.load_local_copy(conn)
        mock().config(rate_limit_per_minute=5, rate_limit_window_seconds=3)
        for _ in range(5):
            assert mock().api_get("/appointments/1")[0] == 200
        mock().clear_log()
        where = "appointment_date < '2024-07-01'"
        assert same_as_local(conn, "limited.appointments", where) > 100
        log = mock().log()
        assert log[0]["status"] == 429, "expected a first 429, got %r" % log[0]["status"]
        assert [e["status"] for e in log[1:]] == [200] * (len(log) - 1), \
            [e["status"] for e in log]
        retries_honour_retry_after(log, 1)
    finally:
        conn.close()


def test_remote_limit_without_retries_is_an_error():
    """With max_retries 0 a 429 ends the scan with SQLSTATE HV000 and "rate
    limit" in the message, mid-scan or at its first request: never an empty
    or short result."""
    conn = db().connect()
    try:
        mock().config(rate_limit_per_minute=5, rate_limit_headers=False, retry_after_seconds=2)
        mock().clear_log()
        for sql in ("SELECT count(*) FROM noretry.appointments",
                    "SELECT id FROM noretry.appointments"):
            mock().config(rate_limit_per_minute=5)          # a new window
            e = helpers.expect_error(conn, sql)
            assert e.pgcode == "HV000", "SQLSTATE %s: %s" % (e.pgcode, e)
            assert "rate limit" in e.diag.message_primary.lower(), e.diag.message_primary
            statuses = [x["status"] for x in mock().log()]
            assert statuses[-1] == 429 and statuses.count(429) == 1, statuses
            mock().clear_log()
        # the window is used up before the scan starts
        mock().config(rate_limit_per_minute=5, rate_limit_headers=True)
        for _ in range(5):
            mock().api_get("/appointments/1")
        e = helpers.expect_error(conn, "SELECT count(*) FROM noretry.appointments")
        assert e.pgcode == "HV000" and "rate limit" in e.diag.message_primary.lower(), str(e)
    finally:
        conn.close()


def test_client_limit_holds_the_fourth_request():
    """With rate_limit_per_minute 3 a scan needing 4 requests sends 3 at once
    and holds the 4th (not sent within 1.5 s); the wait is cancellable within
    1 s."""
    conn, other = db().connect(), db().connect()
    try:
        mock().clear_log()
        q = helpers.start_query(conn, "SELECT id FROM client3.appointments WHERE id IN (1, 2, 3, 4)")
        helpers.wait_until(lambda: len(mock().log()) >= 3, timeout=5, what="3 requests")
        time.sleep(1.5)
        assert q.is_alive(), "the scan finished: %r %r" % (q.rows, q.error)
        assert len(mock().log()) == 3, [e["path"] for e in mock().log()]
        t0 = time.monotonic()
        scalar(other, "SELECT pg_cancel_backend(%s)", (backend_pid(conn),))
        q.wait(10)
        assert isinstance(q.error, psycopg2.Error) and q.error.pgcode == "57014", repr(q.error)
        assert q.finished_at - t0 < 1.0, "cancel took %.2fs" % (q.finished_at - t0)
    finally:
        conn.close()
        other.close()


def test_client_limit_spreads_requests_over_a_minute():
    """(long) With rate_limit_per_minute 3, the 4th request of a scan goes out
    a full window (60 s) after the first, and the scan returns its rows."""
    if not helpers.long_tests_enabled():
        raise helpers.Skip("takes a minute; set CRM_TEST_LONG=1")
    conn = db().connect()
    try:
        mock().clear_log()
        rows = query(conn, "SELECT id FROM client3.appointments WHERE id IN (1, 2, 3, 4) ORDER BY id")
        assert [r[0] for r in rows] == [1, 2, 3, 4], rows
        ts = [e["ts"] for e in mock().log()]
        assert len(ts) == 4, ts
        assert ts[2] - ts[0] < 5, "the first 3 requests were delayed: %r" % ts
        assert ts[3] - ts[0] >= 59.5, "4th request after %.1fs, not >= 60 s" % (ts[3] - ts[0])
    finally:
        conn.close()


def test_remote_limit_with_one_minute_window():
    """(long) The contract's limit as the API plays it -- a 60 s window,
    X-RateLimit headers on every answer -- with 10 pages against 5 requests a
    minute: the scan waits for the window and returns every row once."""
    if not helpers.long_tests_enabled():
        raise helpers.Skip("takes a minute; set CRM_TEST_LONG=1")
    conn = db().connect()
    try:
        helpers.load_local_copy(conn)
        mock().config(rate_limit_per_minute=5)
        mock().clear_log()
        t0 = time.monotonic()
        assert same_as_local(conn, "limited.appointments") == 500
        assert time.monotonic() - t0 >= 55, "finished too soon for a 60 s window"
        retries_honour_retry_after(mock().log(), 1)
    finally:
        conn.close()
