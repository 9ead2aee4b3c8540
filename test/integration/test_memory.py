"""Memory: a scan holds about one page, whatever its size, and failed or
cancelled requests leave nothing behind.

Measured on the scanning backend from /proc/<pid>/status (the tests run as
root, or as the cluster's user): VmHWM is the peak resident size, VmRSS the
current one.
"""

import helpers
from helpers import MockProcess, backend_pid, expect_error, mock, proc_status_kb, query

MB = 1024                   # /proc reports kB


def db():
    return helpers.module_db(__name__)


def test_scan_memory_does_not_grow_with_rows():
    """count(*), max(full_name) -- and a scan converting every column -- over
    100,000 rows peak at less than 16 MB above the same scans over 5,000."""
    with MockProcess(rows=5000) as big:
        conn = db().connect()
        try:
            helpers.create_server(conn, "big", big.url, schema="big")
            pid = backend_pid(conn)
            scans = ["SELECT count(*), max(full_name) FROM big.appointments",
                     "SELECT count(*), max(length(a::text)) FROM big.appointments a"]
            names = [r["full_name"] for r in big.mock.data()]
            small = [query(conn, sql)[0] for sql in scans]
            assert small[0] == (5000, max(names)), small[0]
            peak_small = proc_status_kb(pid, "VmHWM")

            big.mock.reset(rows=100000)
            large = [query(conn, sql)[0] for sql in scans]
            assert large[0][0] == 100000 and large[1][0] == 100000, large
            peak_large = proc_status_kb(pid, "VmHWM")
            growth = peak_large - peak_small
            assert growth < 16 * MB, "peak RSS grew by %.1f MB (%d kB -> %d kB)" % (
                growth / MB, peak_small, peak_large)
            helpers.execute(conn, "DROP SERVER big CASCADE")
        finally:
            conn.close()


def test_failed_and_cancelled_requests_do_not_leak():
    """1,000 requests that fail (HTTP 500, no retries) or are cancelled
    (statement_timeout on a hang), after a warm-up of 20, grow the backend's
    RSS by less than 8 MB, and the backend still scans correctly."""
    conn = db().connect()
    try:
        helpers.create_server(conn, "noretry", helpers.env("CRM_MOCK_URL"), schema="noretry",
                              max_retries=0)
        pid = backend_pid(conn)
        sql = "SELECT * FROM noretry.appointments WHERE status = 'pending'"

        def failures(n):
            mock().config(fault={"mode": "500", "count": -1})
            for _ in range(n):
                e = expect_error(conn, sql)
                assert e.pgcode == "HV000", (e.pgcode, str(e))

        def cancels(n):
            mock().config(fault={"mode": "hang", "count": -1, "hang_seconds": 1})
            helpers.execute(conn, "SET statement_timeout = '50ms'")
            for _ in range(n):
                e = expect_error(conn, sql)
                assert e.pgcode == "57014", (e.pgcode, str(e))
            helpers.execute(conn, "SET statement_timeout = '120s'")

        failures(10)
        cancels(10)
        before = proc_status_kb(pid, "VmRSS")
        failures(600)
        cancels(400)
        after = proc_status_kb(pid, "VmRSS")
        assert after - before < 8 * MB, "RSS grew by %.1f MB over 1,000 failed requests" % (
            (after - before) / MB)
        mock().config(fault=None)
        assert query(conn, "SELECT count(*) FROM noretry.appointments")[0][0] == 500
    finally:
        conn.close()
