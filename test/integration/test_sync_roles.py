"""Syncs run as the calling role, with its user mapping; the token never leaks.

- A non-superuser with EXECUTE on crm_sync_now, the rights on schema crm
  and USAGE on the server but no user mapping gets a 'failed' run naming the
  missing user mapping; with its own user mapping the sync works, exactly.
- A role without rights on crm.* gets a clear error at once (no hang).
- While a sync runs, the worker's pg_stat_activity row never holds the
  token; after syncs (a retried 500, a 401 with a wrong token) neither the
  server log nor any crm.* table or view does.  The user mappings get their
  tokens as COPY data, so no statement text of the test holds one.
"""

import secrets
import time

import helpers
import sync_helpers as sh
from helpers import MockProcess, execute, query, scalar

ROLE = "crm_it_sync_member"
NORIGHTS = "crm_it_sync_norights"
WRONG = "9|synctest" + secrets.token_hex(16)


def test_sync_role_user_mapping():
    """No user mapping: a 'failed' run whose error names the missing user
    mapping; with one: a completed sync, equal to the remote, run by a
    worker connected as that role; rows it has no right to store go to
    crm.sync_errors, are retried however long the right is missing (no dead
    letter) and are stored once it is back."""
    sh.create_role(ROLE, "LOGIN")
    try:
        with MockProcess(rows=300, seed=21) as mp, sh.SyncDB("roles") as db:
            admin = db.connect()
            sh.add_server(admin, "rsrv", mp.url)           # a mapping for postgres only
            sh.grant_crm(admin, ROLE)
            execute(admin, "GRANT USAGE ON FOREIGN SERVER rsrv TO %s" % ROLE)
            conn = sh.connect_as(db.name, ROLE)
            try:
                mp.mock.clear_log()
                t0 = time.monotonic()
                rows = sh.sync(conn, "rsrv")
                assert time.monotonic() - t0 < 10
                assert len(rows) == 1, rows
                r = rows[0]
                assert r["status"] == "failed", "without a user mapping: %r" % r["status"]
                msg = r["error_message"] or ""
                assert "user mapping" in msg and ROLE in msg, \
                    "the error does not name the missing user mapping: %r" % msg
                assert not mp.mock.log(), "requests were sent without a user mapping"
                assert not sh.log_rows(admin, "rsrv", "status = 'running'")

                helpers.create_user_mapping(admin, "rsrv", helpers.token(), user=ROLE)
                seen_users = set()
                t = sh.SyncThread(db, "rsrv", conn=conn)
                t.start()
                while t.is_alive():
                    seen_users.update(r[0] for r in query(
                        admin, "SELECT usename FROM pg_stat_activity WHERE backend_type = 'crm_fdw sync'"))
                    time.sleep(0.005)
                t.wait(60)
                assert t.error is None, t.error
                assert t.rows[0]["status"] == "completed", t.rows
                assert seen_users <= {ROLE}, "sync workers ran as %r" % seen_users
                sh.assert_synced(admin, "rsrv", mp.mock)
                # its rights are the role's: rows it may not store land in
                # crm.sync_errors, and are stored once it may
                execute(admin, "REVOKE INSERT, UPDATE ON crm.contacts FROM %s" % ROLE)
                new_ids = mp.mock.mutate(insert=3)["inserted"]
                r = sh.sync_ok(conn, "rsrv")
                assert r["records_failed"] == 3, "rows stored without the right to: %r" % r
                errors = query(admin, "SELECT external_appointment_id, error_message FROM crm.sync_errors"
                                      " WHERE resolved_at IS NULL ORDER BY 1")
                assert [e[0] for e in errors] == sorted(new_ids), errors
                assert all("permission denied for table contacts" in e[1] for e in errors), errors
                # a missing right is no fault of the rows: it uses up none of
                # their retries, however many syncs it lasts
                execute(admin, "ALTER ROLE %s SET crm_fdw.max_row_retries = 1" % ROLE)
                few_retries = sh.connect_as(db.name, ROLE)
                try:
                    for _ in range(2):
                        assert sh.sync_ok(few_retries, "rsrv")["records_failed"] == 3
                finally:
                    few_retries.close()
                    execute(admin, "ALTER ROLE %s RESET crm_fdw.max_row_retries" % ROLE)
                assert scalar(admin, "SELECT count(*) FROM crm.sync_errors WHERE dead_letter"
                                     " OR retry_count > 0") == 0
                execute(admin, "GRANT INSERT, UPDATE ON crm.contacts TO %s" % ROLE)
                r = sh.sync_ok(conn, "rsrv")
                assert r["records_failed"] == 0, r
                assert not scalar(admin, "SELECT count(*) FROM crm.sync_errors WHERE resolved_at IS NULL")
                sh.assert_synced(admin, "rsrv", mp.mock, "after the rights came back")
            finally:
                conn.close()
                admin.close()
    finally:
        sh.drop_role(ROLE)


