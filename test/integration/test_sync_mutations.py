"""Rows changing while the sync walks the pages, at scale.

A 2,000-row remote updates 5 rows and inserts 2 between every two page
requests (the contract: the order is not stable while rows change, so a
plain walk can skip a row or see one twice).  For each listing order, a
first crm_sync_now runs during the changes; then the remote stops changing
and after at most one more crm_sync_now (two in all) crm.appointments must
equal the remote exactly.  The same again from a synced state, with a full
sync walking during the changes.
"""

import time

import sync_helpers as sh
from helpers import MockProcess, scalar

ROWS = 2000
ORDERS = ("id_asc", "id_desc", "updated_asc", "datetime_desc")
CHURN = {"updates": 5, "inserts": 2}


def converge(conn, mp, server, full, what):
    """One sync while the remote changes between pages, one after: then
    equal.  On failure, the message also says whether a third sync (and a
    full sync) would have caught up."""
    mp.mock.config(mutate_between_pages=CHURN)
    during = sh.sync_ok(conn, server, full=full)
    mp.mock.config(mutate_between_pages=None)
    data = mp.mock.data()
    assert len(data) > ROWS, "the remote did not change during the walk"
    after = sh.sync_ok(conn, server)
    report = sh.compare(conn, server, mp.mock, data)
    bad = sh.problems(report)
    if not bad:
        return
    third = sh.sync_ok(conn, server)
    bad3 = sh.problems(sh.compare(conn, server, mp.mock, data))
    sh.sync_ok(conn, server, full=True)
    bad_full = sh.problems(sh.compare(conn, server, mp.mock, data))
    raise AssertionError(
        "%s: not equal after 2 syncs (the one during the changes fetched %d rows in %d pages, "
        "cursor_before %s; the quiet one after it fetched %d): %s; missing ids %s, differences %s; "
        "a third sync (fetched %d) leaves: %s; a full sync leaves: %s"
        % (what, during["records_fetched"], during["pages_done"], during["cursor_before"],
           after["records_fetched"], ", ".join(bad), report["missing_ids"],
           str(report["differences"])[:600], third["records_fetched"], ", ".join(bad3) or "equal",
           ", ".join(bad_full) or "equal"))


def test_sync_mutations_during_walk():
    """For each order id_asc, id_desc, updated_asc, datetime_desc, with 5
    updates + 2 inserts between pages: (a) the first sync of a server during
    the changes, then one quiet sync; (b) a full sync during the changes,
    then one quiet incremental sync; (c) 800 rows changed 4 s earlier, an
    incremental sync (8+ pages) during the changes, then one quiet sync.  Each time the
    data must then equal the remote exactly."""
    failures = []
    with MockProcess(rows=ROWS, seed=13) as mp, sh.SyncDB("mutations") as db:
        conn = db.connect()
        for order in ORDERS:
            mp.mock.reset()
            mp.mock.config(order=order)
            server = "walk_" + order
            sh.add_server(conn, server, mp.url)
            for variant in ("a", "b", "c"):
                if variant == "c":
                    mp.mock.mutate(update_random=800)
                    time.sleep(4)       # older than the walk's start - 2 s (the cursor's margins)
                try:
                    converge(conn, mp, server, variant == "b", "%s (%s)" % (order, variant))
                except AssertionError as e:
                    failures.append(str(e))
                    # start the next variant from an equal state
                    sh.sync_ok(conn, server, full=True)
        conn.close()
    assert not failures, "%d of %d cases: %s" % (len(failures), 3 * len(ORDERS), " | ".join(failures))


def test_row_in_no_page_holds_the_cursor():
    """A row that the listing's total counts but no page shows (mock:
    unlisted_ids), as after an update moved it ahead of the walk: the walk
    is unsettled, read again, and the cursor stays where it was, so the next
    sync, with the row listed again, stores it."""
    with MockProcess(rows=500, seed=21) as mp, sh.SyncDB("unlisted") as db:
        conn = db.connect()
        sh.add_server(conn, "ul", mp.url)
        hidden = min(mp.mock.data(), key=lambda r: r["updated_at"])["id"]
        mp.mock.config(unlisted_ids=[hidden])
        run = sh.sync_ok(conn, "ul")
        assert run["requests"] == 15, "3 walks of 5 pages expected: %r" % run
        assert scalar(conn, "SELECT sync_cursor FROM crm.sync_state WHERE server_name = 'ul'") is None
        mp.mock.config(unlisted_ids=[])
        sh.sync_ok(conn, "ul")
        sh.assert_synced(conn, "ul", mp.mock, "after the row was listed again")
        conn.close()


def test_without_a_date_header_the_cursor_waits_for_the_walk():
    """No Date header (a proxy strips it), so the remote's clock at the start
    of the walk is unknown: the cursor is held to the newest row seen less
    the walk's duration.  A first sync walks 10 pages of 0.6 s while 10 rows
    change after each page (id_asc: an updated row stays on its page, so no
    walk is unsettled); updates to pages already read are more than a second
    older than the newest row seen, and the next sync must still read them."""
    with MockProcess(rows=1000, seed=22) as mp, sh.SyncDB("nodate") as db:
        conn = db.connect()
        sh.add_server(conn, "nd", mp.url)
        mp.mock.config(date_header=False, mutate_between_pages={"updates": 10, "inserts": 0},
                       fault={"mode": "slow", "count": -1, "slow_seconds": 0.6,
                              "path": "/appointments"})
        sh.sync_ok(conn, "nd")
        mp.mock.config(mutate_between_pages=None, fault=None)
        sh.sync_ok(conn, "nd")
        sh.assert_synced(conn, "nd", mp.mock, "one quiet sync after the walk without Date")
        conn.close()


def test_rows_repeated_unchanged_let_the_cursor_move():
    """Rows that a shift repeats, unchanged, on the next page (mock:
    repeated_ids; as inserts ahead of a newest-first walk do): rows shifted
    forward skip none, so the walk settles, once, and the cursor moves."""
    with MockProcess(rows=500, seed=23) as mp, sh.SyncDB("repeated") as db:
        conn = db.connect()
        sh.add_server(conn, "rp", mp.url)
        mp.mock.config(repeated_ids=[150, 250, 350])
        run = sh.sync_ok(conn, "rp")
        assert run["requests"] == 5, "one walk of 5 pages expected: %r" % run
        assert scalar(conn, "SELECT sync_cursor FROM crm.sync_state WHERE server_name = 'rp'")
        sh.assert_synced(conn, "rp", mp.mock, "after a walk with repeated rows")
        conn.close()
