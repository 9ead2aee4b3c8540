"""SIGKILL of the sync worker in the middle of a sync.

A 3,000-row mock sends every page slowly; once crm.sync_log shows the run
got to a given page (read from another connection), the 'crm_fdw sync'
worker gets SIGKILL.  The postmaster then restarts the whole cluster.  After
that, with the remote fast again, crm_sync_now must close the interrupted
run as failed ('interrupted ...'), complete, and leave crm.appointments
exactly equal to the remote, with one contact per email, one lead per
appointment and one deal per paid appointment.

Default profile: three kill points (after the first page of a first sync,
in the middle of a full sync, near the end of a full sync).  With
CRM_TEST_LONG=1, test_sync_kill_random_points adds 20 random kill points.
"""

import os
import random
import signal
import time

import helpers
import sync_helpers as sh
from helpers import MockProcess, Skip, scalar, wait_until

ROWS = 3000
PAGES = ROWS // 100
SLOW = 0.25                   # seconds per page while the fault is on


def slow_pages(mock):
    mock.config(fault={"mode": "slow", "count": -1, "slow_seconds": SLOW, "path": "/appointments"})


def kill_at(db, mock, server, pages, full, jitter=0.0):
    """Start a sync, SIGKILL its worker once pages_done >= pages (plus
    jitter seconds), wait for the cluster to come back; return the killed
    run's sync_log id and the pages it had done."""
    slow_pages(mock)
    watch = db.connect()
    t = sh.start_sync(db, server, full)
    try:
        def reached():
            r = sh.running_row(watch, server)
            return r if r and r["pages_done"] >= pages else None
        row = wait_until(reached, timeout=PAGES * SLOW * 3 + 20, interval=0.01,
                         what="the sync of %s to reach page %d" % (server, pages))
        if jitter:
            time.sleep(jitter)
        pid = row["worker_pid"]
        assert pid in sh.worker_pids(watch, db.name), \
            "worker_pid %s of the running sync is not a 'crm_fdw sync' backend" % pid
        assert scalar(watch, "SELECT status FROM crm.sync_log WHERE id = %s", (row["id"],)) == "running", \
            "the sync finished before the kill"
        os.kill(pid, signal.SIGKILL)
        t.wait(60)
        assert t.error is not None, "the caller of the killed sync got rows: %r" % (t.rows,)
    finally:
        for c in (watch, t.conn):
            try:
                c.close()
            except Exception:
                pass
    sh.wait_for_cluster(60).close()
    return row["id"], row["pages_done"]


def recover_and_check(db, mock, server, killed_id, what):
    """The remote is fast again: crm_sync_now closes the killed run, completes,
    and the data equals the remote exactly."""
    mock.config(fault=None)
    conn = db.connect()
    try:
        assert sh.running_row(conn, server)["id"] == killed_id, \
            "%s: the killed run is not the one left 'running'" % what
        done = sh.sync_ok(conn, server)
        assert done["id"] > killed_id
        killed = sh.log_rows(conn, server, "id = %d" % killed_id)[0]
        assert killed["status"] == "failed", "%s: the killed run is %r" % (what, killed["status"])
        assert (killed["error_message"] or "").startswith("interrupted"), \
            "%s: error_message of the killed run: %r" % (what, killed["error_message"])
        assert killed["sync_completed_at"] is not None
        left = sh.log_rows(conn, server, "status = 'running'")
        assert not left, "%s: runs still 'running': %r" % (what, [r["id"] for r in left])
        sh.assert_synced(conn, server, mock, what)
    finally:
        conn.close()


def test_sync_kill_three_points():
    """SIGKILL of the sync worker after page 1 of a first sync, mid-way
    through a full sync and near the end of one (with rows changed and added
    between): each time the cluster restarts, the next crm_sync_now marks the
    run 'failed' (interrupted), completes, and the data equals the remote."""
    with MockProcess(rows=ROWS, seed=7) as mp, sh.SyncDB("kill") as db:
        conn = db.connect()
        sh.add_server(conn, "killme", mp.url)
        conn.close()

        killed, _ = kill_at(db, mp.mock, "killme", 1, full=False, jitter=SLOW / 2)
        recover_and_check(db, mp.mock, "killme", killed, "killed after page 1")

        mp.mock.mutate(update_random=120, insert=25)
        killed, _ = kill_at(db, mp.mock, "killme", PAGES // 2, full=True)
        recover_and_check(db, mp.mock, "killme", killed, "killed mid-way")

        mp.mock.mutate(update_random=60, insert=10)
        killed, _ = kill_at(db, mp.mock, "killme", PAGES - 1, full=True, jitter=SLOW / 4)
        recover_and_check(db, mp.mock, "killme", killed, "killed near the end")

        conn = db.connect()
        try:
            full = sh.sync_ok(conn, "killme", full=True)
            assert full["records_created"] == 0 and full["records_missing"] == 0, full
            sh.assert_synced(conn, "killme", mp.mock, "full sync after the kills")
        finally:
            conn.close()


def test_sync_kill_random_points():
    """(CRM_TEST_LONG=1) 20 SIGKILLs at random pages and moments, of first,
    incremental-from-scratch and full syncs, with random remote changes
    between: after each, one crm_sync_now restores exact equality."""
    if not sh.long_profile():
        raise Skip("set CRM_TEST_LONG=1")
    rnd = random.Random(sh.env_int("CRM_TEST_SEED", 20240611))
    with MockProcess(rows=ROWS, seed=11) as mp, sh.SyncDB("kill_random") as db:
        conn = db.connect()
        sh.add_server(conn, "killrnd", mp.url)
        conn.close()
        for i in range(20):
            mp.mock.mutate(update_random=rnd.randint(0, 150), insert=rnd.randint(0, 20))
            full = rnd.random() < 0.5
            if not full:
                # walk everything again: forget the cursor, as a new server would
                conn = db.connect()
                helpers.execute(conn, "UPDATE crm.sync_state SET sync_cursor = NULL WHERE server_name = 'killrnd'")
                conn.close()
            pages = rnd.randint(1, PAGES - 1)
            what = "kill %d (%s sync, page %d)" % (i + 1, "full" if full else "incremental", pages)
            killed, _ = kill_at(db, mp.mock, "killrnd", pages, full, jitter=rnd.uniform(0, SLOW))
            recover_and_check(db, mp.mock, "killrnd", killed, what)
