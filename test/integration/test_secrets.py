"""The API token never leaks: not into the server log (even at debug5), nor
error messages, notices, EXPLAIN output or pg_stat_activity.

The user mappings are created with the token passed as COPY data, so no SQL
statement text of the test contains it (see helpers.create_user_mapping);
whatever contains it afterwards came from the FDW.
"""

import secrets
import time

import helpers
from helpers import error_text, expect_error, mock, query, scalar

WRONG = "7|leakcheck" + secrets.token_hex(12)
_ready = set()


def db():
    """This module's database, plus a server whose user mapping holds a
    wrong token."""
    d = helpers.module_db(__name__)
    if d.name not in _ready:
        conn = d.connect()
        try:
            helpers.create_server(conn, "wrongtok", helpers.env("CRM_MOCK_URL"), tok=WRONG)
            helpers.execute(conn, "CREATE SCHEMA wrongtok")
            helpers.execute(conn, "IMPORT FOREIGN SCHEMA api LIMIT TO (appointments) "
                                  "FROM SERVER wrongtok INTO wrongtok")
        finally:
            conn.close()
        _ready.add(d.name)
    return d


def secret_forms():
    """The tokens, and their secret parts alone (after "id|")."""
    forms = []
    for tok in (helpers.token(), WRONG):
        forms += [tok, tok.split("|", 1)[1]]
    return forms


def assert_no_secret(where, text):
    for s in secret_forms():
        assert s not in text, "a token appears in %s" % where


def test_token_never_leaks():
    """Scans, retries, a 401 from the remote, a wrong token, a 422, EXPLAIN
    ANALYZE and a scan waiting on a hang, all at log_min_messages = debug5:
    no token in the server log, the errors, the notices, EXPLAIN or
    pg_stat_activity."""
    d = db()
    log_from = helpers.log_size()
    conn = d.connect(log_min_messages="debug5", client_min_messages="debug5",
                     log_min_error_statement="debug5", log_statement="all",
                     log_error_verbosity="verbose")
    watcher = d.connect()
    seen = []                                   # (where, text)
    try:
        m = mock()
        query(conn, "SELECT * FROM remote.appointments")
        query(conn, "SELECT * FROM remote.appointments WHERE id IN (1, 100000)")
        m.config(fault={"mode": "500", "count": 2})
        assert scalar(conn, "SELECT count(*) FROM remote.appointments") == 500
        m.config(fault={"mode": "429", "count": 1, "retry_after_seconds": 0})
        assert scalar(conn, "SELECT count(*) FROM remote.appointments_export") == 500
        for fault in ("401", "422", "502html"):
            m.config(fault={"mode": fault, "count": -1})
            seen.append(("the error of a %s" % fault,
                         error_text(expect_error(conn, "SELECT * FROM remote.appointments"))))
        m.config(fault=None)
        e = expect_error(conn, "SELECT * FROM wrongtok.appointments")
        assert e.pgcode == "28000", (e.pgcode, str(e))
        seen.append(("the error of a wrong token", error_text(e)))
        plan = query(conn, "EXPLAIN (VERBOSE, ANALYZE) SELECT * FROM remote.appointments "
                           "WHERE status = 'pending'")
        seen.append(("EXPLAIN output", "\n".join(r[0] for r in plan)))

        # pg_stat_activity of the scanning backend while it waits
        m.config(fault={"mode": "hang", "count": 1, "hang_seconds": 30})
        sql = "SELECT count(*) FROM remote.appointments WHERE location = 'adelaide'"
        q = helpers.start_query(conn, sql)
        m.wait_fault_fired(1)
        time.sleep(0.2)
        activity = query(watcher, "SELECT a::text, query FROM pg_stat_activity a WHERE pid = %s",
                         (conn.get_backend_pid(),))
        assert activity and activity[0][1] == sql, "not the scanning backend: %r" % activity
        seen.append(("pg_stat_activity of the scanning backend", activity[0][0]))
        scalar(watcher, "SELECT pg_cancel_backend(%s)", (conn.get_backend_pid(),))
        q.wait(10)
        seen.append(("the error of a cancel", error_text(q.error)))

        seen.append(("the notices at debug5", "".join(conn.notices)))
        assert any(n.startswith("DEBUG") and "/appointments" in n for n in conn.notices), \
            "no DEBUG message of the FDW reached the client; is debug logging on?"
        time.sleep(0.3)
        log = helpers.read_log_since(log_from)
        assert "DEBUG" in log and "/appointments" in log, "the server log has no debug output"
        seen.append(("the server log", log))
        for where, text in seen:
            assert_no_secret(where, text)
    finally:
        conn.close()
        watcher.close()
