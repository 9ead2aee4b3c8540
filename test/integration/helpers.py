"""Fixtures and helpers shared by crm_fdw's integration tests.

The tests run against the cluster and the default mock API that test/run-tests
(test/lib.sh) starts; their addresses come from the environment: PGHOST,
PGPORT, PGUSER, CRM_MOCK_BASE, CRM_MOCK_URL, CRM_MOCK_TOKEN and CRM_WORK.
Only 127.0.0.1 is ever used.

What is here:
  Mock            a client of the mock's control API (/_mock/...)
  MockProcess     an extra mock instance on a free port, for other --rows etc.
  connect()       a psycopg2 connection with autocommit
  module_db()     a fresh database per test module, with the extension, the
                  server "mockapi", a user mapping and the tables of
                  IMPORT FOREIGN SCHEMA in schema "remote"
  QueryThread     a query running in a thread (for cancel/terminate tests)
  proc_status_kb  VmRSS / VmHWM of a backend from /proc
  Skip            raise it to skip a test (not counted as passed)
"""

import io
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MOCK_SCRIPT = os.path.join(ROOT, "test", "mock", "mock_api.py")

# The columns every result comparison checks: one of each type, nested values
# reached through json_path, and text with unicode, quotes and newlines.
TYPED_COLUMNS = ["id", "full_name", "status", "location", "enquiry_type",
                 "appointment_date", "appointment_time", "appointment_datetime",
                 "duration_minutes", "is_paid", "final_amount", "payment_amount",
                 "paid_at", "assigned_admin_name", "enquiry_details",
                 "created_at", "updated_at"]


class Skip(Exception):
    """Raised by a test that cannot run here; reported as "skip"."""


def env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError("environment variable %s is not set: run the tests "
                           "through test/run-tests, or source test/lib.sh and start "
                           "the cluster and the mock first" % name)
    return value


def token():
    return env("CRM_MOCK_TOKEN")


def long_tests_enabled():
    return os.environ.get("CRM_TEST_LONG", "") not in ("", "0")


def server_log_path():
    return os.path.join(env("CRM_WORK"), "postgres.log")


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Poll predicate() until it returns a true value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# --------------------------------------------------------------------------
# The mock API
# --------------------------------------------------------------------------

