"""pg_dump keeps the CRM data: the crm tables are extension configuration
tables, and a restore does not make the triggers create records twice."""

import os
import subprocess

from helpers import (Database, connect, execute, mock, query, quote_ident,
                     scalar)


def _pg_tool(tool):
    bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True,
                            text=True, check=True).stdout.strip()
    return os.path.join(bindir, tool)


def _crm_state(conn):
    return query(conn, """
        SELECT (SELECT count(*) FROM crm.appointments),
               (SELECT count(*) FROM crm.contacts),
               (SELECT count(*) FROM crm.leads),
               (SELECT count(*) FROM crm.deals),
               (SELECT md5(string_agg(format('%s/%s/%s/%s', external_id, crm_contact_id,
                                             crm_lead_id, crm_deal_id), ',' ORDER BY external_id))
                  FROM crm.appointments),
               (SELECT sync_cursor FROM crm.sync_state WHERE server_name = 'mockapi')""")[0]


def test_dump_and_restore_keep_crm_data():
    """A synced database dumped and restored has the same appointments,
    contacts, leads, deals, links and cursor; a sync after the restore
    changes nothing and new rows still get records."""
    mock().reset()
    source = Database("crm_it_dump_source")
    target_name = "crm_it_dump_target"
    try:
        conn = source.connect()
        row = query(conn, "SELECT status, records_created FROM crm_sync_now('mockapi')")[0]
        assert row[0] == "completed" and row[1] == 500, row
        before = _crm_state(conn)
        conn.close()

        admin = connect("postgres")
        execute(admin, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % quote_ident(target_name))
        execute(admin, "CREATE DATABASE %s" % quote_ident(target_name))
        admin.close()
        common = ["-h", os.environ["PGHOST"], "-p", os.environ["PGPORT"], "-U", "postgres"]
        dump = subprocess.run([_pg_tool("pg_dump")] + common + ["-d", source.name],
                              capture_output=True, check=True)
        restore = subprocess.run([_pg_tool("psql")] + common + ["-X", "-q", "-v", "ON_ERROR_STOP=1",
                                                               "-d", target_name],
                                 input=dump.stdout, capture_output=True)
        assert restore.returncode == 0, restore.stderr.decode()[-2000:]

        conn = connect(target_name)
        after = _crm_state(conn)
        assert after == before, (before, after)
        row = query(conn, "SELECT status, records_created, records_updated FROM crm_sync_now('mockapi')")[0]
        assert row == ("completed", 0, 0), row
        execute(conn, "INSERT INTO crm.appointments (server_name, external_id, client_email, status, is_paid)"
                      " VALUES ('manual', 1, 'new.person@example.com', 'pending', true)")
        assert scalar(conn, "SELECT count(*) FROM crm.leads") == before[2] + 1
        assert scalar(conn, "SELECT count(*) FROM crm.deals") == before[3] + 1
        conn.close()
    finally:
        source.drop()
        admin = connect("postgres")
        execute(admin, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % quote_ident(target_name))
        admin.close()
