"""Parallel foreign scans: the pages of one listing shared among a Gather's
participants.  The planner is pushed to parallel plans (no setup or tuple
cost); every result must still equal the local copy, each page must be read
once, a listing that changes under the scan must fail it with 40001 rather
than return a short or doubled result, and an error in a worker reaches the
client as the serial scan would raise it."""

import psycopg2

import helpers
import test_results
from helpers import (MockProcess, create_server, error_text, execute, expect_error, mock,
                     query, scalar)

PARALLEL = {"parallel_setup_cost": "0", "parallel_tuple_cost": "0",
            "max_parallel_workers_per_gather": "2"}
COUNT = "SELECT count(*), sum(id), min(id), max(id) FROM %s"


def db():
    return helpers.module_db(__name__)


def parallel_conn(**settings):
    """A connection with parallel plans made cheap, the mock's data in
    local_copy, and remote.appointments analyzed (the planner plans a parallel
    foreign scan only once ANALYZE has counted the rows)."""
    conn = db().connect(**dict(PARALLEL, **settings))
    helpers.load_local_copy(conn)
    execute(conn, "ANALYZE remote.appointments")
    return conn


def plan(conn, sql):
    return "\n".join(r[0] for r in query(conn, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, "
                                               "SUMMARY OFF) " + sql))


def is_parallel(conn, sql):
    explain = "\n".join(r[0] for r in query(conn, "EXPLAIN (COSTS OFF) " + sql))
    return "Parallel Foreign Scan" in explain


def explain_count(explain, key):
    """The sum of an EXPLAIN ANALYZE property of the scans, e.g. "Remote Pages"."""
    return sum(int(line.split(":")[1]) for line in explain.splitlines()
               if line.strip().startswith(key + ":"))


def requests_sent(explain):
    return explain_count(explain, "Remote Requests Sent")


def test_plain_scan_is_parallel_and_reads_each_page_once():
    """The default listing in a parallel plan (1,300 rows, ANALYZEd: two
    workers), with and without the leader taking part: workers run, the rows
    are the local copy's, every page from 1 to the last is requested exactly
    once, and EXPLAIN ANALYZE counts the requests of all participants."""
    mock().reset(rows=1300)
    try:
        for leader in ("on", "off"):
            conn = parallel_conn(parallel_leader_participation=leader)
            try:
                mock().clear_log()
                explain = plan(conn, COUNT % "remote.appointments")
                assert "Parallel Foreign Scan" in explain, explain
                assert "Workers Launched: 0" not in explain, explain
                pages = sorted(int(e["query"]["page"][0]) for e in mock().log())
                assert pages == list(range(1, 14)), (leader, pages)
                assert requests_sent(explain) == 13, explain
                got = query(conn, COUNT % "remote.appointments")
                assert got == query(conn, COUNT % "local_copy") == [(1300, 845650, 1, 1300)], got
                assert is_parallel(conn, "SELECT id FROM remote.appointments")
                ids = sorted(r[0] for r in query(conn, "SELECT id FROM remote.appointments"))
                assert ids == list(range(1, 1301)), ids[:20]
            finally:
                conn.close()
    finally:
        mock().reset()


def test_matrix_in_parallel():
    """Every clause of test_results' matrix, under a few of its remote
    behaviours, gives the local copy's rows with parallel plans (LIMIT and
    ORDER BY included)."""
    for name, settings, mutation in test_results.BEHAVIOURS:
        if name not in ("default", "id_desc", "updated_asc", "everything"):
            continue
        m = test_results.play(settings, mutation)
        conn = parallel_conn()
        try:
            assert is_parallel(conn, "SELECT id FROM remote.appointments WHERE true")
            rows = m.data()
            clauses = test_results.clauses_for(rows)
            problems = [p for p in (test_results.compare(conn, w, t) for w, t in clauses) if p]
        finally:
            conn.close()
        assert not problems, "%s: %d of %d queries differ from the local copy:\n%s" % (
            name, len(problems), len(clauses), "\n".join(problems))


