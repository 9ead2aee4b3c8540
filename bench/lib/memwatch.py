"""Peak memory of one PostgreSQL process, sampled from /proc while it runs.

    memwatch.py --find "SELECT pid FROM pg_stat_activity WHERE ..." --launcher PID

Polls the query (via psycopg2, PG* environment) every --interval seconds
until it names a process, then reads /proc/<pid>/status every --interval
seconds until the process is gone, and prints one JSON line:
    {"pid", "vmhwm_kb", "rss_anon_kb", "vmrss_kb", "samples"}
vmhwm_kb is the kernel's own peak resident size (VmHWM: never decreases, so
the last sample is the process's peak up to at most one interval before its
exit).  rss_anon_kb is the largest RssAnon seen: the private (heap) part of
the resident size, without the shared buffers the process touched, which
VmHWM counts too.  Needs to run as root or as the cluster's user.

--launcher is the pid of the client that started the work (psql): if it
exits before the process is found, the work was too short to watch and the
answer is an error (exit 1).
"""

import argparse
import json
import os
import sys
import time

import psycopg2


def status_kb(pid):
    """VmHWM, RssAnon and VmRSS of pid in kB, or None once it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "RssAnon", "VmRSS"):
            out[key] = int(value.split()[0])
    return out if len(out) == 3 else None


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def find_pid(query, launcher, interval, timeout):
    conn = psycopg2.connect("")
    conn.autocommit = True
    deadline = time.monotonic() + timeout
    try:
        with conn.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute(query)
                row = cur.fetchone()
                if row and row[0]:
                    return int(row[0])
                if launcher and not alive(launcher):
                    return None
                time.sleep(interval)
    finally:
        conn.close()
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--find", required=True, help="SQL returning the pid to watch")
    ap.add_argument("--launcher", type=int, default=0)
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the pid")
    a = ap.parse_args()

    pid = find_pid(a.find, a.launcher, a.interval, a.timeout)
    if pid is None:
        print("memwatch: no process found for: %s" % a.find, file=sys.stderr)
        return 1
    peak = {"VmHWM": 0, "RssAnon": 0, "VmRSS": 0}
    samples = 0
    while True:
        s = status_kb(pid)
        if s is None:
            break
        samples += 1
        for k in peak:
            peak[k] = max(peak[k], s[k])
        time.sleep(a.interval)
    if samples == 0:
        print("memwatch: process %d exited before it could be sampled" % pid, file=sys.stderr)
        return 1
    print(json.dumps({"pid": pid, "vmhwm_kb": peak["VmHWM"], "rss_anon_kb": peak["RssAnon"],
                      "vmrss_kb": peak["VmRSS"], "samples": samples}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