class Mock:
    """Client of one mock instance's control API."""

    def __init__(self, base, cafile=None):
        self.base = base.rstrip("/")
        self.url = self.base + "/api/crm"
        self.ssl_context = ssl.create_default_context(cafile=cafile) if cafile else None

    def _call(self, method, path, body=None, timeout=60):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise AssertionError("mock %s %s: HTTP %d %s"
                                 % (method, path, e.code, e.read()[:500])) from None

    def reset(self, rows=None, seed=None):
        body = {}
        if rows is not None:
            body["rows"] = rows
        if seed is not None:
            body["seed"] = seed
        return self._call("POST", "/_mock/reset", body, timeout=120)

    def config(self, **settings):
        return self._call("POST", "/_mock/config", settings)

    def get_config(self):
        return self._call("GET", "/_mock/config")

    def mutate(self, **ops):
        return self._call("POST", "/_mock/mutate", ops)

    def log(self):
        return self._call("GET", "/_mock/log")

    def clear_log(self):
        return self._call("DELETE", "/_mock/log")

    def data(self):
        return self._call("GET", "/_mock/data", timeout=300)

    def clock(self):
        return self._call("GET", "/_mock/clock")

    def health(self):
        return self._call("GET", "/_mock/health", timeout=5)

    def wait_fault_fired(self, n=1, timeout=10):
        """Wait until the configured fault has hit n requests."""
        return wait_until(lambda: self.get_config()["fault_state"]["fired"] >= n,
                          timeout, what="the mock's fault to fire %d time(s)" % n)

    def api_get(self, path_and_query, tok=None):
        """A direct API request with the token (another client of the API)."""
        req = urllib.request.Request(self.url + path_and_query, headers={
            "Authorization": "Bearer " + (tok or token()), "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


_default_mock = None


def mock():
    """The default mock (500 rows, seed 42) that test/run-tests started."""
    global _default_mock
    if _default_mock is None:
        _default_mock = Mock(env("CRM_MOCK_BASE"))
    return _default_mock


class MockProcess:
    """An extra mock instance, started like test/lib.sh does; always stop() it.

    Usable as a context manager.  Accepts the test token unless tokens= says
    otherwise.
    """

    def __init__(self, rows=500, seed=42, rate_limit=0, tokens=None, timeout=60, tls=None):
        """tls: (certificate file, key file) to serve HTTPS."""
        self.dir = tempfile.mkdtemp(prefix="crm_it_mock.")
        port_file = os.path.join(self.dir, "port")
        self.stderr_path = os.path.join(self.dir, "stderr")
        cmd = [sys.executable, MOCK_SCRIPT, "--port", "0", "--port-file", port_file,
               "--rows", str(rows), "--seed", str(seed), "--rate-limit", str(rate_limit)]
        if tls:
            cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        for t in (tokens or [token()]):
            cmd += ["--token", t]
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while not (os.path.exists(port_file) and os.path.getsize(port_file) > 0):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("extra mock did not start")
            time.sleep(0.05)
        with open(port_file) as fh:
            self.port = int(fh.read())
        self.mock = Mock("%s://127.0.0.1:%d" % ("https" if tls else "http", self.port),
                         cafile=tls[0] if tls else None)
        self.url = self.mock.url

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------

class NoticeSink(list):
    """conn.notices replacement that keeps every notice (psycopg2 keeps 50)."""


def connect(dbname="postgres", statement_timeout="120s", **settings):
    """A psycopg2 connection with autocommit.  statement_timeout is a safety
    net so that a hung test fails instead of blocking the run."""
    conn = psycopg2.connect(host=env("PGHOST"), port=env("PGPORT"),
                            user=os.environ.get("PGUSER", "postgres"), dbname=dbname,
                            application_name="crm_it")
    conn.autocommit = True
    conn.notices = NoticeSink()
    settings = dict(settings)
    if statement_timeout is not None:
        settings.setdefault("statement_timeout", statement_timeout)
    with conn.cursor() as cur:
        for name, value in settings.items():
            cur.execute("SELECT set_config(%s, %s, false)", (name, str(value)))
    return conn


def query(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


def scalar(conn, sql, params=None):
    rows = query(conn, sql, params)
    return rows[0][0] if rows else None


def execute(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)


def expect_error(conn, sql, params=None):
    """Run sql, which must fail; return the psycopg2 error."""
    try:
        rows = query(conn, sql, params)
    except psycopg2.Error as e:
        return e
    raise AssertionError("expected an error from %r, got %d row(s): %r"
                         % (sql, len(rows), rows[:3]))


def error_text(e):
    """Every part of a psycopg2 error a user can see, as one string."""
    d = e.diag
    parts = [str(e), e.pgerror or "", d.message_primary or "", d.message_detail or "",
             d.message_hint or "", d.context or "", d.statement_position or ""]
    return "\n".join(parts)


def backend_pid(conn):
    return conn.get_backend_pid()


def create_user_mapping(conn, server, tok, user="CURRENT_USER"):
    """CREATE USER MAPPING with the token, without the token ever being part
    of an SQL statement's text (it travels as COPY data)."""
    execute(conn, "CREATE TEMP TABLE IF NOT EXISTS crm_it_secret (v text)")
    execute(conn, "TRUNCATE crm_it_secret")
    escaped = tok.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    with conn.cursor() as cur:
        cur.copy_expert("COPY crm_it_secret FROM STDIN", io.StringIO(escaped + "\n"))
    # user and server are not secret; psycopg2 quotes them into the DO body
    execute(conn, """
        DO $$ BEGIN
          EXECUTE format('CREATE USER MAPPING FOR %%s SERVER %%I OPTIONS (token %%L)',
                         %s, %s, (SELECT v FROM crm_it_secret));
        END $$""", (user, server))
    execute(conn, "TRUNCATE crm_it_secret")


def create_server(conn, name, url, schema=None, tok=None, **options):
    """A crm_fdw server (test defaults: no client rate limit, 10 ms backoff),
    a user mapping, and when schema is given the imported tables there."""
    opts = {"url": url, "rate_limit_per_minute": "0", "retry_base_ms": "10"}
    opts.update({k: str(v) for k, v in options.items()})
    with conn.cursor() as cur:
        sql = "CREATE SERVER %s FOREIGN DATA WRAPPER crm_fdw OPTIONS (%s)" % (
            quote_ident(name), ", ".join("%s %%s" % quote_ident(k) for k in opts))
        cur.execute(sql, list(opts.values()))
    create_user_mapping(conn, name, tok or token())
    if schema:
        execute(conn, "CREATE SCHEMA IF NOT EXISTS %s" % quote_ident(schema))
        execute(conn, "IMPORT FOREIGN SCHEMA api FROM SERVER %s INTO %s"
                % (quote_ident(name), quote_ident(schema)))


def quote_ident(name):
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


class Database:
    """A database of its own for one test module."""

    def __init__(self, name):
        self.name = name
        admin = connect("postgres")
        try:
            execute(admin, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % quote_ident(name))
            execute(admin, "CREATE DATABASE %s" % quote_ident(name))
        finally:
            admin.close()
        conn = self.connect()
        try:
            execute(conn, "CREATE EXTENSION crm_fdw")
            create_server(conn, "mockapi", env("CRM_MOCK_URL"), schema="remote")
        finally:
            conn.close()

    def connect(self, **settings):
        return connect(self.name, **settings)

    def drop(self):
        admin = connect("postgres")
        try:
            execute(admin, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % quote_ident(self.name))
        finally:
            admin.close()


_databases = {}


def module_db(module_name):
    """The database of a test module: created on first use, dropped by run.py
    after the module's last test."""
    short = module_name.rsplit(".", 1)[-1]
    if short.startswith("test_"):
        short = short[len("test_"):]
    if module_name not in _databases:
        _databases[module_name] = Database("crm_it_" + short)
    return _databases[module_name]


def drop_module_db(module_name):
    db = _databases.pop(module_name, None)
    if db is not None:
        db.drop()


def load_local_copy(conn, rows=None, table="local_copy", like="remote.appointments"):
    """(Re)create a local table with the mock's current data (GET /_mock/data),
    typed like the imported foreign table, flattened columns filled."""
    if rows is None:
        rows = mock().data()
    execute(conn, "DROP TABLE IF EXISTS %s" % table)
    execute(conn, "CREATE TABLE %s AS SELECT * FROM jsonb_populate_recordset(NULL::%s, %%s::jsonb)"
            % (table, like), (json.dumps(rows),))
    execute(conn, """
        UPDATE %s SET
          assigned_admin_id = (assigned_admin->>'id')::bigint,
          assigned_admin_name = assigned_admin->>'name',
          assigned_admin_email = assigned_admin->>'email',
          payment_id = (payment->>'id')::bigint,
          payment_status = payment->>'status',
          payment_amount = (payment->>'amount')::numeric,
          payment_method = payment->>'payment_method',
          paid_at = (payment->>'paid_at')::timestamptz""" % table)
    execute(conn, "ANALYZE %s" % table)
    return rows


# --------------------------------------------------------------------------
# Threads and processes
# --------------------------------------------------------------------------

class QueryThread(threading.Thread):
    """Runs one statement on conn in a thread.  After join(): rows or error,
    and finished_at (time.monotonic()) for timing a cancel."""

    def __init__(self, conn, sql, params=None):
        super().__init__(daemon=True)
        self.conn, self.sql, self.params = conn, sql, params
        self.rows = self.error = None
        self.started_at = self.finished_at = None

    def work(self):
        return query(self.conn, self.sql, self.params)

    def run(self):
        self.started_at = time.monotonic()
        try:
            self.rows = self.work()
        except Exception as e:              # psycopg2 errors, closed connections
            self.error = e
        finally:
            self.finished_at = time.monotonic()

    def wait(self, timeout):
        self.join(timeout)
        if self.is_alive():
            raise AssertionError("query still running after %.1fs: %s" % (timeout, self.sql))
        return self


def start_query(conn, sql, params=None):
    t = QueryThread(conn, sql, params)
    t.start()
    return t


def proc_status_kb(pid, field):
    """A field of /proc/<pid>/status in kB, e.g. VmRSS or VmHWM."""
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_size():
    try:
        return os.path.getsize(server_log_path())
    except OSError:
        return 0


def read_log_since(offset):
    with open(server_log_path(), "rb") as fh:
        fh.seek(offset)
        return fh.read().decode("utf-8", "replace")
