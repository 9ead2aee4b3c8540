"""Helpers of the sync integration tests (test_sync_*.py).

What is here, on top of helpers.py:
  SyncDB              a database of its own with crm_fdw, dropped on exit
  add_server()        a crm_fdw server on a given mock, user mappings for
                      chosen roles (the token never in a statement's text)
  set_token()         ALTER USER MAPPING ... SET token, the same way
  sync()              crm_sync_now / crm_sync_full, rows as dicts
  SyncThread          a sync running in a thread
  compare()           crm.appointments of a server against GET /_mock/data,
                      field by field, plus the CRM invariants
  assert_synced()     compare() and fail with the details unless all is equal
  wait_for_cluster()  after a crash restart: wait until connections work
  worker_pids(), scheduler_pids()
"""

import io
import json
import os
import time

import psycopg2

import helpers
from helpers import QueryThread, connect, execute, query, quote_ident, scalar


class SyncDB:
    """A fresh database with the extension; drop() (or leave the with block)
    to remove it."""

    def __init__(self, name):
        self.name = "crm_it_sync_" + name
        admin = connect("postgres")
        try:
            execute(admin, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % quote_ident(self.name))
            execute(admin, "CREATE DATABASE %s" % quote_ident(self.name))
        finally:
            admin.close()
        conn = self.connect()
        try:
            execute(conn, "CREATE EXTENSION crm_fdw")
        finally:
            conn.close()

    def connect(self, **settings):
        return connect(self.name, **settings)

    def drop(self):
        admin = wait_for_cluster()
        try:
            execute(admin, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % quote_ident(self.name))
        finally:
            admin.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.drop()


def _copy_secret(conn, value):
    """Put value into temp table crm_it_secret through COPY (not SQL text)."""
    execute(conn, "CREATE TEMP TABLE IF NOT EXISTS crm_it_secret (v text)")
    execute(conn, "TRUNCATE crm_it_secret")
    escaped = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    with conn.cursor() as cur:
        cur.copy_expert("COPY crm_it_secret FROM STDIN", io.StringIO(escaped + "\n"))


def set_token(conn, server, tok, user="CURRENT_USER"):
    """ALTER USER MAPPING ... OPTIONS (SET token ...), token as COPY data."""
    _copy_secret(conn, tok)
    execute(conn, """
        DO $$ BEGIN
          EXECUTE format('ALTER USER MAPPING FOR %%s SERVER %%I OPTIONS (SET token %%L)',
                         %s, %s, (SELECT v FROM crm_it_secret));
        END $$""", (user, server))
    execute(conn, "TRUNCATE crm_it_secret")


def add_server(conn, name, url, mappings=("CURRENT_USER",), tok=None, **options):
    """A crm_fdw server on url (test defaults: no client rate limit, 10 ms
    backoff) and a user mapping with the token for each role in mappings."""
    opts = {"url": url, "rate_limit_per_minute": "0", "retry_base_ms": "10"}
    opts.update({k: str(v) for k, v in options.items()})
    with conn.cursor() as cur:
        cur.execute("CREATE SERVER %s FOREIGN DATA WRAPPER crm_fdw OPTIONS (%s)" % (
            quote_ident(name), ", ".join("%s %%s" % quote_ident(k) for k in opts)),
            list(opts.values()))
    for role in mappings:
        helpers.create_user_mapping(conn, name, tok or helpers.token(), user=role)


def sync(conn, server, full=False):
    """crm_sync_now(server) (or crm_sync_full): its rows as dicts."""
    fn = "crm_sync_full" if full else "crm_sync_now"
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM %s(%%s)" % fn, (server,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def sync_ok(conn, server, full=False):
    """A sync that must complete: its one row."""
    rows = sync(conn, server, full)
    assert len(rows) == 1, "%s returned %d rows: %r" % (server, len(rows), rows)
    assert rows[0]["status"] == "completed", "sync of %s: %s: %s" % (
        server, rows[0]["status"], rows[0]["error_message"])
    return rows[0]


class SyncThread(QueryThread):
    """A sync in a thread on its own connection; after wait(): rows or error."""

    def __init__(self, db, server, full=False, conn=None, **settings):
        super().__init__(conn or db.connect(**settings),
                         "%s('%s')" % ("crm_sync_full" if full else "crm_sync_now", server))
        self.pid = self.conn.get_backend_pid()
        self.server, self.full = server, full

    def work(self):
        return sync(self.conn, self.server, self.full)

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass


