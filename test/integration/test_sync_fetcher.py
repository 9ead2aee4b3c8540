"""The sync's fetcher: a 'crm_fdw fetcher' background worker reads the pages
of a walk ahead of the sync worker that stores them.

It runs only while its sync walks and leaves with it (also when the sync is
terminated); an error it meets is the sync's error, as the sync would have
raised it reading the pages itself (crm_fdw.sync_fetcher = off); the request
counters it keeps reach crm.sync_log.
"""

import time

import sync_helpers as sh
from helpers import MockProcess, scalar, query, wait_until

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
    with MockProcess(rows=ROWS, seed=12) as mp, sh.SyncDB("fetchererr") as db:
        conn = db.connect()
        for server, settings in (("ea", {}), ("eb", NO_FETCHER)):
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