def test_in_list_is_one_shared_listing():
    """An IN list of statuses is not sent (one listing per value could miss a
    row that changes between them): the parallel scan shares the pages of one
    listing, each requested once, and the IN list is checked locally."""
    mock().reset(rows=1300)
    try:
        conn = parallel_conn()
        try:
            sql = ("SELECT id FROM %s WHERE status IN ('pending', 'confirmed') "
                   "AND location = 'melbourne'")
            assert is_parallel(conn, sql % "remote.appointments")
            mock().clear_log()
            got = sorted(r[0] for r in query(conn, sql % "remote.appointments"))
            assert got == sorted(r[0] for r in query(conn, sql % "local_copy")), got[:20]
            sent = [e["query"] for e in mock().log()]
            assert all(q.get("location") == ["melbourne"] and "status" not in q for q in sent), sent
            pages = sorted(int(q["page"][0]) for q in sent)
            assert pages == list(range(1, len(pages) + 1)), pages
        finally:
            conn.close()
    finally:
        mock().reset()


def test_rescanned_parallel_scan():
    """A Gather in a correlated subquery is run again for each outer row: each
    run shares its pages afresh (the rows seen by the last run do not hide
    this run's)."""
    mock().reset()
    conn = parallel_conn()
    try:
        sql = ("SELECT g, (SELECT count(*) FILTER (WHERE a.id > g * 100) FROM %s a) "
               "FROM generate_series(1, 3) g")
        explain = plan(conn, sql % "remote.appointments")
        assert "Parallel Foreign Scan" in explain, explain
        assert "Gather (actual rows=" in explain and "loops=3)" in explain, explain
        got = query(conn, sql % "remote.appointments")
        assert got == query(conn, sql % "local_copy"), got
        assert len({r[1] for r in got}) == 3, got
    finally:
        conn.close()


def test_rate_limited_server_scans_in_one_process():
    """A client-side rate limit is a process's own: a server with one never
    gets a parallel plan, whatever the costs."""
    conn = db().connect(**PARALLEL)
    try:
        create_server(conn, "limited", helpers.env("CRM_MOCK_URL"), schema="limited",
                      rate_limit_per_minute=6000)
        for table in ("limited.appointments", "remote.appointments"):
            execute(conn, "ANALYZE " + table)
        explain = "\n".join(r[0] for r in query(
            conn, "EXPLAIN (COSTS OFF) " + COUNT % "limited.appointments"))
        assert "Gather" not in explain and "Parallel" not in explain, explain
        explain = "\n".join(r[0] for r in query(
            conn, "EXPLAIN (COSTS OFF) " + COUNT % "remote.appointments"))
        assert "Parallel Foreign Scan" in explain, explain
    finally:
        conn.close()


def test_worker_error_is_the_scan_error():
    """A page that is not JSON fails the parallel scan with the serial scan's
    SQLSTATE and message, naming the page's request."""
    mock().reset()
    conn = parallel_conn()
    try:
        for settings in (PARALLEL, {"max_parallel_workers_per_gather": "0"}):
            for k, v in settings.items():
                execute(conn, "SET %s = %s" % (k, v))
            # every request after the second: the parallel round's abandoned
            # requests may reach the mock after this and must not use up the fault
            mock().config(fault={"mode": "invalid_json", "after": 2, "count": -1})
            e = expect_error(conn, COUNT % "remote.appointments")
            assert e.pgcode == "HV00K", (settings, e.pgcode, error_text(e))
            assert ("invalid JSON in response from /appointments?per_page=100&page="
                    in error_text(e)), error_text(e)
            mock().config(fault=None)
        assert query(conn, COUNT % "remote.appointments")[0][0] == 500
    finally:
        conn.close()


