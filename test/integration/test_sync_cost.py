"""An incremental sync costs requests in proportion to the changes.

5,000 remote rows; after the first sync, 1 % of them (50) change: the next
crm_sync_now sends at most ceil(50 / 100) + 2 requests (the mock's request
log), crm.sync_log.requests says the same number, and the data equals the
remote exactly.  With nothing changed, it is at most 2 requests.
"""

import math

import sync_helpers as sh
from helpers import MockProcess

ROWS = 5000


def api_requests(mock):
    return [e for e in mock.log() if e["path"].startswith("/api/crm/")]


def test_sync_incremental_cost():
    """1 % of 5,000 rows changed: <= ceil(50/100) + 2 requests, logged as
    such in crm.sync_log; data equal to the remote."""
    with MockProcess(rows=ROWS, seed=9) as mp, sh.SyncDB("cost") as db:
        conn = db.connect()
        sh.add_server(conn, "big", mp.url)
        first = sh.sync_ok(conn, "big")
        assert first["records_created"] == ROWS, first
        sh.assert_synced(conn, "big", mp.mock, "after the first sync")

        changed = len(mp.mock.mutate(update_random=ROWS // 100)["updated"])
        assert changed == ROWS // 100
        mp.mock.clear_log()
        run = sh.sync_ok(conn, "big")
        sent = api_requests(mp.mock)
        bound = math.ceil(changed / 100) + 2
        assert len(sent) <= bound, "%d requests for %d changed rows (at most %d): %r" % (
            len(sent), changed, bound, [(e["path"], e["raw_query"]) for e in sent])
        assert run["requests"] == len(sent), \
            "crm.sync_log.requests = %d, the mock saw %d" % (run["requests"], len(sent))
        logged = sh.log_rows(conn, "big", "id = %d" % run["id"])[0]
        assert logged["requests"] == len(sent)
        assert run["records_updated"] == changed, run
        assert run["records_created"] == 0 and run["records_failed"] == 0, run
        assert all(e["status"] == 200 for e in sent), sent
        assert all("updated_after" in e["query"] for e in sent if e["path"] == "/api/crm/appointments"), \
            "an incremental request without updated_after: %r" % [e["raw_query"] for e in sent]
        sh.assert_synced(conn, "big", mp.mock, "after 1 % changed")

        # nothing changed: the rows at the cursor only
        mp.mock.clear_log()
        run = sh.sync_ok(conn, "big")
        sent = api_requests(mp.mock)
        assert len(sent) <= 2 and run["requests"] == len(sent), (len(sent), run["requests"])
        assert run["records_updated"] == 0 and run["records_created"] == 0, run
        sh.assert_synced(conn, "big", mp.mock, "after a sync with nothing changed")
        conn.close()
