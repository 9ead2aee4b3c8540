"""Types and errors: values that do not fit, rows that vanished, and the
export and stats resources under the remote's format variants.
"""

import json
import re

import helpers
from helpers import expect_error, mock, query

_ready = set()

EXPORT_COLS = ", ".join(helpers.TYPED_COLUMNS)


def db():
    """This module's database, with two narrowly typed foreign tables (a list
    and an export) over the default mock."""
    d = helpers.module_db(__name__)
    if d.name not in _ready:
        conn = d.connect()
        try:
            for name, resource in (("fit_list", "appointments"), ("fit_export", "export")):
                helpers.execute(conn, """
                    CREATE FOREIGN TABLE %s (
                      id bigint, full_name text, duration_minutes smallint,
                      final_amount numeric(6,2), appointment_date date)
                    SERVER mockapi OPTIONS (resource '%s')""" % (name, resource))
            helpers.execute(conn, "CREATE FOREIGN TABLE typed_loose (duration_minutes integer, "
                                  "full_name text) SERVER mockapi")
        finally:
            conn.close()
        _ready.add(d.name)
    return d


def check_names(e, column, row_id, value):
    text = helpers.error_text(e)
    for part in ('column "%s"' % column, "appointment id %s" % row_id, value):
        assert part in text, "%r is not in the error:\n%s" % (part, text)


def test_value_that_does_not_fit_names_column_id_and_value():
    """A value too big for its column, deep in a list scan (page 4) or in the
    CSV export, fails with an error naming the column, the appointment id and
    the value."""
    conn = db().connect()
    try:
        for table in ("fit_list", "fit_export"):
            for field, value, shown in (("duration_minutes", 40000, "40000"),
                                        ("final_amount", "123456.78", "123456.78")):
                mock().reset()
                mock().mutate(update=[321], fields={field: value})
                e = expect_error(conn, "SELECT id, duration_minutes, final_amount FROM %s" % table)
                assert e.pgcode == "22003", "%s %s: SQLSTATE %s: %s" % (table, field, e.pgcode, e)
                check_names(e, field, 321, shown)
    finally:
        conn.close()


def test_wrong_types_name_column_and_value():
    """Strings where numbers, booleans and dates belong (the wrong_types
    fault, which also makes the id "abc") fail with an error naming the
    column and the value, and no wrong appointment id, in JSON and in CSV."""
    conn = db().connect()
    try:
        for table, column, value in (("typed_loose", "duration_minutes", "lots"),
                                     ("fit_export", "duration_minutes", "lots"),
                                     ("fit_list", "appointment_date", "not-a-date")):
            # every response (count -1): a page the last scan requested ahead
            # and abandoned may reach the mock after this and take a one-off fault
            mock().config(fault={"mode": "wrong_types", "count": -1})
            e = expect_error(conn, "SELECT %s FROM %s" % (column, table))
            assert e.pgcode and e.pgcode[:2] in ("22", "HV"), (e.pgcode, str(e))
            check_names(e, column, "", '"%s"' % value)
            # the row's id is "abc": the error must not name another appointment
            assert re.search(r'appointment id (unknown|"?abc"?)\b', e.diag.context or ""), \
                "%s: the error names a wrong appointment id: %s" % (table, e.diag.context)
    finally:
        mock().config(fault=None)
        conn.close()


def test_vanished_rows_give_no_row():
    """A 404 from GET /appointments/{id} (a deleted appointment) is no row, not
    an error, also among other ids and in a join."""
    conn = db().connect()
    try:
        mock().mutate(delete=[42])
        mock().clear_log()
        rows = query(conn, "SELECT id FROM remote.appointments WHERE id IN (41, 42, 43) ORDER BY id")
        assert [r[0] for r in rows] == [41, 43], rows
        assert query(conn, "SELECT * FROM remote.appointments WHERE id = 42") == []
        statuses = {e["path"]: e["status"] for e in mock().log()}
        assert statuses.get("/api/crm/appointments/42") == 404, statuses
        rows = query(conn, "SELECT v.i, a.id FROM (VALUES (41), (42)) v(i) LEFT JOIN "
                           "remote.appointments a ON a.id = v.i ORDER BY v.i")
        assert rows == [(41, 41), (42, None)], rows
    finally:
        conn.close()


FORMATS = [{"money_as_number": True},
           {"datetime_format": "offset"},
           {"datetime_format": "offset_hms"},
           {"datetime_format": "offset_west_hms"},
           {"money_as_number": True, "datetime_format": "offset", "extra_fields": True,
            "json_escape_unicode": True}]


def test_export_under_format_variants():
    """The CSV export gives the local copy's typed values when money comes as
    numbers and datetimes with a +10/+11 offset."""
    conn = db().connect()
    try:
        helpers.load_local_copy(conn)
        for settings in FORMATS:
            mock().reset()
            mock().config(**settings)
            for where in ("true", "status = 'completed' AND location = 'melbourne'",
                          "updated_at >= '2025-07-01 03:00+00' AND appointment_date < '2025-10-01'"):
                sql = "SELECT %s FROM %%s WHERE %s" % (EXPORT_COLS, where)
                got = query(conn, sql % "remote.appointments_export")
                want = query(conn, sql % "local_copy")
                assert sorted(got) == sorted(want), "%s, WHERE %s: %d rows vs %d, first diff %r" % (
                    settings, where, len(got), len(want),
                    next(((a, b) for a, b in zip(sorted(got), sorted(want)) if a != b), None))
    finally:
        conn.close()


STATS_COLS = ("period_start, period_end, total_appointments, pending, confirmed, completed, "
              "cancelled, paid_appointments, total_revenue, by_enquiry_type, by_location")