def test_parallel_scan_under_changes_is_complete_or_fails():
    """Rows changing between page requests (test_instability's cases): a
    parallel scan returns every row once or fails with 40001.  Pages are read
    in no order, so an insert can push a row past a page read already: any
    change of the listing's total fails the scan."""
    outcomes = {}
    with MockProcess(rows=1200, seed=31) as mp:
        conn = db().connect(**PARALLEL)
        try:
            create_server(conn, "inst", mp.url, schema="inst")
            execute(conn, "ANALYZE inst.appointments")
            for order in ("id_asc", "id_desc", "updated_asc", "datetime_desc"):
                for changes in ({"updates": 3, "inserts": 0}, {"updates": 2, "inserts": 2}):
                    mp.mock.config(order=order, mutate_between_pages=None)
                    before = {r["id"] for r in mp.mock.data()}
                    assert is_parallel(conn, "SELECT id FROM inst.appointments")
                    mp.mock.config(mutate_between_pages=changes)
                    case = "%s %s" % (order, changes)
                    try:
                        ids = [r[0] for r in query(conn, "SELECT id FROM inst.appointments")]
                    except psycopg2.Error as e:
                        assert e.pgcode == "40001", (case, e.pgcode, error_text(e))
                        assert "changed while it was read" in error_text(e), error_text(e)
                        outcomes[case] = "40001"
                        continue
                    finally:
                        mp.mock.config(mutate_between_pages=None)
                    after = {r["id"] for r in mp.mock.data()}
                    assert len(ids) == len(set(ids)), "%s: a row came twice" % case
                    assert before <= set(ids) <= after, "%s: %d rows missing" % (
                        case, len(before - set(ids)))
                    outcomes[case] = "complete"
        finally:
            conn.close()
    assert outcomes["updated_asc {'updates': 3, 'inserts': 0}"] == "40001", outcomes
    for order in ("id_asc", "id_desc", "updated_asc", "datetime_desc"):
        assert outcomes["%s {'updates': 2, 'inserts': 2}" % order] == "40001", outcomes


def test_rows_repeated_on_the_next_page_are_returned_once():
    """Rows that a shift repeats, unchanged, on the next page (mock:
    repeated_ids), with the pages spread over the participants: each row once,
    all of them, and no error; count(*) too, in parallel and in one process.  ANALYZE saw 500 rows, the listing has 5,000:
    the shared set, sized for 500, grows."""
    mock().reset()
    conn = parallel_conn()
    try:
        mock().reset(rows=5000)
        try:
            mock().config(repeated_ids=list(range(3, 5001, 7)))
            assert is_parallel(conn, "SELECT id FROM remote.appointments")
            ids = [r[0] for r in query(conn, "SELECT id FROM remote.appointments")]
            assert len(ids) == len(set(ids)) == 5000, (len(ids), len(set(ids)))
            explain = plan(conn, "SELECT id FROM remote.appointments")
            assert "Workers Launched: 0" not in explain, explain
            assert explain_count(explain, "Remote Pages Skimmed") == 0, explain
            # count(*) skims every page for the rows' keys: the same rows once
            count = "SELECT count(*) FROM remote.appointments"
            for parallel in (True, False):
                if not parallel:
                    execute(conn, "SET max_parallel_workers_per_gather = 0")
                assert is_parallel(conn, count) == parallel
                assert scalar(conn, count) == 5000
                explain = plan(conn, count)
                pages = explain_count(explain, "Remote Pages")
                assert pages >= 50 and explain_count(explain, "Remote Pages Skimmed") == pages, explain
        finally:
            mock().reset()
    finally:
        conn.close()


def test_row_in_no_page_fails_the_scan():
    """A row that moved past the scan between two pages is in no page while the
    listing's total still counts it (mock: unlisted_ids).  The rows of a
    parallel scan must add up to the total, those of a serial one to its first
    page's total, else 40001.  A scan stopped early by a LIMIT is no such
    case."""
    mock().reset()
    conn = parallel_conn()
    try:
        assert is_parallel(conn, COUNT % "remote.appointments")
        mock().config(unlisted_ids=[250])
        e = expect_error(conn, COUNT % "remote.appointments")
        assert e.pgcode == "40001", (e.pgcode, error_text(e))
        assert "499 different rows where the listing reports 500" in error_text(e), error_text(e)
        assert len(query(conn, "SELECT id FROM remote.appointments LIMIT 10")) == 10
        execute(conn, "SET max_parallel_workers_per_gather = 0")
        e = expect_error(conn, COUNT % "remote.appointments")
        assert e.pgcode == "40001", (e.pgcode, error_text(e))
        assert "499 different rows where its first page reported 500" in error_text(e), error_text(e)
        assert len(query(conn, "SELECT id FROM remote.appointments LIMIT 10")) == 10
    finally:
        mock().config(unlisted_ids=[])
        conn.close()


