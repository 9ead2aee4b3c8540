"""Two syncs of one server at once: the second is skipped at once.

While a slow sync runs, crm_sync_now (and crm_sync_full) of the same server
from another connection returns within 2 s one 'skipped' row; the running
sync is not disturbed (its row stays 'running', and it then completes with
every row), and the data equals the remote exactly.
"""

import time

import sync_helpers as sh
from helpers import MockProcess, scalar, wait_until

ROWS = 1500
SLOW = 0.25


def test_sync_overlap_skipped():
    """A second crm_sync_now / crm_sync_full of a server that is syncing
    returns 'skipped' in < 2 s; the first completes normally."""
    with MockProcess(rows=ROWS, seed=3) as mp, sh.SyncDB("overlap") as db:
        conn = db.connect()
        sh.add_server(conn, "busy", mp.url)
        sh.add_server(conn, "idle", mp.url)
        mp.mock.config(fault={"mode": "slow", "count": -1, "slow_seconds": SLOW,
                              "path": "/appointments"})
        first = sh.start_sync(db, "busy")
        try:
            row = wait_until(lambda: sh.running_row(conn, "busy"), timeout=20,
                             what="the first sync to start")
            for full in (False, True):
                t0 = time.monotonic()
                rows = sh.sync(conn, "busy", full=full)
                took = time.monotonic() - t0
                what = "crm_sync_full" if full else "crm_sync_now"
                assert took < 2.0, "%s during a running sync took %.2fs" % (what, took)
                assert len(rows) == 1, rows
                r = rows[0]
                assert r["status"] == "skipped", "%s during a running sync: %r (%s)" % (
                    what, r["status"], r["error_message"])
                assert r["sync_type"] == ("full" if full else "incremental")
                assert r["sync_completed_at"] is not None
                assert "another sync" in (r["error_message"] or ""), r["error_message"]
                assert r["records_fetched"] == 0 and r["requests"] == 0, r
                assert first.is_alive(), "the first sync ended before the second was asked for"
                # the running run is untouched
                assert scalar(conn, "SELECT status FROM crm.sync_log WHERE id = %s",
                              (row["id"],)) == "running"
                assert scalar(conn, "SELECT running_sync_id FROM crm.sync_status"
                                    " WHERE server_name = 'busy'") == row["id"]
            # another server is not blocked by it
            t0 = time.monotonic()
            other = sh.start_sync(db, "idle")
            assert first.is_alive()
            other.wait(ROWS / 100 * SLOW * 3 + 30)
            assert other.error is None, other.error
            assert other.rows[0]["status"] == "completed", other.rows
            other.close()

            first.wait(ROWS / 100 * SLOW * 3 + 30)
            assert first.error is None, "the first sync failed: %s" % first.error
            done = first.rows[0]
            assert done["id"] == row["id"]
            assert done["status"] == "completed", (done["status"], done["error_message"])
            assert done["records_fetched"] == ROWS and done["records_created"] == ROWS, done
        finally:
            first.close()
        mp.mock.config(fault=None)
        assert not sh.log_rows(conn, "busy", "status = 'running'")
        sh.assert_synced(conn, "busy", mp.mock)
        sh.assert_synced(conn, "idle", mp.mock)
        # and afterwards a sync runs again
        assert sh.sync_ok(conn, "busy")["records_created"] == 0
        conn.close()
