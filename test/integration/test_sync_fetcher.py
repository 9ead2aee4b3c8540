"""The sync's fetcher: a 'crm_fdw fetcher' background worker reads the pages
of a walk ahead of the sync worker that stores them.

It runs only while its sync walks and leaves with it (also when the sync is
terminated); an error it meets is the sync's error, as the sync would have
raised it reading the pages itself (crm_fdw.sync_fetcher = off); the request
counters it keeps reach crm.sync_log.
"""

import time

import helpers
import sync_helpers as sh
from helpers import MockProcess, execute, scalar, query, wait_until

ROWS = 2000            # 20 pages of 100
SLOW = 0.1
NO_FETCHER = {"crm_fdw.sync_fetcher": "off"}


def fetcher_pids(conn, datname):
    return [r[0] for r in query(conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'crm_fdw fetcher'"
                                      " AND datname = %s ORDER BY pid", (datname,))]


def _watch_sync(db, conn, server, **settings):
    """Run a sync of server in a thread; the fetcher pids seen while it ran."""
    seen = set()
    t = sh.start_sync(db, server, **settings)
    try:
        while t.is_alive():
            seen.update(fetcher_pids(conn, db.name))
            time.sleep(0.02)
        t.wait(60)
    finally:
        t.close()
    assert t.error is None, "the sync failed: %s" % t.error
    return seen, t.rows[0]


def test_fetcher_runs_beside_the_sync_and_leaves():
    """One fetcher while the sync walks, none after it; the same data,
    counters and requests as a sync that reads its pages itself."""
    with MockProcess(rows=ROWS, seed=11) as mp, sh.SyncDB("fetcher") as db:
        conn = db.connect()
        sh.add_server(conn, "fa", mp.url)
        sh.add_server(conn, "fb", mp.url)
        mp.mock.config(fault={"mode": "slow", "count": -1, "slow_seconds": SLOW,
                              "path": "/appointments"})

        mp.mock.clear_log()
        seen, with_fetcher = _watch_sync(db, conn, "fa")
        sent_with = len(mp.mock.log())
        assert len(seen) == 1, "fetchers seen during the sync: %r" % seen
        assert not fetcher_pids(conn, db.name), "a fetcher stayed after its sync"

        mp.mock.clear_log()
        seen, without = _watch_sync(db, conn, "fb", **NO_FETCHER)
        sent_without = len(mp.mock.log())
        assert not seen, "crm_fdw.sync_fetcher = off, yet a fetcher ran: %r" % seen

        for row in (with_fetcher, without):
            assert row["status"] == "completed", row
            assert row["records_fetched"] == ROWS, row
        assert with_fetcher["requests"] == sent_with, \
            "sync_log says %d requests, the mock got %d" % (with_fetcher["requests"], sent_with)
        assert with_fetcher["requests"] == without["requests"] == sent_without
        for key in ("records_created", "records_updated", "records_unchanged", "records_failed"):
            assert with_fetcher[key] == without[key], (key, with_fetcher, without)
        mp.mock.config(fault=None)
        sh.assert_synced(conn, "fa", mp.mock, "with the fetcher")
        sh.assert_synced(conn, "fb", mp.mock, "without the fetcher")
        conn.close()


def test_fetcher_error_is_the_sync_error():
    """A page that cannot be read fails the sync with the message, detail and
    request count it has without a fetcher; the batches before it stay."""
    results = {}
    with sh.SyncDB("fetchererr") as db:
        conn = db.connect()
        for server, settings in (("ea", {}), ("eb", NO_FETCHER)):
            # a mock each: the page the first sync's fetcher sent ahead of the
            # failing one may reach the mock late and count toward "after"
            with MockProcess(rows=ROWS, seed=12) as mp:
                sh.add_server(conn, server, mp.url)
                # page 13 is not JSON; pages 1-10 are one batch, stored before it
                mp.mock.config(fault={"mode": "invalid_json", "count": 1, "after": 12,
                                      "path": "/appointments"})
                c = db.connect(**settings)
                row = sh.sync(c, server)[0]
                c.close()
            assert row["status"] == "failed", row
            stored = scalar(conn, "SELECT count(*) FROM crm.appointments WHERE server_name = %s", (server,))
            log = sh.log_rows(conn, server)[-1]
            results[server] = (row["error_message"], log["error_detail"], row["requests"], stored)
        assert results["ea"] == results["eb"], results
        message, detail, requests, stored = results["ea"]
        assert "invalid JSON" in message and "page=13" in message, message
        assert detail, "no detail: %r" % (results,)
        assert requests == 13, results
        assert stored == 1000, results
        conn.close()