def start_sync(db, server, full=False, **settings):
    t = SyncThread(db, server, full, **settings)
    t.start()
    return t


def log_rows(conn, server, where="true"):
    """crm.sync_log rows of a server, oldest first, as dicts."""
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM crm.sync_log WHERE server_name = %%s AND (%s) ORDER BY id" % where,
                    (server,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def running_row(conn, server):
    rows = log_rows(conn, server, "status = 'running'")
    return rows[-1] if rows else None


def worker_pids(conn, datname=None):
    """pids of the crm_fdw sync workers (of one database)."""
    return [r[0] for r in query(conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'crm_fdw sync'"
                                      " AND (%s::text IS NULL OR datname = %s) ORDER BY pid",
                                (datname, datname))]


def scheduler_rows(conn):
    """(pid, datname, usename) of the crm_fdw scheduler, if running."""
    return query(conn, "SELECT pid, datname, usename FROM pg_stat_activity"
                       " WHERE backend_type = 'crm_fdw scheduler'")


def wait_for_cluster(timeout=60.0):
    """A connection to postgres once the cluster accepts connections again
    (after a crash restart); fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            conn = connect("postgres")
            if scalar(conn, "SELECT NOT pg_is_in_recovery()"):
                return conn
            conn.close()
        except psycopg2.Error as e:
            last = e
        time.sleep(0.2)
    raise AssertionError("the cluster did not accept connections within %.0fs: %s" % (timeout, last))


def token_forms(*tokens):
    """Each token and its secret part (after "id|")."""
    forms = []
    for t in tokens or (helpers.token(),):
        forms.append(t)
        if "|" in t:
            forms.append(t.split("|", 1)[1])
    return forms


# --------------------------------------------------------------------------
# Exact comparison with the remote
# --------------------------------------------------------------------------

_FIELDS = """
    'client_name', {p}full_name, 'client_email', {p}email, 'client_phone', {p}phone,
    'location', {p}location, 'meeting_type', {p}meeting_type,
    'preferred_language', {p}preferred_language, 'enquiry_type', {p}enquiry_type,
    'enquiry_type_display', {p}enquiry_type_display, 'service_type', {p}service_type,
    'specific_service', {p}specific_service, 'enquiry_details', {p}enquiry_details,
    'appointment_date', {p}appointment_date, 'appointment_time', {p}appointment_time,
    'appointment_datetime', {p}appointment_datetime, 'duration_minutes', {p}duration_minutes,
    'status', {p}status, 'status_display', {p}status_display, 'is_paid', {p}is_paid,
    'amount', {p}amount, 'discount_amount', {p}discount_amount, 'final_amount', {p}final_amount,
    'promo_code', {p}promo_code, 'admin_notes', {p}admin_notes, 'client_notes', {p}client_notes,
    'confirmed_at', {p}confirmed_at, 'cancelled_at', {p}cancelled_at,
    'cancellation_reason', {p}cancellation_reason,
    'source_created_at', {p}created_at, 'source_updated_at', {p}updated_at,
    'payment_id', {p}payment_id, 'payment_status', {p}payment_status,
    'payment_method', {p}payment_method, 'paid_at', {p}paid_at,
    'assigned_admin_id', {p}assigned_admin_id, 'assigned_admin_name', {p}assigned_admin_name,
    'assigned_admin_email', {p}assigned_admin_email"""

_COMPARE_SQL = """
WITH m0 AS (
  SELECT * FROM jsonb_to_recordset(%(data)s::jsonb) AS r(
    id bigint, full_name text, email text, phone text, location text, meeting_type text,
    preferred_language text, enquiry_type text, enquiry_type_display text, service_type text,
    specific_service text, enquiry_details text, appointment_date date, appointment_time time,
    appointment_datetime timestamptz, duration_minutes int, status text, status_display text,
    is_paid boolean, amount numeric, discount_amount numeric, final_amount numeric,
    promo_code text, assigned_admin jsonb, payment jsonb, admin_notes text, client_notes text,
    confirmed_at timestamptz, cancelled_at timestamptz, cancellation_reason text,
    created_at timestamptz, updated_at timestamptz)
), m AS (
  SELECT m0.*, (payment->>'id')::bigint AS payment_id, payment->>'status' AS payment_status,
         payment->>'payment_method' AS payment_method, (payment->>'paid_at')::timestamptz AS paid_at,
         (assigned_admin->>'id')::bigint AS assigned_admin_id,
         assigned_admin->>'name' AS assigned_admin_name,
         assigned_admin->>'email' AS assigned_admin_email
    FROM m0
), r AS (
  SELECT m.id, jsonb_build_object(%(remote_fields)s) AS j FROM m
), a AS (
  SELECT * FROM crm.appointments WHERE server_name = %(server)s
), l AS (
  SELECT a.external_id AS id, jsonb_build_object(%(local_fields)s) AS j FROM a
), diff AS (
  SELECT r.id, k.key, r.j -> k.key AS remote, l.j -> k.key AS local
    FROM r JOIN l USING (id) CROSS JOIN LATERAL jsonb_object_keys(r.j) AS k(key)
   WHERE (r.j -> k.key) IS DISTINCT FROM (l.j -> k.key)
)
SELECT jsonb_build_object(
  'remote', (SELECT count(*) FROM m),
  'local', (SELECT count(*) FROM a),
  'missing', (SELECT count(*) FROM m WHERE NOT EXISTS (SELECT 1 FROM a WHERE a.external_id = m.id)),
  'missing_ids', (SELECT to_jsonb((array_agg(m.id ORDER BY m.id))[1:10]) FROM m
                   WHERE NOT EXISTS (SELECT 1 FROM a WHERE a.external_id = m.id)),
  'extra', (SELECT count(*) FROM a WHERE NOT EXISTS (SELECT 1 FROM m WHERE m.id = a.external_id)),
  'extra_ids', (SELECT to_jsonb((array_agg(a.external_id ORDER BY a.external_id))[1:10]) FROM a
                 WHERE NOT EXISTS (SELECT 1 FROM m WHERE m.id = a.external_id)),
  'not_synced', (SELECT count(*) FROM a WHERE a.sync_status <> 'synced'),
  'different', (SELECT count(DISTINCT id) FROM diff),
  'differences', (SELECT coalesce(jsonb_agg(to_jsonb(d)), '[]') FROM
                   (SELECT * FROM diff ORDER BY id, key LIMIT 12) d),
  'duplicate_contact_emails', (SELECT count(*) FROM
                   (SELECT lower(email) FROM crm.contacts GROUP BY 1 HAVING count(*) > 1) x),
  'appointments_without_contact', (SELECT count(*) FROM a WHERE a.client_email IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM crm.contacts c WHERE lower(c.email) = lower(a.client_email))),
  'wrong_contact_link', (SELECT count(*) FROM a WHERE a.crm_contact_id IS DISTINCT FROM
                   (SELECT c.id FROM crm.contacts c WHERE lower(c.email) = lower(a.client_email))),
  'leads_not_one', (SELECT count(*) FROM a
                   WHERE (SELECT count(*) FROM crm.leads l WHERE l.appointment_id = a.id) <> 1),
  'wrong_lead', (SELECT count(*) FROM a JOIN crm.leads l ON l.appointment_id = a.id
                   LEFT JOIN crm.lead_status_map sm ON sm.appointment_status = a.status
                  WHERE l.status IS DISTINCT FROM coalesce(sm.lead_status, 'new')
                     OR l.contact_id IS DISTINCT FROM a.crm_contact_id
                     OR a.crm_lead_id IS DISTINCT FROM l.id),
  'paid_without_deal', (SELECT count(*) FROM a WHERE a.is_paid
                   AND NOT EXISTS (SELECT 1 FROM crm.deals d WHERE d.appointment_id = a.id)),
  'deals_per_appointment_over_1', (SELECT count(*) FROM
                   (SELECT appointment_id FROM crm.deals GROUP BY 1 HAVING count(*) > 1) x),
  'wrong_deal', (SELECT count(*) FROM a JOIN crm.deals d ON d.appointment_id = a.id
                   LEFT JOIN crm.deal_stage_map sm ON sm.appointment_status = a.status
                  WHERE d.stage IS DISTINCT FROM coalesce(sm.deal_stage, 'discovery')
                     OR d.amount IS DISTINCT FROM a.final_amount
                     OR a.crm_deal_id IS DISTINCT FROM d.id)
)
"""

# the counts that must be zero (besides remote = local)
MUST_BE_ZERO = ("missing", "extra", "not_synced", "different", "duplicate_contact_emails",
                "appointments_without_contact", "wrong_contact_link", "leads_not_one",
                "wrong_lead", "paid_without_deal", "deals_per_appointment_over_1", "wrong_deal")


def compare(conn, server, mock, data=None):
    """crm.appointments of server against the mock's data: a dict of counts
    (see MUST_BE_ZERO) and samples."""
    if data is None:
        data = mock.data()
    sql = _COMPARE_SQL % {
        "data": "%(data)s", "server": "%(server)s",
        "remote_fields": _FIELDS.format(p="m."), "local_fields": _local_fields()}
    return scalar(conn, sql, {"data": json.dumps(data), "server": server})


def _local_fields():
    """The local columns, in the order and with the keys of _FIELDS."""
    pairs = []
    for chunk in _FIELDS.split(","):
        chunk = chunk.strip()
        if chunk.startswith("'"):
            key = chunk.strip("'")
            pairs.append("'%s', a.%s" % (key, key))
    return ", ".join(pairs)


def problems(report):
    bad = ["%s %s" % (k, report[k]) for k in MUST_BE_ZERO if report[k]]
    if report["remote"] != report["local"]:
        bad.insert(0, "remote %s rows, local %s" % (report["remote"], report["local"]))
    return bad


def assert_synced(conn, server, mock, what="", data=None):
    """Fail unless crm.appointments of server equals the mock's data exactly
    and the CRM records are consistent."""
    report = compare(conn, server, mock, data)
    bad = problems(report)
    if bad:
        raise AssertionError("%s%s differs from the remote: %s; missing ids %s, extra ids %s, "
                             "differences %s" % (what + ": " if what else "", server, ", ".join(bad),
                                                 report["missing_ids"], report["extra_ids"],
                                                 json.dumps(report["differences"])[:1500]))
    return report


def all_crm_tables(conn):
    return [r[0] for r in query(conn, "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c"
                                      " JOIN pg_namespace n ON n.oid = c.relnamespace"
                                      " WHERE n.nspname = 'crm' AND c.relkind IN ('r', 'v', 'p')"
                                      " ORDER BY 1")]


def tables_containing(conn, needles):
    """crm.* tables and views (as text, row by row) that contain any needle."""
    found = []
    for table in all_crm_tables(conn):
        for n in needles:
            if scalar(conn, "SELECT count(*) FROM %s x WHERE strpos(x::text, %%s) > 0" % table, (n,)):
                found.append(table)
                break
    return found


def long_profile():
    return helpers.long_tests_enabled()


def env_int(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def connect_as(dbname, user, statement_timeout="120s"):
    """A connection (autocommit) as another role."""
    conn = psycopg2.connect(host=helpers.env("PGHOST"), port=helpers.env("PGPORT"), user=user,
                            dbname=dbname, application_name="crm_it")
    conn.autocommit = True
    execute(conn, "SELECT set_config('statement_timeout', %s, false)", (statement_timeout,))
    return conn


def drop_role(name):
    conn = wait_for_cluster()
    try:
        execute(conn, "DROP ROLE IF EXISTS %s" % quote_ident(name))
    finally:
        conn.close()


def create_role(name, *attrs):
    conn = wait_for_cluster()
    try:
        execute(conn, "DROP ROLE IF EXISTS %s" % quote_ident(name))
        execute(conn, "CREATE ROLE %s %s" % (quote_ident(name), " ".join(attrs)))
    finally:
        conn.close()


def grant_crm(conn, role):
    """What a role needs to sync: crm_sync_now/full, schema crm and its tables."""
    r = quote_ident(role)
    for sql in ("GRANT EXECUTE ON FUNCTION crm_sync_now(name), crm_sync_full(name) TO %s",
                "GRANT USAGE ON SCHEMA crm TO %s",
                "GRANT ALL ON ALL TABLES IN SCHEMA crm TO %s",
                "GRANT ALL ON ALL SEQUENCES IN SCHEMA crm TO %s"):
        execute(conn, sql % r)