def test_sync_role_without_crm_rights():
    """A role with EXECUTE, USAGE on the server and a user mapping but no
    rights on schema crm: crm_sync_now fails with a clear error within
    10 s, and leaves no worker and no 'running' run behind."""
    sh.create_role(NORIGHTS, "LOGIN")
    try:
        with MockProcess(rows=100, seed=22) as mp, sh.SyncDB("norights") as db:
            admin = db.connect()
            sh.add_server(admin, "nsrv", mp.url, mappings=("CURRENT_USER", NORIGHTS))
            execute(admin, "GRANT EXECUTE ON FUNCTION crm_sync_now(name) TO %s" % NORIGHTS)
            execute(admin, "GRANT USAGE ON FOREIGN SERVER nsrv TO %s" % NORIGHTS)
            conn = sh.connect_as(db.name, NORIGHTS, statement_timeout="30s")
            try:
                t0 = time.monotonic()
                e = helpers.expect_error(conn, "SELECT * FROM crm_sync_now('nsrv')")
                took = time.monotonic() - t0
                text = helpers.error_text(e)
                assert took < 10, "the error took %.1fs" % took
                assert e.pgcode != "57014", "it hung until statement_timeout: %s" % e
                assert "crm" in text and ("permission" in text or "schema" in text), \
                    "not a clear error: %s" % text
                assert not sh.worker_pids(admin, db.name)
                assert not scalar(admin, "SELECT count(*) FROM crm.sync_log WHERE status = 'running'")
                assert not mp.mock.log(), "requests were sent"
                # the same role, once granted the rights, syncs
                sh.grant_crm(admin, NORIGHTS)
                assert sh.sync_ok(conn, "nsrv")["records_created"] == 100
                sh.assert_synced(admin, "nsrv", mp.mock)
            finally:
                conn.close()
                admin.close()
    finally:
        sh.drop_role(NORIGHTS)


def test_sync_token_never_leaks():
    """With the worker's database at log_min_messages = debug5: during a
    slow sync the worker's pg_stat_activity row never holds the token; after
    it, a sync with retried 500s and a 401 run with a wrong token, the
    server log and every crm.* table and view are free of both tokens."""
    forms = sh.token_forms(helpers.token(), WRONG)
    log_from = helpers.log_size()
    with MockProcess(rows=400, seed=23) as mp, sh.SyncDB("secrets") as db:
        admin = db.connect()
        execute(admin, "ALTER DATABASE %s SET log_min_messages = 'debug5'" % db.name)
        sh.add_server(admin, "tsrv", mp.url, max_retries=3)
        mp.mock.config(fault={"mode": "slow", "count": -1, "slow_seconds": 0.3,
                              "path": "/appointments"})
        t = sh.start_sync(db, "tsrv")
        activity = []
        try:
            while t.is_alive():
                activity += [r[0] for r in query(
                    admin, "SELECT a::text FROM pg_stat_activity a WHERE backend_type = 'crm_fdw sync'"
                           " OR pid = %s", (t.pid,))]
                time.sleep(0.01)
            t.wait(30)
        finally:
            t.close()
        assert t.error is None and t.rows[0]["status"] == "completed", (t.error, t.rows)
        assert any("crm_fdw sync" in a for a in activity), "never saw the worker in pg_stat_activity"
        for a in activity:
            for f in forms:
                assert f not in a, "pg_stat_activity holds the token: %s" % a.replace(f, "<TOKEN>")

        mp.mock.mutate(update_random=10)
        mp.mock.config(fault={"mode": "500", "count": 2})
        r = sh.sync_ok(admin, "tsrv")
        assert r["retries"] >= 2, r

        sh.set_token(admin, "tsrv", WRONG)
        mp.mock.clear_log()
        r = sh.sync(admin, "tsrv")[0]
        assert r["status"] == "failed" and "401" in "%s %s" % (r["error_message"], r["error_detail"]), r
        assert [e["auth"] for e in mp.mock.log()] == ["wrong"], mp.mock.log()
        sh.set_token(admin, "tsrv", helpers.token())
        sh.assert_synced(admin, "tsrv", mp.mock)

        leaked = sh.tables_containing(admin, forms)
        assert not leaked, "a token is in %s" % leaked
        admin.close()
    time.sleep(0.3)
    log = helpers.read_log_since(log_from)
    assert "DEBUG" in log and "crm_fdw" in log, "the worker logged nothing at debug5"
    assert "retrying GET" in log, "the retries' DEBUG1 messages are not in the server log"
    with open(helpers.server_log_path(), "rb") as fh:
        whole = fh.read().decode("utf-8", "replace")
    for f in forms:
        assert f not in whole, "a token is in the server log"
