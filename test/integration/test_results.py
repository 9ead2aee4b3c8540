"""Results equal a local copy of the data, whatever the remote does.

Every query runs twice: over remote.appointments and over local_copy, a local
table built from GET /_mock/data.  The ids and a set of typed columns
(helpers.TYPED_COLUMNS) must be the same, for a matrix of WHERE clauses and
each of the remote behaviours the contract leaves open.  Then prepared
statements, stable expressions, parameterized nested loops and rescans.
"""

from datetime import datetime, timedelta, timezone

import helpers
from helpers import execute, mock, query, scalar

COLS = ", ".join(helpers.TYPED_COLUMNS)
BATCH = "2025-07-01T03:00:00.000000Z"       # the mock's big shared updated_at


def db():
    return helpers.module_db(__name__)


def fresh_conn(**settings):
    """A connection to this module's database, with local_copy loaded from the
    mock's current data."""
    conn = db().connect(**settings)
    helpers.load_local_copy(conn)
    return conn


def in_zone(wire, hours):
    """A wire datetime rewritten with another UTC offset (the same instant)."""
    t = datetime.fromisoformat(wire).astimezone(timezone(timedelta(hours=hours)))
    return t.isoformat()


def clauses_for(rows):
    """WHERE clauses (and tails) whose constants come from the data: values
    that exist, shared updated_at values, boundaries of ranges."""
    by_id = {r["id"]: r for r in rows}
    counts = {}
    for r in rows:
        counts[r["updated_at"]] = counts.get(r["updated_at"], 0) + 1
    shared = sorted(t for t, n in counts.items() if n > 1 and t != BATCH)
    small_group = shared[len(shared) // 2] if shared else BATCH
    created = sorted(r["created_at"] for r in rows)[len(rows) // 2]
    max_updated = max(r["updated_at"] for r in rows)
    a_date = by_id[100]["appointment_date"]
    a_dt = by_id[250]["appointment_datetime"]
    dt_lo = in_zone(by_id[300]["appointment_datetime"], 11)
    return [
        ("status = 'confirmed'", ""),
        ("status IN ('pending', 'cancelled')", ""),
        ("status <> 'pending'", ""),
        ("location = 'adelaide'", ""),
        ("enquiry_type IN ('tr', 'education') AND location = 'melbourne'", ""),
        ("appointment_date BETWEEN '2024-11-01' AND '2024-11-30'", ""),
        ("appointment_date = '%s'" % a_date, ""),
        ("appointment_date > '%s'" % a_date, ""),
        ("appointment_date >= '2025-06-01' AND appointment_date < '2025-07-01'", ""),
        ("appointment_datetime = '%s'" % a_dt, ""),
        ("appointment_datetime >= '%s' AND appointment_datetime < '%s'::timestamptz + interval '9 days'"
         % (dt_lo, dt_lo), ""),
        ("appointment_datetime BETWEEN '2024-12-01 08:00+11' AND '2025-01-02 10:00-05'", ""),
        ("created_at > '%s'" % created, ""),
        ("created_at >= '%s'" % created, ""),
        ("created_at >= '%s'" % in_zone(created, 10), ""),
        ("updated_at > '%s'" % BATCH, ""),
        ("updated_at >= '%s'" % BATCH, ""),
        ("updated_at = '%s'" % BATCH, ""),
        ("updated_at >= '%s'" % in_zone(BATCH, -5), ""),
        ("updated_at > '%s'" % small_group, ""),
        ("updated_at >= '%s'" % small_group, ""),
        ("updated_at > '%s'" % max_updated, ""),
        ("updated_at >= '%s'" % max_updated, ""),
        ("updated_at >= '%s' AND created_at < '%s'" % (small_group, created), ""),
        ("id = 42", ""),
        ("id IN (3, 1, 2, 3, 100000, 499)", ""),
        ("id = 100000", ""),
        ("id IN (5, 6, 7, 8) AND status = '%s'" % by_id[6]["status"], ""),
        ("status = 'completed' AND appointment_date >= '2025-01-01' AND updated_at >= '%s'"
         % BATCH, ""),
        ("location = 'melbourne' AND created_at >= '%s' AND appointment_date < '2025-09-01'"
         % created, ""),
        ("lower(status) = 'confirmed'", ""),
        ("status = 'confirmed' OR location = 'adelaide'", ""),
        ("status = 'confirmed'", "LIMIT 5"),
        ("lower(status) = 'pending'", "LIMIT 7"),
        ("updated_at >= '%s'" % BATCH, "ORDER BY id DESC LIMIT 10"),
        ("true", "LIMIT 150"),
    ]


def compare(conn, where, tail=""):
    """None if remote and local agree on `WHERE where tail`, else a message."""
    sql = "SELECT %s FROM %%s WHERE %s %s" % (COLS, where, tail)
    try:
        remote = query(conn, sql % "remote.appointments")
    except Exception as e:
        return "WHERE %s %s: error %s" % (where, tail, str(e).strip())
    local = query(conn, sql % "local_copy")
    if "ORDER BY" in tail:
        ok = remote == local
    elif "LIMIT" in tail:
        # any rows that match, as many as LIMIT allows, each once
        everything = set(query(conn, "SELECT %s FROM local_copy WHERE %s" % (COLS, where)))
        ok = (len(remote) == len(local) and len(set(remote)) == len(remote)
              and set(remote) <= everything)
    else:
        ok = sorted(remote, key=lambda r: r[0]) == sorted(local, key=lambda r: r[0])
    if ok:
        return None
    r_ids, l_ids = [r[0] for r in remote], [r[0] for r in local]
    diff = [(a, b) for a, b in zip(sorted(remote, key=lambda r: r[0]),
                                   sorted(local, key=lambda r: r[0])) if a != b][:1]
    return ("WHERE %s %s: remote %d rows, local %d; missing ids %s, extra ids %s%s"
            % (where, tail, len(remote), len(local),
               sorted(set(l_ids) - set(r_ids))[:10], sorted(set(r_ids) - set(l_ids))[:10],
               "; first differing row: remote %r / local %r" % diff[0] if diff else ""))


# The remote behaviours of the matrix: mock switches, and mutations applied
# before the local copy is taken (so that clock offsets matter).
BEHAVIOURS = [
    ("default", {}, None),
    ("id_desc", {"order": "id_desc"}, None),
    ("updated_asc", {"order": "updated_asc"}, None),
    ("datetime_desc", {"order": "datetime_desc"}, None),
    ("inclusive_after", {"after_strict": False}, None),
    ("inclusive_after_updated_asc", {"after_strict": False, "order": "updated_asc"}, None),
    ("clock_ahead", {"clock_offset_seconds": 300},
     {"update": [10, 20, 30], "batch_update": 6, "insert": 3}),
    ("clock_behind", {"clock_offset_seconds": -300, "order": "updated_asc"},
     {"update": [11, 21, 31], "batch_update": 6, "insert": 3}),
    ("money_as_number", {"money_as_number": True}, None),
    ("plain_z", {"datetime_format": "plain_z", "order": "datetime_desc"}, None),
    ("offset", {"datetime_format": "offset"}, None),
    ("extra_fields", {"extra_fields": True}, None),
    ("json_escape_unicode", {"json_escape_unicode": True, "order": "id_desc"}, None),
    ("everything", {"order": "updated_asc", "after_strict": False, "money_as_number": True,
                    "datetime_format": "offset", "extra_fields": True,
                    "json_escape_unicode": True, "clock_offset_seconds": -300},
     {"batch_update": 5}),
]


def play(settings, mutation):
    """The mock, reset and set to play one of BEHAVIOURS."""
    m = mock()
    m.reset()
    if mutation:
        m.config(clock_offset_seconds=settings.get("clock_offset_seconds", 0))
        m.mutate(**mutation)
    m.config(**settings)
    return m


def make_matrix_test(name, settings, mutation):
    def test():
        m = play(settings, mutation)
        conn = fresh_conn()
        try:
            rows = m.data()
            m.clear_log()
            problems = [p for p in (compare(conn, w, t) for w, t in clauses_for(rows)) if p]
            bad_status = sorted({str(e["status"]) for e in m.log()} - {"200", "404"})
        finally:
            conn.close()
        assert not problems, "%d of %d queries differ from the local copy:\n%s" % (
            len(problems), len(clauses_for(rows)), "\n".join(problems))
        assert not bad_status, "unexpected HTTP statuses from the mock: %s" % bad_status
    test.__name__ = "test_matrix_" + name
    test.__doc__ = ("Every clause of the matrix gives the local copy's rows when the "
                    "remote plays %s %s." % (settings or "the defaults", mutation or ""))
    return test


for _name, _settings, _mutation in BEHAVIOURS:
    globals()["test_matrix_" + _name] = make_matrix_test(_name, _settings, _mutation)


def test_prepared_statements():
    """A prepared statement run 8 times with different parameters, with custom
    and generic plans, returns the local copy's rows, and the parameters of
    each execution (not the first one's) are what is sent."""
    mock().reset()
    params = [("pending", "2024-01-01", BATCH), ("confirmed", "2025-03-01", "2024-06-01T00:00:00Z"),
              ("completed", "2024-11-15", BATCH), ("cancelled", "2024-02-29", "2025-07-01T02:59:59Z"),
              ("no_show", "2025-12-31", "2020-01-01T00:00:00Z"), ("in_progress", "2024-07-01", BATCH),
              ("pending", "2025-07-01", "2025-07-01T03:00:00.000001Z"), ("Confirmed", "2024-01-01", BATCH)]
    ids = [7, 100000, 42, 0, 499, 7, 250, -1]
    for mode in ("auto", "force_generic_plan"):
        conn = fresh_conn(plan_cache_mode=mode)
        try:
            execute(conn, "PREPARE by_filters(text, date, timestamptz) AS SELECT %s "
                          "FROM remote.appointments WHERE status = $1 AND appointment_date >= $2 "
                          "AND updated_at >= $3" % COLS)
            execute(conn, "PREPARE by_id(bigint) AS SELECT %s FROM remote.appointments "
                          "WHERE id = $1" % COLS)
            execute(conn, "PREPARE by_ids(bigint[]) AS SELECT %s FROM remote.appointments "
                          "WHERE id = ANY ($1)" % COLS)
            for status, day, ts in params:
                mock().clear_log()
                got = query(conn, "EXECUTE by_filters(%s, %s, %s)", (status, day, ts))
                want = query(conn, "SELECT %s FROM local_copy WHERE status = %%s AND "
                                   "appointment_date >= %%s AND updated_at >= %%s" % COLS,
                             (status, day, ts))
                assert sorted(got) == sorted(want), \
                    "%s: by_filters%r gave %d rows, local %d" % (mode, (status, day, ts),
                                                                  len(got), len(want))
                sent = [e["query"] for e in mock().log()]
                if status != "Confirmed":       # outside the vocabulary: not sent
                    assert sent and all(q.get("status") == [status] and
                                        q.get("start_date") == [day] for q in sent), \
                        "%s: by_filters%r sent %r" % (mode, (status, day, ts), sent)
            for i in ids:
                mock().clear_log()
                got = query(conn, "EXECUTE by_id(%s)", (i,))
                want = query(conn, "SELECT %s FROM local_copy WHERE id = %%s" % COLS, (i,))
                assert got == want, "%s: by_id(%d) gave %r" % (mode, i, [r[0] for r in got])
                paths = [e["path"] for e in mock().log()]
                assert paths in ([], ["/api/crm/appointments/%d" % i]), \
                    "%s: by_id(%d) sent %r" % (mode, i, paths)
            for k in range(8):
                arr = ids[k:] + [k * 60 + 1]
                got = query(conn, "EXECUTE by_ids(%s)", (arr,))
                want = query(conn, "SELECT %s FROM local_copy WHERE id = ANY (%%s)" % COLS, (arr,))
                assert sorted(got) == sorted(want), "%s: by_ids(%r)" % (mode, arr)
            if mode == "force_generic_plan":
                plan = "\n".join(r[0] for r in query(
                    conn, "EXPLAIN (COSTS OFF) EXECUTE by_filters('pending', '2024-01-01', %s)",
                    (BATCH,)))
                assert "$1" in plan, "not a generic plan:\n" + plan
        finally:
            conn.close()


def test_stable_expressions_with_clock_skew():
    """now() - interval, current_date and the like are evaluated at execution:
    rows the remote (its clock 5 minutes off either way) updated or inserted
    just now are found, exactly as in the local copy, and the pushed
    updated_after is the database's now() minus the interval (minus 1 s)."""
    for offset in (-300, 300):
        m = mock()
        m.reset()
        m.config(clock_offset_seconds=offset, after_strict=offset > 0)
        changed = m.mutate(update=[11, 12, 13], insert=2, batch_update=4)
        conn = fresh_conn()
        try:
            recent = set(changed["updated"]) | set(changed["inserted"])
            for where in ["updated_at > now() - interval '10 minutes'",
                          "updated_at >= now() - interval '6 minutes' AND status <> 'x'",
                          "updated_at > now() - interval '4 minutes'",
                          "created_at >= now() - '1 hour'::interval",
                          "created_at > current_date - 1 AND location IN ('melbourne', 'adelaide')",
                          "appointment_date >= current_date",
                          "appointment_date > current_date + 1 AND updated_at > now() - interval '1 day'"]:
                m.clear_log()
                execute(conn, "BEGIN")
                got = query(conn, "SELECT %s FROM remote.appointments WHERE %s" % (COLS, where))
                want = query(conn, "SELECT %s FROM local_copy WHERE %s" % (COLS, where))
                now = scalar(conn, "SELECT now()")
                execute(conn, "COMMIT")
                assert sorted(got) == sorted(want), \
                    "offset %d: WHERE %s: remote ids %s, local ids %s" % (
                        offset, where, sorted(r[0] for r in got), sorted(r[0] for r in want))
                if where.startswith("updated_at > now() - interval '10 minutes'"):
                    assert recent <= {r[0] for r in got}, \
                        "offset %d: rows changed just now missing: %s" % (
                            offset, sorted(recent - {r[0] for r in got}))
                    sent = m.log()[0]["query"].get("updated_after", [None])[0]
                    want_after = (now - timedelta(minutes=10, seconds=1)).astimezone(timezone.utc)
                    got_after = datetime.fromisoformat(sent.replace("Z", "+00:00"))
                    assert abs((got_after - want_after).total_seconds()) <= 1.0, \
                        "offset %d: updated_after=%s, expected about %s" % (offset, sent, want_after)
        finally:
            conn.close()


def test_nested_loop_join_by_id():
    """A join of a local table with remote.appointments on id is a nested loop
    that sends one GET /appointments/{id} per outer row (per distinct id when
    the planner adds a Memoize) and returns complete rows; an id that does not
    exist gives no row, or NULLs in a LEFT JOIN."""
    mock().reset()
    conn = fresh_conn()
    try:
        wanted = [7, 19, 100000, 7, 250, 499, 1, 0]
        execute(conn, "CREATE TEMP TABLE wanted (n serial, appointment_id bigint)")
        execute(conn, "INSERT INTO wanted (appointment_id) SELECT unnest(%s::bigint[])", (wanted,))
        execute(conn, "ANALYZE wanted")
        cols = ", ".join("a." + c for c in helpers.TYPED_COLUMNS)
        for memoize in ("on", "off"):
            execute(conn, "SET enable_memoize = " + memoize)
            for join in ("JOIN", "LEFT JOIN"):
                sql = ("SELECT w.n, %s FROM wanted w %s %%s a ON a.id = w.appointment_id"
                       % (cols, join))
                plan = "\n".join(r[0] for r in query(conn, "EXPLAIN (COSTS OFF) " +
                                                     sql % "remote.appointments"))
                assert "Nested Loop" in plan and "Foreign Scan" in plan, plan
                mock().clear_log()
                got = query(conn, sql % "remote.appointments")
                want = query(conn, sql % "local_copy")
                assert sorted(got, key=str) == sorted(want, key=str), \
                    "%s: remote %r, local %r" % (join, [r[:2] for r in got], [r[:2] for r in want])
                paths = sorted(e["path"] for e in mock().log())
                if "Memoize" in plan:
                    expected = sorted({"/api/crm/appointments/%d" % i for i in wanted})
                else:
                    expected = sorted("/api/crm/appointments/%d" % i for i in wanted)
                assert paths == expected, "%s, memoize %s: sent %r\n%s" % (join, memoize, paths, plan)
    finally:
        conn.close()


def test_rescan_with_parameters():
    """A LATERAL subquery and a correlated subquery rescan the foreign scan with
    new parameter values: each rescan sends its own status and returns
    complete, correct rows."""
    mock().reset()
    conn = fresh_conn()
    try:
        statuses = ["pending", "cancelled", "no_show", "Pending", "pending"]
        execute(conn, "CREATE TEMP TABLE wanted_status (n int, s text)")
        execute(conn, "INSERT INTO wanted_status SELECT i, s FROM unnest(%s::text[]) "
                      "WITH ORDINALITY AS u(s, i)", (statuses,))
        lateral = ("SELECT w.n, x.ids, x.total FROM wanted_status w, LATERAL "
                   "(SELECT array_agg(id ORDER BY id) AS ids, sum(final_amount) AS total "
                   " FROM %s a WHERE a.status = w.s AND a.appointment_date >= '2024-06-01') x "
                   "ORDER BY w.n")
        correlated = ("SELECT w.n, (SELECT count(*) FROM %s a WHERE a.status = w.s "
                      "AND a.location = 'melbourne') FROM wanted_status w ORDER BY w.n")
        for sql in (lateral, correlated):
            mock().clear_log()
            got = query(conn, sql % "remote.appointments")
            want = query(conn, sql % "local_copy")
            assert got == want, "remote %r\nlocal  %r" % (got, want)
            sent = {e["query"].get("status", [None])[0] for e in mock().log()}
            assert {"pending", "cancelled", "no_show"} <= sent, sent
    finally:
        conn.close()


def test_rescan_inner_of_nested_loop():
    """The foreign scan inside a correlated subquery or an aggregate LATERAL is
    rescanned for every outer row, also after stopping mid-walk (EXISTS stops
    at the first match): each rescan starts again at page 1 and sees every
    row."""
    mock().reset()
    conn = fresh_conn(enable_hashjoin="off", enable_mergejoin="off", enable_material="off",
                      enable_memoize="off")
    try:
        execute(conn, "CREATE TEMP TABLE places (n int, loc text, st text)")
        execute(conn, "INSERT INTO places VALUES (1, 'melbourne', 'pending'), "
                      "(2, 'adelaide', 'no_show'), (3, 'melbourne', 'Pending'), "
                      "(4, 'hobart', 'pending'), (5, 'adelaide', 'in_progress')")
        execute(conn, "ANALYZE places")
        full = ("SELECT p.n, (SELECT count(*) FROM %(t)s a WHERE lower(a.location) = p.loc), "
                "(SELECT max(a.full_name) FROM %(t)s a WHERE lower(a.location) = p.loc) "
                "FROM places p ORDER BY p.n")
        lateral = ("SELECT p.n, x.c, x.m FROM places p CROSS JOIN LATERAL "
                   "(SELECT count(*) AS c, sum(a.final_amount) AS m FROM %(t)s a "
                   " WHERE lower(a.status) = p.st) x ORDER BY p.n")
        semi = ("SELECT p.n, EXISTS (SELECT 1 FROM %(t)s a WHERE lower(a.status) = p.st "
                "AND a.location = p.loc) FROM places p ORDER BY p.n")
        for sql in (full, lateral, semi):
            mock().clear_log()
            got = query(conn, sql % {"t": "remote.appointments"})
            want = query(conn, sql % {"t": "local_copy"})
            assert got == want, "remote %r\nlocal  %r" % (got, want)
            walks = [e for e in mock().log() if e["query"].get("page") == ["1"]]
            assert len(walks) >= 5, "expected a rescan per outer row, saw %d walks:\n%s" % (
                len(walks), sql)
    finally:
        conn.close()


def test_appointment_datetime_is_not_sent_as_dates():
    """start_date/end_date filter on appointment_date, which nothing promises
    to agree with appointment_datetime (either may be null): a range on
    appointment_datetime sends no date parameter and finds the row whose
    appointment_date is null."""
    mock().reset()
    try:
        row = mock().data()[0]
        mock().mutate(update=[row["id"]], fields={"appointment_date": None,
                                                  "appointment_datetime": row["appointment_datetime"]})
        conn = fresh_conn()
        try:
            when = datetime.strptime(row["appointment_datetime"][:19], "%Y-%m-%dT%H:%M:%S")
            mock().clear_log()
            ids = [r[0] for r in query(
                conn, "SELECT id FROM remote.appointments WHERE appointment_datetime >= %s "
                      "AND appointment_datetime < %s",
                (when.replace(tzinfo=timezone.utc), when.replace(tzinfo=timezone.utc) + timedelta(hours=1)))]
            assert row["id"] in ids, (row["id"], ids)
            sent = [e["query"] for e in mock().log()]
            assert sent and all("start_date" not in q and "end_date" not in q for q in sent), sent
        finally:
            conn.close()
    finally:
        mock().reset()
