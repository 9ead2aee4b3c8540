"""Load: eight sessions scanning foreign tables while syncs run over and over,
from two sessions and from a pg_cron job: no error, no deadlock, every scan
correct, and the data equal to the remote after the last sync.

pg_cron here (1.4) knows no second schedules: the job runs every minute, and
the load goes on until a run of it has finished (at most CRON_WAIT s), so
pg_cron always fires in the middle of it.
"""

import threading
import time

import helpers
import sync_helpers as sh
from helpers import MockProcess, execute, long_tests_enabled, query, scalar

ROWS = 2000
SCANNERS = 8
QUERIES = [
    ("SELECT count(*) FROM imp.appointments WHERE status = 'confirmed'",
     lambda d: sum(1 for r in d if r["status"] == "confirmed")),
    ("SELECT count(*) FROM imp.appointments WHERE location = 'adelaide' AND enquiry_type IN ('tr', 'education')",
     lambda d: sum(1 for r in d if r["location"] == "adelaide" and r["enquiry_type"] in ("tr", "education"))),
    ("SELECT count(*) FROM imp.appointments WHERE appointment_date BETWEEN '2025-01-01' AND '2025-03-31'",
     lambda d: sum(1 for r in d if "2025-01-01" <= (r["appointment_date"] or "") <= "2025-03-31")),
    ("SELECT count(*) FROM imp.appointments",
     len),
]
JOB = "crm_it_load_cron"
CRON_WAIT = 75                      # past a minute boundary, and the sync it starts


def unschedule(admin):
    execute(admin, "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %s", (JOB,))


def cron_runs(admin, jobid):
    """(status, return_message) of the job's finished runs."""
    return query(admin, "SELECT status, return_message FROM cron.job_run_details"
                        " WHERE jobid = %s AND status IN ('succeeded', 'failed') ORDER BY runid",
                 (jobid,))


def test_scans_and_syncs_under_load():
    seconds = 60 if long_tests_enabled() else 12
    with MockProcess(rows=ROWS, seed=21) as mp, sh.SyncDB("load") as db:
        conn = db.connect()
        admin = sh.wait_for_cluster()
        try:
            run_load(db, mp, conn, admin, seconds)
        finally:
            try:
                unschedule(admin)
            finally:
                admin.close()
                conn.close()


def run_load(db, mp, conn, admin, seconds):
    sh.add_server(conn, "load", mp.url)
    query(conn, "CREATE SCHEMA imp")
    query(conn, "IMPORT FOREIGN SCHEMA api FROM SERVER load INTO imp")
    sh.sync_ok(conn, "load")
    data = mp.mock.data()
    expected = [f(data) for _, f in QUERIES]
    first_id = scalar(conn, "SELECT max(id) FROM crm.sync_log")

    execute(admin, "CREATE EXTENSION IF NOT EXISTS pg_cron")
    unschedule(admin)
    jobid = scalar(admin, "SELECT cron.schedule_in_database(%s, '* * * * *', %s, %s)",
                   (JOB, "SELECT count(*) FROM crm_sync_now('load')", db.name))
    log_start = helpers.log_size()

    stop = threading.Event()
    errors = []
    counts = {"scans": 0, "syncs": 0, "skipped": 0}
    lock = threading.Lock()

    def scanner(k):
        c = db.connect()
        try:
            i = k
            while not stop.is_set():
                sql, _ = QUERIES[i % len(QUERIES)]
                got = query(c, sql)[0][0]
                if got != expected[i % len(QUERIES)]:
                    errors.append("scan %r gave %d, want %d" % (sql, got, expected[i % len(QUERIES)]))
                with lock:
                    counts["scans"] += 1
                i += 1
        except Exception as e:
            errors.append("scanner %d: %s" % (k, e))
        finally:
            c.close()

    def syncer():
        c = db.connect()
        try:
            while not stop.is_set():
                for row in sh.sync(c, "load"):
                    with lock:
                        counts["syncs"] += 1
                        counts["skipped"] += row["status"] == "skipped"
                    if row["status"] not in ("completed", "skipped"):
                        errors.append("sync ended %s: %s" % (row["status"], row["error_message"]))
        except Exception as e:
            errors.append("syncer: %s" % e)
        finally:
            c.close()

    threads = [threading.Thread(target=scanner, args=(k,), daemon=True) for k in range(SCANNERS)]
    threads += [threading.Thread(target=syncer, daemon=True) for _ in range(2)]
    started = time.monotonic()
    for t in threads:
        t.start()
    # the load goes on for `seconds`, and until pg_cron's run has finished
    runs = []
    while time.monotonic() - started < CRON_WAIT and not errors:
        runs = cron_runs(admin, jobid)
        if runs and time.monotonic() - started >= seconds:
            break
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a session hangs (deadlock?)"
    unschedule(admin)
    assert not errors, errors[:5]
    assert runs, "pg_cron ran no sync within %d s of load" % CRON_WAIT
    assert all(r[0] == "succeeded" for r in runs), "pg_cron's runs: %r" % runs
    assert counts["scans"] >= SCANNERS and counts["syncs"] >= 2, counts
    # every run during the load, the cron job's too: none failed or was left open
    bad = sh.log_rows(conn, "load", "id > %d AND status NOT IN ('completed', 'skipped')" % first_id)
    assert not bad, [(r["id"], r["status"], r["error_message"]) for r in bad]
    assert "deadlock detected" not in helpers.read_log_since(log_start)

    # the remote changes; two syncs at once: one completes, any other is skipped
    mp.mock.mutate(update_random=40, insert=10)
    a, b = sh.start_sync(db, "load"), sh.start_sync(db, "load")
    for t in (a, b):
        t.wait(60)
        assert t.error is None, t.error
    statuses = sorted(r["status"] for t in (a, b) for r in t.rows)
    assert statuses in (["completed", "completed"], ["completed", "skipped"]), statuses
    for t in (a, b):
        t.close()
    sh.sync_ok(conn, "load")
    sh.assert_synced(conn, "load", mp.mock, "after the load")
