"""The scheduler (shared_preload_libraries = 'crm_fdw') syncs every enabled
server every crm_fdw.sync_interval, in crm_fdw.database as crm_fdw.role.

The test points it at a database of its own and a non-superuser role that
alone has user mappings for the two servers (so a completed run proves it
ran as that role): ALTER SYSTEM + pg_reload_conf(); the scheduler exits on
the change and the postmaster starts it again (bgw_restart_time 10 s).  It
then checks the scheduled runs and the data, that crm_sync_enable(server,
false) stops that server's runs, that interval 0 stops all of them, and
that SIGTERM ends the scheduler within 2 s and the postmaster brings it
back.  The settings are reset at the end, also on failure.

A second test leaves runs 'running' as a crash does, then moves the
scheduler (interval 0, so it never syncs) into that database: starting, it
closes them.
"""

import subprocess
import time

import sync_helpers as sh
from helpers import MockProcess, execute, scalar, wait_until

ROLE = "crm_it_sync_sched"
INTERVAL = 2
SYNC_LOCK_CLASS = 0x43524D31        # src/sync.c: a server's sync holds (class, server oid)


def reload_with(admin, **settings):
    for name, value in settings.items():
        if value is None:
            execute(admin, "ALTER SYSTEM RESET crm_fdw.%s" % name)
        else:
            execute(admin, "ALTER SYSTEM SET crm_fdw.%s = %%s" % name, (str(value),))
    assert scalar(admin, "SELECT pg_reload_conf()")


def scheduler_in(admin, dbname):
    rows = [r for r in sh.scheduler_rows(admin) if r[1] == dbname]
    return rows[0] if rows else None


def completed_since(conn, server, after_id=0):
    return sh.log_rows(conn, server, "status = 'completed' AND id > %d" % after_id)


def test_sync_scheduler():
    """The scheduler, moved to a test database and role by ALTER SYSTEM:
    scheduled runs of both enabled servers, data equal to the remote, a
    change picked up by the next round; a disabled server gets no runs;
    interval 0 gives no runs; SIGTERM: gone in < 2 s, back within 20 s."""
    sh.create_role(ROLE, "LOGIN")
    try:
        with MockProcess(rows=300, seed=31) as mp, sh.SyncDB("scheduler") as db:
            admin = sh.wait_for_cluster()
            conn = db.connect()
            for server in ("sched_a", "sched_b"):
                sh.add_server(conn, server, mp.url, mappings=(ROLE,))
                execute(conn, "GRANT USAGE ON FOREIGN SERVER %s TO %s" % (server, ROLE))
            sh.grant_crm(conn, ROLE)
            started = scalar(admin, "SELECT pg_postmaster_start_time()")
            try:
                reload_with(admin, database=db.name, role=ROLE, sync_interval="%ds" % INTERVAL)
                pid, _, user = wait_until(lambda: scheduler_in(admin, db.name), timeout=40, interval=0.2,
                                          what="the scheduler to start in %s" % db.name)
                assert user == ROLE, "the scheduler runs as %r, not crm_fdw.role" % user

                # scheduled runs of both servers
                for server in ("sched_a", "sched_b"):
                    wait_until(lambda: completed_since(conn, server), timeout=40, interval=0.2,
                               what="a scheduled run of %s" % server)
                for server in ("sched_a", "sched_b"):
                    bad = sh.log_rows(conn, server, "status NOT IN ('completed', 'running')")
                    assert not bad, "scheduled runs of %s: %r" % (
                        server, [(r["status"], r["error_message"]) for r in bad])
                    sh.assert_synced(conn, server, mp.mock, "after a scheduled run")

                # a remote change reaches both servers by the next rounds
                mp.mock.mutate(update_random=7, insert=2)
                for server in ("sched_a", "sched_b"):
                    wait_until(lambda: not sh.problems(sh.compare(conn, server, mp.mock)),
                               timeout=6 * INTERVAL + 10, interval=0.5,
                               what="the scheduled runs to bring %s up to date" % server)

                # disabled: no more runs of sched_a, sched_b goes on
                execute(conn, "SELECT crm_sync_enable('sched_a', false)")
                disabled_at = scalar(conn, "SELECT clock_timestamp()")
                wait_until(lambda: [r for r in completed_since(conn, "sched_b")
                                    if r["sync_started_at"] > disabled_at],
                           timeout=4 * INTERVAL + 10, interval=0.2,
                           what="a run of sched_b after the disable")
                mark = scalar(conn, "SELECT max(id) FROM crm.sync_log")
                wait_until(lambda: len(completed_since(conn, "sched_b", mark)) >= 2,
                           timeout=6 * INTERVAL + 10, interval=0.2,
                           what="two more scheduled runs of sched_b")
                late = sh.log_rows(conn, "sched_a", "id > %d" % mark)
                assert not late, "sched_a ran while disabled: %r" % [(r["id"], r["status"]) for r in late]
                assert scheduler_in(admin, db.name)[0] == pid, "the scheduler restarted"

                # interval 0: no runs at all
                reload_with(admin, sync_interval=0)
                time.sleep(INTERVAL + 1.5)          # a round already under way ends
                wait_until(lambda: not scalar(conn, "SELECT count(*) FROM crm.sync_log"
                                                    " WHERE status = 'running'"), timeout=20)
                mark = scalar(conn, "SELECT max(id) FROM crm.sync_log")
                time.sleep(3 * INTERVAL)
                late = scalar(conn, "SELECT count(*) FROM crm.sync_log WHERE id > %s", (mark,))
                assert late == 0, "%d runs with crm_fdw.sync_interval = 0" % late
                assert scheduler_in(admin, db.name)[0] == pid, "the scheduler restarted on an interval change"

                # SIGTERM: out within 2 s, back by the postmaster
                t0 = time.monotonic()
                assert scalar(admin, "SELECT pg_terminate_backend(%s)", (pid,))
                wait_until(lambda: not scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                              (pid,)), timeout=2.0, interval=0.02,
                           what="the scheduler to exit after SIGTERM")
                took = time.monotonic() - t0
                new = wait_until(lambda: scheduler_in(admin, db.name), timeout=20, interval=0.2,
                                 what="the postmaster to start the scheduler again")
                assert new[0] != pid
                assert scalar(admin, "SELECT pg_postmaster_start_time()") == started, \
                    "the cluster restarted"
                assert took < 2.0
            finally:
                reload_with(admin, database=None, role=None, sync_interval=None)
                try:
                    wait_until(lambda: not scheduler_in(admin, db.name), timeout=15, interval=0.2,
                               what="the scheduler to leave %s" % db.name)
                finally:
                    conn.close()
                    admin.close()
    finally:
        sh.drop_role(ROLE)


