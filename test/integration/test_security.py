"""Security: another role's token stays hidden, and a value cannot smuggle a
query parameter into a request."""

from helpers import (connect, error_text, execute, expect_error, mock, module_db,
                     query, quote_ident, scalar)


def test_other_roles_cannot_read_the_token():
    """pg_user_mappings shows no options of another role's mapping, and the
    catalog itself is closed to non-superusers."""
    db = module_db(__name__)
    conn = db.connect()
    role = "crm_it_alice"
    try:
        execute(conn, "DROP ROLE IF EXISTS %s" % role)
        execute(conn, "CREATE ROLE %s LOGIN" % role)
        execute(conn, "GRANT USAGE ON FOREIGN SERVER mockapi TO %s" % role)
        execute(conn, "SET ROLE %s" % role)
        rows = query(conn, "SELECT usename, umoptions FROM pg_user_mappings WHERE srvname = 'mockapi'")
        assert rows and all(r[1] is None for r in rows), rows
        e = expect_error(conn, "SELECT umoptions FROM pg_user_mapping")
        assert e.pgcode == "42501", (e.pgcode, error_text(e))
        # a scan as alice uses alice's mapping, which does not exist
        e = expect_error(conn, "SELECT count(*) FROM remote.appointments")
        assert "user mapping not found" in error_text(e) or e.pgcode == "42501", error_text(e)
        execute(conn, "RESET ROLE")
    finally:
        execute(conn, "RESET ROLE")
        execute(conn, "DROP OWNED BY %s" % role)
        execute(conn, "DROP ROLE IF EXISTS %s" % role)
        conn.close()


def test_values_cannot_inject_parameters():
    """A status holding '&per_page=1000' is never sent raw: no request carries
    an extra parameter, and no row matches."""
    m = mock()
    db = module_db(__name__)
    conn = db.connect()
    try:
        m.clear_log()
        n = scalar(conn, "SELECT count(*) FROM remote.appointments WHERE status = %s",
                   ("confirmed&per_page=1000",))
        assert n == 0, n
        for entry in m.log():
            assert "1000" not in entry["raw_query"], entry["raw_query"]
            assert entry["query"].get("per_page", ["100"]) == ["100"], entry
        m.clear_log()
        n = scalar(conn, "SELECT count(*) FROM remote.appointments_export WHERE location = %s",
                   ("adelaide&status=pending",))
        assert n == 0, n
        for entry in m.log():
            assert "status" not in entry["query"], entry
    finally:
        conn.close()
