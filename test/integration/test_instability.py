"""A foreign scan while the remote changes between page requests (the
contract's unstable order): the result is complete and has no row twice, or
the scan fails with SQLSTATE 40001 -- never a short or doubled result."""

import json

import psycopg2

from helpers import MockProcess, create_server, error_text, module_db, query

ROWS = 1200


ORDERS = ("id_asc", "id_desc", "updated_asc", "datetime_desc")
CHANGES = ({"updates": 3, "inserts": 0}, {"updates": 2, "inserts": 2})


def _under_changes(server, sql, check):
    """Run sql (on a new server and schema of that name) under each order and
    each kind of change between its pages.
    A case fails with 40001, or check(case, rows, before, after) judges its
    rows against the ids before and after.  Returns the outcome of each case."""
    db = module_db(__name__)
    conn = db.connect()
    outcomes = {}
    try:
        with MockProcess(rows=ROWS, seed=31) as mp:
            create_server(conn, server, mp.url, schema=server)
            for order in ORDERS:
                for changes in CHANGES:
                    mp.mock.config(order=order, mutate_between_pages=None)
                    before = {r["id"] for r in mp.mock.data()}
                    mp.mock.config(mutate_between_pages=changes)
                    case = "%s %s" % (order, changes)
                    try:
                        rows = query(conn, sql)
                    except psycopg2.Error as e:
                        assert e.pgcode == "40001", (case, e.pgcode, error_text(e))
                        assert "changed while it was read" in error_text(e), error_text(e)
                        outcomes[case] = "40001"
                        continue
                    finally:
                        mp.mock.config(mutate_between_pages=None)
                    check(case, rows, before, {r["id"] for r in mp.mock.data()})
                    outcomes[case] = "complete"
    finally:
        conn.close()
    return outcomes


def test_scan_under_changes_is_complete_or_fails():
    def check(case, rows, before, after):
        ids = [r[0] for r in rows]
        assert len(ids) == len(set(ids)), "%s: a row came twice" % case
        assert before <= set(ids) <= after, "%s: %d rows missing" % (case, len(before - set(ids)))

    outcomes = _under_changes("inst", "SELECT id FROM inst.appointments", check)
    # updates move rows only when the order is by updated_at: that scan
    # must have noticed
    assert outcomes["updated_asc {'updates': 3, 'inserts': 0}"] == "40001", outcomes


def test_count_under_changes_is_exact_or_fails():
    """count(*) reads no column, so its pages are skimmed for the rows' keys
    (json_skim.c) instead of parsed: the same checks must hold.  With updates
    and inserts by updated_at, the inserts make up the total that the moved
    rows leave short; only a row that comes back changed shows the move, and
    the scan fails with 40001."""
    def check(case, rows, before, after):
        assert len(before) <= rows[0][0] <= len(after), (case, len(before), rows[0][0])

    outcomes = _under_changes("instc", "SELECT count(*) FROM instc.appointments", check)
    assert outcomes["updated_asc {'updates': 3, 'inserts': 0}"] == "40001", outcomes
    assert outcomes["updated_asc {'updates': 2, 'inserts': 2}"] == "40001", outcomes
    assert outcomes["id_asc {'updates': 3, 'inserts': 0}"] == "complete", outcomes


def test_row_moved_to_a_page_read_already_fails_the_scan():
    """Newest appointment first (an order the contract names): a row of page 4
    rescheduled later moves to page 1 after the scan has read it.  The moved
    row is in no page the scan reads, the row pushed over a boundary comes
    back unchanged and the total stays: only counting the rows shows it, and
    the scan fails with 40001.  Run again, it returns every row once."""
    db = module_db(__name__)
    conn = db.connect()
    try:
        with MockProcess(rows=500, seed=32) as mp:
            create_server(conn, "moved", mp.url, schema="moved")
            mp.mock.config(order="datetime_desc")
            status, body = mp.mock.api_get("/appointments?per_page=100&page=4")
            assert status == 200
            moved = json.loads(body)["data"][0]["id"]
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute("DECLARE c NO SCROLL CURSOR FOR SELECT id FROM moved.appointments")
                cur.execute("FETCH 150 FROM c")
                assert len(cur.fetchall()) == 150
                mp.mock.mutate(update=[moved], fields={"appointment_datetime": "2031-01-01T09:00:00.000000Z"})
                try:
                    cur.execute("FETCH ALL FROM c")
                    raise AssertionError("the scan returned %d more rows and no error"
                                         % len(cur.fetchall()))
                except psycopg2.Error as e:
                    assert e.pgcode == "40001", (e.pgcode, error_text(e))
                    assert "499 different rows where its first page reported 500" in error_text(e), \
                        error_text(e)
                cur.execute("ROLLBACK")
            ids = [r[0] for r in query(conn, "SELECT id FROM moved.appointments")]
            assert sorted(ids) == sorted(r["id"] for r in mp.mock.data()), len(ids)
            assert moved in ids
    finally:
        conn.close()