def test_terminating_the_sync_stops_its_fetcher():
    """pg_terminate_backend of the sync worker while its fetcher waits on a
    page that hangs for 60 s: the fetcher is gone within 5 s and sends
    nothing more."""
    with MockProcess(rows=ROWS, seed=13) as mp, sh.SyncDB("fetcherkill") as db:
        conn = db.connect()
        sh.add_server(conn, "kx", mp.url)
        mp.mock.config(fault={"mode": "hang", "count": 1, "after": 3, "hang_seconds": 60,
                              "path": "/appointments"})
        t = sh.start_sync(db, "kx")
        try:
            wait_until(lambda: len(mp.mock.log()) >= 4, timeout=10, what="the request of page 4")
            fetcher = fetcher_pids(conn, db.name)[0]
            worker = sh.running_row(conn, "kx")["worker_pid"]
            assert scalar(conn, "SELECT pg_terminate_backend(%s)", (worker,))
            wait_until(lambda: not scalar(conn, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                          (fetcher,)), timeout=5,
                       what="the fetcher %d to stop after its sync was terminated" % fetcher)
            n = len(mp.mock.log())
            time.sleep(2.5)
            assert len(mp.mock.log()) == n, "requests went on after the sync was terminated"
            t.wait(15)
        finally:
            t.close()
        mp.mock.config(fault=None)
        sh.sync_ok(conn, "kx")
        sh.assert_synced(conn, "kx", mp.mock, "after the terminate")
        conn.close()


def _stop_fetcher_mid_sync(db, conn, server, ready, stop, log_line):
    """Start a sync of server; once ready(fetcher pid) holds, call stop
    ("pg_terminate_backend" or "pg_cancel_backend") on its fetcher.  The sync
    must fail (not hang) with "the crm_fdw fetcher ... stopped before the
    last page", a detail pointing to the server log, and the log must say
    log_line.  Returns the sync's row."""
    offset = helpers.log_size()
    t = sh.start_sync(db, server)
    try:
        fetcher = wait_until(lambda: fetcher_pids(conn, db.name), timeout=10,
                             what="the fetcher")[0]
        wait_until(lambda: ready(fetcher), timeout=10, what="the fetcher to be where it is stopped")
        assert scalar(conn, "SELECT %s(%%s)" % stop, (fetcher,))
        t.wait(30)
    finally:
        t.close()
    assert t.error is None, t.error
    run = t.rows[0]
    assert run["status"] == "failed", run
    assert ('the crm_fdw fetcher of server "%s" stopped before the last page' % server
            in run["error_message"]), run
    assert "the server log says why it stopped" in run["error_detail"], run
    log = helpers.read_log_since(offset)
    assert log_line in log, log[-2000:]
    return run


def test_terminated_fetcher_fails_its_sync_with_a_pointer_to_the_log():
    """pg_terminate_backend of the fetcher while it waits on a page that hangs:
    the sync fails (not hangs) with "the crm_fdw fetcher ... stopped before the
    last page" and a detail pointing to the server log, which says the
    fetcher was terminated; the cursor is held; the next sync completes
    exactly."""
    with MockProcess(rows=ROWS, seed=18) as mp, sh.SyncDB("fetcherstop") as db:
        conn = db.connect()
        sh.add_server(conn, "kf", mp.url)
        mp.mock.config(fault={"mode": "hang", "count": 1, "after": 3, "hang_seconds": 60,
                              "path": "/appointments"})
        _stop_fetcher_mid_sync(
            db, conn, "kf", lambda pid: len(mp.mock.log()) >= 4, "pg_terminate_backend",
            "terminating background worker \"crm_fdw fetcher\" due to administrator command")
        assert scalar(conn, "SELECT sync_cursor FROM crm.sync_state WHERE server_name = 'kf'") is None
        mp.mock.config(fault=None)
        sh.sync_ok(conn, "kf")
        sh.assert_synced(conn, "kf", mp.mock, "after the fetcher was terminated")
        conn.close()


def test_fetcher_cancelled_with_a_full_queue_fails_its_sync_cleanly():
    """pg_cancel_backend of the fetcher while it waits for room in a full
    queue (the sync's store made slow by a trigger), so the page it is
    sending is cut in two: the sync fails with "stopped before the last page"
    (not with a garbled page or a hang), the log has the cancel, the server
    does not restart, the batch stored before stays, and the next sync
    completes exactly."""
    with MockProcess(rows=6000, seed=19) as mp, sh.SyncDB("fetchercancel") as db:
        conn = db.connect()
        started = scalar(conn, "SELECT pg_postmaster_start_time()")
        sh.add_server(conn, "kq", mp.url)
        execute(conn, """
            CREATE FUNCTION public.slow_store() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$""")
        execute(conn, "CREATE TRIGGER slow_store AFTER INSERT ON crm.appointments "
                      "FOR EACH STATEMENT EXECUTE FUNCTION public.slow_store()")
        _stop_fetcher_mid_sync(
            db, conn, "kq",
            lambda pid: scalar(conn, "SELECT wait_event FROM pg_stat_activity WHERE pid = %s",
                               (pid,)) == "MessageQueueSend",
            "pg_cancel_backend", "canceling statement due to user request")
        assert scalar(conn, "SELECT pg_postmaster_start_time()") == started, "the server restarted"
        stored = scalar(conn, "SELECT count(*) FROM crm.appointments WHERE server_name = 'kq'")
        assert stored > 0 and stored % 1000 == 0, "stored %d rows: not whole batches" % stored
        execute(conn, "DROP TRIGGER slow_store ON crm.appointments")
        sh.sync_ok(conn, "kq")
        sh.assert_synced(conn, "kq", mp.mock, "after the fetcher was cancelled")
        conn.close()