EXPECTED_STATS = """
    SELECT %(lo)s::date, %(hi)s::date, count(*)::int,
      count(*) FILTER (WHERE status = 'pending')::int,
      count(*) FILTER (WHERE status = 'confirmed')::int,
      count(*) FILTER (WHERE status = 'completed')::int,
      count(*) FILTER (WHERE status = 'cancelled')::int,
      count(*) FILTER (WHERE is_paid)::int,
      coalesce(sum(final_amount) FILTER (WHERE is_paid), 0)::numeric(12,2),
      jsonb_build_object(
        'tr', count(*) FILTER (WHERE enquiry_type = 'tr'),
        'tourist', count(*) FILTER (WHERE enquiry_type = 'tourist'),
        'education', count(*) FILTER (WHERE enquiry_type = 'education'),
        'pr_complex', count(*) FILTER (WHERE enquiry_type = 'pr_complex')),
      jsonb_build_object(
        'melbourne', count(*) FILTER (WHERE location = 'melbourne'),
        'adelaide', count(*) FILTER (WHERE location = 'adelaide'))
    FROM local_copy WHERE appointment_date BETWEEN %(lo)s AND %(hi)s"""


def test_stats_under_format_variants():
    """The stats row for a period (pushed as start_date/end_date) has the
    local copy's figures and the period's own dates when money comes as
    numbers and datetimes with a +10/+11 offset."""
    conn = db().connect()
    try:
        helpers.load_local_copy(conn)
        problems = []
        for settings in [{}] + FORMATS:
            mock().reset()
            mock().config(**settings)
            for lo, hi in (("2024-11-01", "2024-11-30"), ("2025-03-15", "2025-04-20"),
                           ("2024-01-01", "2025-12-31")):
                got = query(conn, "SELECT %s FROM remote.appointment_stats WHERE period_start = %%s "
                                  "AND period_end = %%s" % STATS_COLS, (lo, hi))
                want = query(conn, EXPECTED_STATS, {"lo": lo, "hi": hi})
                if got != want:
                    status, body = mock().api_get("/appointments/stats?start_date=%s&end_date=%s"
                                                  % (lo, hi))
                    period = json.loads(body)["period"] if status == 200 else body
                    problems.append("%s, %s..%s: got %s, want %r; the API sent period %s" % (
                        settings, lo, hi, got or "no row", want, period))
        assert not problems, "%d of %d stats queries are wrong:\n%s" % (
            len(problems), 3 * (len(FORMATS) + 1), "\n".join(problems))
    finally:
        conn.close()


ZONED_STYLES = ("offset", "offset_hms", "offset_west_hms")
UTC_DAYS = "id, (appointment_datetime AT TIME ZONE 'UTC')::date, (created_at AT TIME ZONE 'UTC')::date"


def test_zoned_datetimes_into_date_and_date_domain():
    """A datetime written with an offset (+11:00, +11:00:00, -05:00:00) and
    read into a date column, or into a domain over date, is its UTC day, in
    JSON and in CSV; the domain's CHECK applies to that day."""
    conn = db().connect()
    try:
        helpers.load_local_copy(conn)
        helpers.execute(conn, "CREATE DOMAIN day_2k AS date CHECK (VALUE >= '2000-01-01')")
        for name, resource in (("days_list", "appointments"), ("days_export", "export")):
            helpers.execute(conn, """
                CREATE FOREIGN TABLE %s (
                  id bigint,
                  appt_day date OPTIONS (json_path 'appointment_datetime'),
                  created_day day_2k OPTIONS (json_path 'created_at'))
                SERVER mockapi OPTIONS (resource '%s')""" % (name, resource))
        want = query(conn, "SELECT %s FROM local_copy ORDER BY id" % UTC_DAYS)
        for style in ZONED_STYLES:
            mock().reset()
            mock().config(datetime_format=style)
            wire = {r["id"]: r for r in json.loads(mock().api_get("/appointments?per_page=100")[1])["data"]}
            # the day as written differs from the UTC day for some rows
            assert any(r["created_at"][:10] != str(w[2]) for w in want if w[0] in wire
                       for r in [wire[w[0]]]), style
            for table in ("days_list", "days_export"):
                got = query(conn, "SELECT id, appt_day, created_day FROM %s ORDER BY id" % table)
                bad = [(g, w) for g, w in zip(got, want) if g != w]
                assert len(got) == len(want) and not bad, "%s, %s: %d rows vs %d, %d wrong, first %r" % (
                    style, table, len(got), len(want), len(bad), bad[:1])

        # a CHECK that only the UTC day violates: the row whose written day differs
        mock().reset()
        mock().config(datetime_format="offset_west_hms")
        row_id, utc_day = query(conn, "SELECT id, (created_at AT TIME ZONE 'UTC')::date FROM local_copy"
                                      " WHERE (created_at AT TIME ZONE 'UTC')::time < '05:00'"
                                      " ORDER BY id LIMIT 1")[0]
        helpers.execute(conn, "CREATE DOMAIN not_that_day AS date CHECK (VALUE <> '%s')" % utc_day)
        helpers.execute(conn, "CREATE FOREIGN TABLE checked_day (id bigint, created_day not_that_day"
                              " OPTIONS (json_path 'created_at')) SERVER mockapi")
        e = expect_error(conn, "SELECT created_day FROM checked_day WHERE id = %s" % row_id)
        assert e.pgcode == "23514", (e.pgcode, str(e))
        check_names(e, "created_day", row_id, "-05:00:00")
    finally:
        conn.close()