def test_listing_without_pagination_fails_only_in_parallel():
    """Without pagination a parallel scan could not check that its rows add up:
    it fails with HV00K naming the request, while the same query in one process
    follows the pages by their size and returns every row."""
    mock().reset()
    conn = parallel_conn()
    try:
        assert is_parallel(conn, COUNT % "remote.appointments")
        mock().config(omit_pagination=True)
        e = expect_error(conn, COUNT % "remote.appointments")
        assert e.pgcode == "HV00K", (e.pgcode, error_text(e))
        assert 'has no "pagination", which a parallel scan needs' in error_text(e), error_text(e)
        execute(conn, "SET max_parallel_workers_per_gather = 0")
        assert query(conn, COUNT % "remote.appointments") == [(500, 125250, 1, 500)]
    finally:
        mock().config(omit_pagination=False)
        conn.close()


def test_workers_planned_follow_the_pages():
    """The workers a parallel scan plans, by the pages that ANALYZE's row
    count makes at the server's page_size: none below 4 pages, the first at
    4, one more each time the pages triple (12, 36), never more than
    max_parallel_workers_per_gather."""
    conn = db().connect(**PARALLEL)
    try:
        create_server(conn, "sized", helpers.env("CRM_MOCK_URL"), schema="sized")
        for rows, cases in ((300, ((100, 4, 0), (75, 4, 1))),
                            (1000, ((91, 4, 1), (84, 4, 2), (29, 4, 2), (28, 4, 3),
                                    (28, 2, 2)))):
            mock().reset(rows=rows)
            execute(conn, "ANALYZE sized.appointments")
            for page_size, cap, workers in cases:
                execute(conn, "ALTER SERVER sized OPTIONS (ADD page_size '%d')" % page_size)
                execute(conn, "SET max_parallel_workers_per_gather = %d" % cap)
                explain = "\n".join(r[0] for r in query(
                    conn, "EXPLAIN (COSTS OFF) " + COUNT % "sized.appointments"))
                planned = [int(line.split(":")[1]) for line in explain.splitlines()
                           if "Workers Planned" in line]
                assert planned == ([workers] if workers else []), (rows, page_size, cap, explain)
                assert ("Parallel Foreign Scan" in explain) == (workers > 0), explain
                execute(conn, "ALTER SERVER sized OPTIONS (DROP page_size)")
    finally:
        mock().reset()
        conn.close()


def test_analyze_counts_the_rows():
    """ANALYZE reads the whole listing: reltuples is the number of rows, the
    columns get statistics, and the planner's estimate follows them.  Before
    it, no parallel plan however cheap; after it, one.  A listing that changes
    while ANALYZE reads it is no error: a sample needs no exact walk."""
    mock().reset()
    conn = db().connect(**PARALLEL)
    try:
        execute(conn, "CREATE SCHEMA fresh")
        execute(conn, "IMPORT FOREIGN SCHEMA api LIMIT TO (appointments) "
                      "FROM SERVER mockapi INTO fresh")
        assert not is_parallel(conn, COUNT % "fresh.appointments")
        mock().clear_log()
        execute(conn, "ANALYZE fresh.appointments")
        assert len(mock().log()) == 5
        assert scalar(conn, "SELECT reltuples FROM pg_class "
                            "WHERE oid = 'fresh.appointments'::regclass") == 500
        statuses = scalar(conn, "SELECT n_distinct FROM pg_stats WHERE schemaname = 'fresh' "
                                "AND tablename = 'appointments' AND attname = 'status'")
        assert statuses == 6, statuses
        estimate = query(conn, "EXPLAIN SELECT * FROM fresh.appointments")
        assert "rows=500 " in "\n".join(r[0] for r in estimate), estimate
        assert is_parallel(conn, COUNT % "fresh.appointments")

        mock().config(order="updated_asc", mutate_between_pages={"updates": 3, "inserts": 2})
        try:
            execute(conn, "ANALYZE fresh.appointments")
        finally:
            mock().config(mutate_between_pages=None)
        assert scalar(conn, "SELECT reltuples FROM pg_class "
                            "WHERE oid = 'fresh.appointments'::regclass") >= 500
    finally:
        conn.close()
