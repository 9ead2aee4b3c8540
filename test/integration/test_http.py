"""HTTP hygiene: keep-alive, request headers, redirects.

The mock logs, for each request, the number of the TCP connection it came
on, the Accept header and whether the bearer token was right ("ok"),
absent ("missing") or wrong; it never logs the token itself.
"""

import helpers
from helpers import MockProcess, expect_error, mock, query, scalar

BY_ID = "SELECT id, full_name FROM remote.appointments WHERE id = 5"


def db():
    return helpers.module_db(__name__)


def test_one_keep_alive_connection_per_backend():
    """All requests of one backend -- the pages of a scan, and the requests of
    later queries and other resources -- go over one TCP connection; another
    backend has its own."""
    conn, conn2 = db().connect(), db().connect()
    try:
        mock().clear_log()
        for sql in ["SELECT count(*) FROM remote.appointments",
                    BY_ID,
                    "SELECT count(*) FROM remote.appointments WHERE status IN ('pending', 'confirmed')",
                    "SELECT count(*) FROM remote.appointments_export WHERE location = 'adelaide'",
                    "SELECT total_appointments FROM remote.appointment_stats",
                    "SELECT count(*) FROM remote.appointments_recent"]:
            query(conn, sql)
        first = mock().log()
        assert len(first) >= 12, "expected the pages of several queries, got %d requests" % len(first)
        assert len({e["conn"] for e in first}) == 1, \
            "one backend used several connections: %r" % [(e["seq"], e["conn"]) for e in first]
        assert len({e["client_port"] for e in first}) == 1

        mock().clear_log()
        query(conn2, "SELECT count(*) FROM remote.appointments")
        query(conn, "SELECT count(*) FROM remote.appointments")
        log = mock().log()
        second = {e["conn"] for e in log[:5]}
        again = {e["conn"] for e in log[5:]}
        assert len(second) == 1 and second != {first[0]["conn"]}, (second, first[0]["conn"])
        assert again == {first[0]["conn"]}, "the first backend's connection was not kept: %r" % again
    finally:
        conn.close()
        conn2.close()


def test_accept_and_bearer_headers():
    """Every request of every resource carries Accept: application/json and
    the user mapping's token as a bearer token."""
    conn = db().connect()
    try:
        mock().mutate(update=[3])
        mock().clear_log()
        for table in ("appointments", "appointments_export", "appointment_stats",
                      "appointments_recent"):
            query(conn, "SELECT * FROM remote.%s" % table)
        query(conn, BY_ID)
        log = mock().log()
        paths = {e["path"] for e in log}
        assert {"/api/crm/appointments", "/api/crm/appointments/export",
                "/api/crm/appointments/stats", "/api/crm/appointments/recent",
                "/api/crm/appointments/5"} <= paths, paths
        bad = [(e["path"], e["accept"], e["auth"]) for e in log
               if e["accept"] != "application/json" or e["auth"] != "ok"]
        assert not bad, "requests without the expected headers: %r" % bad
    finally:
        conn.close()


def test_redirect_to_same_origin_is_followed():
    """A redirect to the same scheme, host and port is followed with the token
    (the answer is the row)."""
    conn = db().connect()
    try:
        port = int(helpers.env("CRM_MOCK_BASE").rsplit(":", 1)[1])
        mock().config(fault={"mode": "redirect", "location": "http://127.0.0.1:%d{request}" % port})
        mock().clear_log()
        rows = query(conn, BY_ID)
        assert [r[0] for r in rows] == [5], rows
        log = mock().log()
        assert [(e["status"], e["auth"]) for e in log] == [(302, "ok"), (200, "ok")], log
    finally:
        conn.close()


def test_redirect_to_another_host_drops_the_token():
    """A redirect to another origin (another mock on another port, which would
    accept the same token) never receives the Authorization header: the query
    fails instead of being answered with the token."""
    conn = db().connect()
    try:
        with MockProcess() as other:
            for status in (302, 307, 301):
                mock().config(fault={"mode": "redirect", "redirect_status": status,
                                     "location": "http://127.0.0.1:%d{request}" % other.port})
                other.mock.clear_log()
                e = expect_error(conn, BY_ID)
                reached = other.mock.log()
                assert all(x["auth"] == "missing" for x in reached), \
                    "HTTP %d: the token reached the other host: %r" % (
                        status, [(x["path"], x["auth"]) for x in reached])
                assert helpers.token() not in helpers.error_text(e)
                assert e.pgcode and not e.pgcode.startswith("XX"), (e.pgcode, str(e))
        assert scalar(conn, "SELECT count(*) FROM remote.appointments") == 500
    finally:
        conn.close()


