"""A foreign scan while the remote changes between page requests (the
contract's unstable order): the result is complete and has no row twice, or
the scan fails with SQLSTATE 40001 -- never a short or doubled result."""

import json

import psycopg2

from helpers import MockProcess, create_server, error_text, module_db, query

ROWS = 1200


def _scan(conn):
    try:
        return [r[0] for r in query(conn, "SELECT id FROM inst.appointments")], None
    except psycopg2.Error as e:
        return None, e


def test_scan_under_changes_is_complete_or_fails():
    db = module_db(__name__)
    conn = db.connect()
    outcomes = {}
    try:
        with MockProcess(rows=ROWS, seed=31) as mp:
            create_server(conn, "inst", mp.url, schema="inst")
            for order in ("id_asc", "id_desc", "updated_asc", "datetime_desc"):
                for changes in ({"updates": 3, "inserts": 0}, {"updates": 2, "inserts": 2}):
                    mp.mock.config(order=order, mutate_between_pages=None)
                    before = {r["id"] for r in mp.mock.data()}
                    mp.mock.config(mutate_between_pages=changes)
                    ids, err = _scan(conn)
                    mp.mock.config(mutate_between_pages=None)
                    after = {r["id"] for r in mp.mock.data()}
                    case = "%s %s" % (order, changes)
                    if err is not None:
                        assert err.pgcode == "40001", (case, err.pgcode, error_text(err))
                        assert "changed while it was read" in error_text(err), error_text(err)
                        outcomes[case] = "40001"
                        continue
                    assert len(ids) == len(set(ids)), "%s: a row came twice" % case
                    got = set(ids)
                    assert before <= got <= after, "%s: %d rows missing" % (case, len(before - got))
                    outcomes[case] = "complete"
        # updates move rows only when the order is by updated_at: that scan
        # must have noticed
        assert outcomes["updated_asc {'updates': 3, 'inserts': 0}"] == "40001", outcomes
    finally:
        conn.close()


def test_count_under_changes_is_exact_or_fails():
    """count(*) reads no column, so its pages are skimmed for the rows' keys
    (json_skim.c) instead of parsed: the same checks must hold.  With updates
    and inserts by updated_at, the inserts make up the total that the moved
    rows leave short; only a row that comes back changed shows the move, and
    the scan fails with 40001."""
    db = module_db(__name__)
    conn = db.connect()
    outcomes = {}
    try:
        with MockProcess(rows=ROWS, seed=31) as mp:
            create_server(conn, "instc", mp.url, schema="instc")
            for order in ("id_asc", "updated_asc", "datetime_desc"):
                for changes in ({"updates": 3, "inserts": 0}, {"updates": 2, "inserts": 2}):
                    mp.mock.config(order=order, mutate_between_pages=None)
                    before = len(mp.mock.data())
                    mp.mock.config(mutate_between_pages=changes)
                    case = "%s %s" % (order, changes)
                    try:
                        got = query(conn, "SELECT count(*) FROM instc.appointments")[0][0]
                    except psycopg2.Error as e:
                        assert e.pgcode == "40001", (case, e.pgcode, error_text(e))
                        outcomes[case] = "40001"
                        continue
                    finally:
                        mp.mock.config(mutate_between_pages=None)
                    assert before <= got <= len(mp.mock.data()), (case, before, got)
                    outcomes[case] = "complete"
        assert outcomes["updated_asc {'updates': 3, 'inserts': 0}"] == "40001", outcomes
        assert outcomes["updated_asc {'updates': 2, 'inserts': 2}"] == "40001", outcomes
        assert outcomes["id_asc {'updates': 3, 'inserts': 0}"] == "complete", outcomes
    finally:
        conn.close()


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