def test_scheduler_closes_interrupted_runs_at_start():
    """Runs left 'running' by a crash (their worker gone, no lock held) are
    closed as failed by the scheduler as it starts, with no sync and no
    request; a run whose server's sync lock is held is left alone."""
    with MockProcess(rows=20, seed=33) as mp, sh.SyncDB("sched_start") as db:
        admin = sh.wait_for_cluster()
        conn, holder = db.connect(), db.connect()
        try:
            for server in ("crashed", "busy"):
                sh.add_server(conn, server, mp.url)
            dead = subprocess.Popen(["true"])
            dead.wait()                     # its pid belongs to no process now
            execute(conn, "INSERT INTO crm.sync_log (server_name, sync_type, status, worker_pid,"
                          " sync_started_at) VALUES"
                          " ('crashed', 'incremental', 'running', %s, now() - interval '5 min'),"
                          " ('busy', 'full', 'running', %s, now() - interval '5 min')",
                    (dead.pid, holder.get_backend_pid()))
            execute(holder, "SELECT pg_advisory_lock(%s, oid::int) FROM pg_foreign_server"
                            " WHERE srvname = 'busy'", (SYNC_LOCK_CLASS,))
            mp.mock.clear_log()
            try:
                reload_with(admin, database=db.name, sync_interval=0)
                wait_until(lambda: scheduler_in(admin, db.name), timeout=40, interval=0.2,
                           what="the scheduler to start in %s" % db.name)
                closed = wait_until(lambda: sh.log_rows(conn, "crashed", "status <> 'running'"),
                                    timeout=10, interval=0.1,
                                    what="the scheduler to close the interrupted run")[0]
                assert closed["status"] == "failed" and closed["sync_completed_at"] is not None, closed
                assert (closed["error_message"] or "").startswith("interrupted"), closed["error_message"]
                busy = sh.log_rows(conn, "busy")
                assert [r["status"] for r in busy] == ["running"], \
                    "the run of a server whose lock is held: %r" % busy
                assert scalar(conn, "SELECT count(*) FROM crm.sync_log") == 2, "a sync ran"
                assert mp.mock.log() == [], "the scheduler sent requests"
            finally:
                reload_with(admin, database=None, sync_interval=None)
                wait_until(lambda: not scheduler_in(admin, db.name), timeout=15, interval=0.2,
                           what="the scheduler to leave %s" % db.name)
        finally:
            for c in (holder, conn, admin):
                c.close()