def test_redirect_to_other_schemes_is_refused():
    """Redirects to file://, gopher://, dict:// and ftp:// are refused with a
    clear error (no content of the target, no crash), and the backend keeps
    working."""
    conn = db().connect()
    try:
        for target in ("file:///etc/passwd", "gopher://127.0.0.1/", "dict://127.0.0.1/",
                       "ftp://127.0.0.1/"):
            mock().config(fault={"mode": "redirect", "location": target})
            e = expect_error(conn, BY_ID)
            text = helpers.error_text(e)
            assert "root:" not in text, "the redirect target was read:\n" + text
            assert e.pgcode and not e.pgcode.startswith("XX"), (target, e.pgcode, text)
            assert "/appointments/5" in text, "the error does not name the request:\n" + text
            scheme = target.split(":")[0]
            assert scheme in text.lower() or "redirect" in text.lower(), \
                "the error does not say what was refused:\n" + text
            assert scalar(conn, "SELECT 1") == 1
        mock().config(fault=None)
        assert [r[0] for r in query(conn, BY_ID)] == [5]
    finally:
        conn.close()


def test_redirect_loop_ends_in_an_error():
    """A redirect loop ends with an error after a bounded number of hops."""
    conn = db().connect()
    try:
        port = int(helpers.env("CRM_MOCK_BASE").rsplit(":", 1)[1])
        mock().config(fault={"mode": "redirect", "count": -1,
                             "location": "http://127.0.0.1:%d{request}" % port})
        mock().clear_log()
        e = expect_error(conn, BY_ID)
        assert e.pgcode and not e.pgcode.startswith("XX"), (e.pgcode, str(e))
        assert len(mock().log()) <= 25, "%d requests for one redirect loop" % len(mock().log())
    finally:
        conn.close()


def test_read_ahead_is_dropped_with_its_scan():
    """A paged scan sends the next page's request while the executor reads
    the current page; a scan that stops early (a cursor closed after one
    row) drops that request, and the next query reads the remote anew: the
    answer sent ahead for the old scan never reaches it."""
    conn = db().connect()
    try:
        mock().clear_log()
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("DECLARE c NO SCROLL CURSOR FOR SELECT id, status FROM remote.appointments")
            cur.execute("FETCH 1 FROM c")
            assert cur.fetchone() is not None
            # page 2's request is sent, though the mock may not have logged it yet
            helpers.wait_until(lambda: len(mock().log()) >= 2, timeout=5,
                               what="the request of page 2 sent ahead")
            pages = [e["query"].get("page") for e in mock().log()]
            assert pages == [["1"], ["2"]], "expected page 1 read and page 2 sent ahead, got %r" % pages
            cur.execute("CLOSE c")
            cur.execute("COMMIT")

        # the rows of page 2 change after the old scan asked for them
        status, body = mock().api_get("/appointments?per_page=100&page=2")
        assert status == 200
        page2 = [r["id"] for r in helpers.json.loads(body)["data"]]
        assert page2, "the mock's listing has no second page"
        mock().mutate(update=page2, fields={"status": "no_show", "admin_notes": "read-ahead check"})

        mock().clear_log()
        got = dict(query(conn, "SELECT id, status FROM remote.appointments"))
        want = {r["id"]: r["status"] for r in mock().data()}
        assert got == want, "%d rows differ from the remote" % sum(
            1 for k in set(got) | set(want) if got.get(k) != want.get(k))
        pages = [e["query"].get("page") for e in mock().log()]
        assert pages[:2] == [["1"], ["2"]] and len(pages) == len(set(map(str, pages))), \
            "each page of the new scan is requested once, from page 1: %r" % pages
    finally:
        conn.close()