def _walk_then_retry_under_a_limit(db_name, client_limit, headers):
    """A sync whose walk (3 pages, read by the fetcher) uses up a limit of 3
    requests a minute, then retries a failed row by id (in the sync worker;
    one the listing no longer shows, so a 404 resolves it): that fourth
    request must wait for the window, not draw a 429."""
    with MockProcess(rows=250, seed=14, rate_limit=3) as mp, sh.SyncDB(db_name) as db:
        conn = db.connect()
        mp.mock.config(rate_limit_headers=headers)
        sh.add_server(conn, "rl", mp.url, rate_limit_per_minute=client_limit, max_retries=0)
        execute(conn, "INSERT INTO crm.sync_errors (server_name, external_appointment_id, error_message)"
                      " VALUES ('rl', 999999, 'planted by the test')")
        mp.mock.clear_log()
        t0 = time.monotonic()
        done = sh.sync_ok(conn, "rl")
        took = time.monotonic() - t0
        statuses = [e["status"] for e in mp.mock.log()]
        assert statuses == [200, 200, 200, 404], "requests: %r" % statuses
        assert done["requests"] == 4, done
        assert took >= 50, "the retry did not wait for the window (%.1fs)" % took
        assert not scalar(conn, "SELECT count(*) FROM crm.sync_errors WHERE resolved_at IS NULL")
        conn.close()


def test_rate_window_is_shared_with_the_fetcher():
    """The client-side limit (rate_limit_per_minute 3) counts the fetcher's
    sends in the sync worker (the remote sends no rate headers); and the
    hold from the remote's X-RateLimit-Remaining: 0 on the fetcher's last
    page holds the sync worker (no client-side limit).  Two minutes: long
    profile."""
    if not helpers.long_tests_enabled():
        raise helpers.Skip("takes two minutes; set CRM_TEST_LONG=1")
    _walk_then_retry_under_a_limit("fetcherrl1", 3, False)
    _walk_then_retry_under_a_limit("fetcherrl2", 0, True)


def test_nul_in_a_text_does_not_stop_the_sync():
    """An appointment whose notes hold U+0000 (PostgreSQL text cannot): it is
    stored with U+FFFD there and a WARNING naming it, and every other row is
    exact; with and without the fetcher, and the next sync is not stuck."""
    with MockProcess(rows=300, seed=15) as mp, sh.SyncDB("nulnotes") as db:
        conn = db.connect()
        mp.mock.mutate(update=[5], fields={"client_notes": "before\u0000after"})
        data = mp.mock.data()
        for row in data:
            if row["id"] == 5:
                assert row["client_notes"] == "before\u0000after", row["client_notes"]
                row["client_notes"] = "before\ufffdafter"
        for server, settings in (("na", {}), ("nb", NO_FETCHER)):
            sh.add_server(conn, server, mp.url)
            offset = helpers.log_size()
            c = db.connect(**settings)
            done = sh.sync_ok(c, server)
            assert done["records_failed"] == 0, done
            sh.sync_ok(c, server)
            c.close()
            notes = scalar(conn, "SELECT client_notes FROM crm.appointments"
                                 " WHERE server_name = %s AND external_id = 5", (server,))
            assert notes == "before\ufffdafter", repr(notes)
            sh.assert_synced(conn, server, mp.mock, "with U+0000 in a text (%s)" % server, data=data)
            log = helpers.read_log_since(offset)
            assert "appointment 5 of GET /appointments" in log and "U+0000" in log, log[-2000:]
        conn.close()


def test_nul_in_the_envelope_does_not_stop_the_sync():
    """U+0000 in a field of the envelope the contract lets the API add (not in
    a row): the pages are stored as they are, with and without the fetcher
    (the conversion to jsonb failed on every page before)."""
    with MockProcess(rows=300, seed=16) as mp, sh.SyncDB("nulenvelope") as db:
        conn = db.connect()
        mp.mock.config(envelope_notice="maintenance\u0000tonight")
        for server, settings in (("ea", {}), ("eb", NO_FETCHER)):
            sh.add_server(conn, server, mp.url)
            c = db.connect(**settings)
            done = sh.sync_ok(c, server)
            assert done["records_failed"] == 0, done
            c.close()
            sh.assert_synced(conn, server, mp.mock, "with U+0000 in the envelope (%s)" % server)
        conn.close()
