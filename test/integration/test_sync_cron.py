"""pg_cron runs crm_sync_now in another database.

pg_cron lives in database postgres (cron.database_name); a job scheduled
with cron.schedule_in_database runs SELECT crm_sync_now('<server>') in the
test database.  The installed pg_cron may not know second schedules
('2 seconds', pg_cron >= 1.5): then the job runs every minute and the test
waits up to 75 s for it.
"""

import psycopg2

import sync_helpers as sh
from helpers import MockProcess, execute, query, scalar, wait_until

JOB = "crm_it_sync_cron"


def unschedule(admin):
    execute(admin, "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %s", (JOB,))


def test_sync_pg_cron_job():
    """A pg_cron job in postgres runs crm_sync_now in the test database: a
    completed crm.sync_log row there, the job 'succeeded' in
    cron.job_run_details, the data equal to the remote."""
    with MockProcess(rows=200, seed=41) as mp, sh.SyncDB("cron") as db:
        conn = db.connect()
        sh.add_server(conn, "cronsrv", mp.url)
        admin = sh.wait_for_cluster()
        try:
            execute(admin, "CREATE EXTENSION IF NOT EXISTS pg_cron")
            unschedule(admin)
            command = "SELECT count(*) FROM crm_sync_now('cronsrv')"
            try:
                jobid = scalar(admin, "SELECT cron.schedule_in_database(%s, '2 seconds', %s, %s)",
                               (JOB, command, db.name))
                bound = 20
            except psycopg2.Error as e:
                assert "schedule" in str(e), "scheduling failed: %s" % e
                jobid = scalar(admin, "SELECT cron.schedule_in_database(%s, '* * * * *', %s, %s)",
                               (JOB, command, db.name))
                bound = 75
            row = wait_until(lambda: sh.log_rows(conn, "cronsrv", "status = 'completed'"),
                             timeout=bound, interval=0.5, what="the pg_cron job's sync")[0]
            runs = wait_until(lambda: query(
                admin, "SELECT status, return_message, database, command FROM cron.job_run_details"
                       " WHERE jobid = %s AND status IN ('succeeded', 'failed')", (jobid,)),
                timeout=20, interval=0.2, what="cron.job_run_details of the job")
            assert runs[0][0] == "succeeded", "the job: %r" % (runs[0],)
            assert runs[0][2] == db.name and runs[0][3] == command, runs[0]
            unschedule(admin)
            assert row["records_created"] == 200, row
            bad = sh.log_rows(conn, "cronsrv", "status NOT IN ('completed', 'running')")
            assert not bad, [(r["status"], r["error_message"]) for r in bad]
            wait_until(lambda: not sh.log_rows(conn, "cronsrv", "status = 'running'"), timeout=20)
            sh.assert_synced(conn, "cronsrv", mp.mock)
        finally:
            try:
                unschedule(admin)
            finally:
                admin.close()
                conn.close()
