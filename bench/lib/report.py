"""Turn bench/run's raw figures into the results table and the plot.

    report.py --raw raw.tsv --meta meta.json --md results.md --png results.png

raw.tsv has one figure a line: SECTION  N  KEY  RUN  VALUE (see bench/run).
Every throughput is computed per run (rows / seconds) and then summarised as
the median with the spread (min-max) of the runs.  A ratio "crm_fdw / X" is
the median crm_fdw throughput over the median throughput of X, so > 1 means
crm_fdw is faster.
"""

import argparse
import collections
import json
import math
import statistics

PAGE = 100
MB = 1024.0  # /proc figures are kB

# full-sync approaches: (key of the seconds figure, label)
FULL = [
    ("raw_s", "limit: raw transfer of every page, one keep-alive connection"),
    ("copy_s", "limit: COPY into crm.appointments (indexes, triggers on)"),
    ("store_s", "limit: crm_fdw's store alone (`crm._sync_pages` of the pages from a table)"),
    ("ref_full_s", "reference sync (guide's Example 1, Node.js, row by row)"),
    ("peer_full_s", "batched SQL peer (curl + psql, set-wise per page)"),
    ("fdw_full_s", "**crm_fdw full first sync** (`crm_sync_now`)"),
]
INC = [
    ("ref_inc", "reference sync"),
    ("peer_inc", "batched SQL peer"),
    ("fdw_inc", "**crm_fdw** (`crm_sync_now`)"),
]


def load(path):
    data = collections.defaultdict(lambda: collections.defaultdict(dict))
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            section, n, key, run, value = line.rstrip("\n").split("\t")
            data[section][int(n)].setdefault(key, {})[int(run)] = float(value)
    return data


def runs(d, key):
    """The figures of key, in run order."""
    return [v for _, v in sorted(d.get(key, {}).items())]


def summary(values):
    return (statistics.median(values), min(values), max(values)) if values else None


def fmt_num(v, digits=3):
    """A number with about `digits` significant digits, thousands separated."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if v == int(v) and abs(v) >= 1:
        return f"{int(v):,}"      # counts, and large rates: no decimals
    if v == 0:
        return "0"
    mag = int(math.floor(math.log10(abs(v))))
    decimals = max(0, digits - 1 - mag)
    return f"{v:,.{decimals}f}"


def fmt_sum(s, digits=3, unit=""):
    if s is None:
        return "–"
    med, lo, hi = s
    if lo == hi:
        return f"{fmt_num(med, digits)}{unit}"
    return f"{fmt_num(med, digits)}{unit} ({fmt_num(lo, digits)}–{fmt_num(hi, digits)})"


def ratio(a, b):
    if not a or not b or b[0] == 0:
        return None
    return a[0] / b[0]


def fmt_ratio(r):
    return "–" if r is None else f"{fmt_num(r)}×"


def rates(d, n, key, rows_key=None):
    """Rows per second of each run of key (seconds); rows = n or rows_key's figure."""
    secs = runs(d, key)
    rows = runs(d, rows_key) if rows_key else [n] * len(secs)
    return summary([r / s for r, s in zip(rows, secs) if s > 0])


def all_cores_rates(d, n, ncpu):
    """Per run: the rows/s every core of the machine could reach if each spent
    jansson's CPU seconds per N rows parsing and nothing else, after the CPU the
    mock spent per row in the raw transfer (the remote runs on the same cores)."""
    per_run = zip(runs(d, "jansson_s"), runs(d, "raw_mock_cpu_s"))
    return summary([ncpu * n / (c + m) for c, m in per_run if c + m > 0])


def nlabel(n):
    return f"N = {n:,}"


class Report:
    def __init__(self, data, meta):
        self.data, self.meta = data, meta
        self.sizes = sorted(data["size"])
        self.lines = []
        self.targets = []

    def out(self, *lines):
        self.lines.extend(lines)

    def table(self, header, rows):
        self.out("| " + " | ".join(header) + " |",
                 "|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            self.out("| " + " | ".join(r) + " |")
        self.out("")

    # -- sections ------------------------------------------------------------

    def machine(self):
        m = self.meta
        mode = "quick (`bench/run --quick`: 1 run, small N; not for judging)" if m["quick"] == "1" \
            else f"full, {m['runs']} runs per N"
        self.out(f"# crm_fdw benchmark, {m['date']}", "",
                 f"Mode: {mode}. Mock data seed {m['seed']}. Whole benchmark: {int(m['bench_seconds']) // 60} min "
                 f"{int(m['bench_seconds']) % 60} s.", "",
                 "| machine | |", "|---|---|",
                 f"| CPUs (nproc) | {m['nproc']} |",
                 f"| CPU model | {m['cpu']} |",
                 f"| memory | {m['mem']} |",
                 f"| PostgreSQL | {m['pg']} (fsync = off, as test/lib.sh sets it) |",
                 f"| kernel | {m['kernel']} |",
                 f"| Node.js / curl | {m['node']} / {m['curl']} |",
                 f"| crm_fdw commit | {m['commit']} |",
                 f"| load average at the start | {m['load']} |", "",
                 "Figures are the median of the runs with the spread (min–max) in brackets. "
                 "Every server (PostgreSQL, the mock API) and client is on 127.0.0.1 of this machine. "
                 "A ratio `crm_fdw ÷ X` is crm_fdw's median throughput over X's: above 1 crm_fdw is faster.", "")

    def full_sync(self):
        d = self.data["size"]
        self.out("## Full first sync into empty tables, and the limits (rows/s)", "",
                 "Each sync stores every appointment and creates its contact, lead and (when paid) deal.", "")
        header = ["approach"] + [nlabel(n) for n in self.sizes]
        rows = []
        for key, label in FULL:
            rows.append([label] + [fmt_sum(rates(d[n], n, key)) for n in self.sizes])
        self.table(header, rows)
        rows = []
        fdw = {n: rates(d[n], n, "fdw_full_s") for n in self.sizes}
        for key, label in [("ref_full_s", "crm_fdw ÷ reference sync"),
                           ("peer_full_s", "crm_fdw ÷ batched SQL peer"),
                           ("copy_s", "crm_fdw ÷ COPY limit"),
                           ("store_s", "crm_fdw ÷ its store alone"),
                           ("raw_s", "crm_fdw ÷ raw-transfer limit")]:
            rows.append([label] + [fmt_ratio(ratio(fdw[n], rates(d[n], n, key))) for n in self.sizes])
        self.table(["ratio"] + [nlabel(n) for n in self.sizes], rows)

    def incremental(self):
        d = self.data["size"]
        self.out("## Incremental sync after 1 % of the rows changed", "",
                 "`update_random` N/100 rows on the mock after the three full syncs; each approach then "
                 "syncs what changed since its own last sync. Wall seconds, and requests from the mock's log.", "")
        header = ["approach"]
        for n in self.sizes:
            header += [f"{nlabel(n)}: seconds", "requests"]
        rows = []
        for key, label in INC:
            r = [label]
            for n in self.sizes:
                r += [fmt_sum(summary(runs(d[n], key + "_s"))),
                      fmt_sum(summary(runs(d[n], key + "_req_log")))]
            rows.append(r)
        r = ["minimum requests: ceil(changed / 100)"]
        for n in self.sizes:
            r += ["", fmt_sum(summary([math.ceil(c / PAGE) for c in runs(d[n], "changed")]))]
        rows.append(r)
        self.table(header, rows)
        rows = []
        for key, label in [("ref_inc_s", "crm_fdw ÷ reference sync (speed)"),
                           ("peer_inc_s", "crm_fdw ÷ batched SQL peer (speed)")]:
            rows.append([label] + [fmt_ratio(ratio(summary(runs(d[n], key)),
                                                   summary(runs(d[n], "fdw_inc_s"))))
                                   for n in self.sizes])
        self.table(["ratio"] + [nlabel(n) for n in self.sizes], rows)

    def scans(self):
        d = self.data["size"]
        self.out("## Foreign-table queries (rows/s)", "",
                 "Server option `rate_limit_per_minute '0'`. The filtered query is "
                 "`status = 'confirmed' AND appointment_date` in one month (pushed down as "
                 "`status`, `start_date`, `end_date`), every column of every row sent to the client "
                 "with `COPY (…) TO STDOUT`.", "")
        header = ["measurement"] + [nlabel(n) for n in self.sizes]
        ncpu = int(self.meta["nproc"])
        rows = [
            ["limit: raw transfer of every page"] + [fmt_sum(rates(d[n], n, "raw_s")) for n in self.sizes],
            ["**crm_fdw** `SELECT count(*) FROM remote.appointments`"]
            + [fmt_sum(rates(d[n], n, "fdw_count_s")) for n in self.sizes],
            ["count(*) ÷ limit"] + [fmt_ratio(ratio(rates(d[n], n, "fdw_count_s"), rates(d[n], n, "raw_s")))
                                   for n in self.sizes],
            ["count(*): parallel workers planned (after `ANALYZE`; the leader takes part too)"]
            + [fmt_sum(summary(runs(d[n], "fdw_count_workers"))) for n in self.sizes],
            ["**crm_fdw** every column of every row (`COPY (SELECT * …) TO STDOUT`)"]
            + [fmt_sum(rates(d[n], n, "fdw_all_s")) for n in self.sizes],
            ["every column ÷ limit"] + [fmt_ratio(ratio(rates(d[n], n, "fdw_all_s"), rates(d[n], n, "raw_s")))
                                   for n in self.sizes],
            ["limit: jansson parse of every page, one core (bench/lib/jansson_limit.c)"]
            + [fmt_sum(rates(d[n], n, "jansson_s")) for n in self.sizes],
            ["every column ÷ jansson-parse limit"]
            + [fmt_ratio(ratio(rates(d[n], n, "fdw_all_s"), rates(d[n], n, "jansson_s")))
               for n in self.sizes],
            [f"limit: all {ncpu} cores parsing with jansson and nothing else, less the CPU the mock "
             "spends per row (measured in the raw transfer)"]
            + [fmt_sum(all_cores_rates(d[n], n, ncpu)) for n in self.sizes],
            ["that limit ÷ the raw transfer"]
            + [fmt_ratio(ratio(all_cores_rates(d[n], n, ncpu), rates(d[n], n, "raw_s"))) for n in self.sizes],
            ["rows matching the filter"] + [fmt_sum(summary(runs(d[n], "filter_rows"))) for n in self.sizes],
            ["limit: raw transfer of the filtered listing"]
            + [fmt_sum(rates(d[n], n, "raw_filter_s", "filter_rows")) for n in self.sizes],
            ["**crm_fdw** filtered query"]
            + [fmt_sum(rates(d[n], n, "fdw_filter_s", "filter_rows")) for n in self.sizes],
            ["crm_fdw ÷ limit"] + [fmt_ratio(ratio(rates(d[n], n, "fdw_filter_s", "filter_rows"),
                                                   rates(d[n], n, "raw_filter_s", "filter_rows")))
                                   for n in self.sizes],
        ]
        self.table(header, rows)

    def requests(self):
        d = self.data["size"]
        self.out("## Requests per crm_fdw operation", "",
                 "Sent requests counted in the mock's `/_mock/log`, and as crm_fdw counts them "
                 "(`crm.sync_log.requests`); the minimum is ceil(rows to read / 100).", "")
        rows = []
        for n in self.sizes:
            dn = d[n]
            changed = runs(dn, "changed")
            rows.append([nlabel(n), "full first sync", fmt_sum(summary(runs(dn, "fdw_full_req_log"))),
                         fmt_sum(summary(runs(dn, "fdw_full_req_synclog"))), f"{n:,}",
                         fmt_num(math.ceil(n / PAGE))])
            rows.append([nlabel(n), "incremental after 1 %", fmt_sum(summary(runs(dn, "fdw_inc_req_log"))),
                         fmt_sum(summary(runs(dn, "fdw_inc_req_synclog"))),
                         fmt_sum(summary(changed)) + " changed, " + fmt_sum(summary(runs(dn, "fdw_inc_fetched")))
                         + " read", fmt_sum(summary([math.ceil(c / PAGE) for c in changed]))])
            rows.append([nlabel(n), "`count(*)` foreign scan", fmt_sum(summary(runs(dn, "fdw_count_req_log"))),
                         "", f"{n:,}", fmt_num(math.ceil(n / PAGE))])
        self.table(["N", "operation", "requests (mock log)", "crm.sync_log.requests", "rows", "minimum"], rows)

    def rate_minimum(self, rd):
        """The least wall time the mock's fixed window allows: the requests
        beyond the first L must wait for the next window (60 s after the
        first request), and the work after the last window opens cannot go
        faster than without a limit."""
        limit = int(runs(rd, "limit")[0])
        req = int(runs(rd, "unlimited_req")[0])
        t_unl = summary(runs(rd, "unlimited_s"))[0]
        waits = (req - 1) // limit
        after = req - waits * limit
        return waits * 60.0 + t_unl * after / req, limit, req, t_unl, waits

    def rate(self):
        rate = self.data.get("rate", {})
        if not rate:
            return
        self.out("## Full sync under a rate limit", "",
                 "The mock's fixed 60 s window per token (`rate_limit_per_minute`) and the server option "
                 "`rate_limit_per_minute` set to the same limit; crm_fdw is the only client. "
                 "Minimum = ⌊(R − 1) / L⌋ × 60 s (the windows the last request must wait for, R requests, "
                 "L per window) + the unlimited sync's time × the share of requests sent in the last window. "
                 "A sync that fits one window runs at least 5 times with and without the limit (medians).", "")
        rows = []
        for n in sorted(rate):
            rd = rate[n]
            minimum, limit, req, t_unl, waits = self.rate_minimum(rd)
            wall = summary(runs(rd, "limited_s"))
            rows.append([f"{n:,}", str(limit), fmt_sum(summary(runs(rd, "limited_req"))), str(req),
                         fmt_sum(summary(runs(rd, "limited_429"))), fmt_num(t_unl) + " s",
                         f"{fmt_num(minimum)} s ({waits} wait{'s' if waits != 1 else ''})",
                         fmt_sum(wall, unit=" s"), fmt_ratio(wall[0] / minimum)])
        self.table(["rows", "limit / min", "requests", "requests needed (unlimited run)", "429s received",
                    "unlimited sync", "minimum", "wall time", "wall ÷ minimum"], rows)

    def memory(self):
        mem = self.data.get("mem", {})
        if not mem:
            return
        sizes = sorted(mem)
        self.out("## Peak memory (MB)", "",
                 "Sampled every 20 ms from `/proc/<pid>/status` of the process while it runs "
                 "(bench/lib/memwatch.py): VmHWM is the kernel's peak resident size, which includes the "
                 "shared buffers the process touched; RssAnon is its private memory (largest sample). "
                 "Foreign scan: `SELECT count(*), max(length(a::text)) FROM remote.appointments a` "
                 "(every column converted); then the same scan in parallel after `ANALYZE` (its leader "
                 "and one worker; the ids they share are in dynamic shared memory, counted in VmHWM "
                 "by the processes that touch them). Sync worker and its fetcher (the worker that reads the pages "
                 "ahead): `crm_sync_now` into empty tables.", "")
        header = ["process", "figure"] + [f"{m:,} rows" for m in sizes]
        if len(sizes) > 1:
            header.append(f"growth {sizes[0]:,} → {sizes[-1]:,}")
        rows = []
        for proc, label in [("scan", "backend of the foreign scan"),
                            ("pscan", "leader of the same scan in parallel"),
                            ("pworker", "a worker of that parallel scan"),
                            ("sync", "sync worker (full sync)"), ("fetch", "its fetcher (full sync)")]:
            for fig, flabel in [("vmhwm_kb", "VmHWM"), ("anon_kb", "peak RssAnon")]:
                if not all(runs(mem[m], f"{proc}_{fig}") for m in sizes):
                    continue    # a quick run's worker can end before it is seen
                vals = [runs(mem[m], f"{proc}_{fig}")[0] / MB for m in sizes]
                r = [label, flabel] + [fmt_num(v) for v in vals]
                if len(sizes) > 1:
                    r.append(f"{vals[-1] - vals[0]:+.1f}")
                rows.append(r)
        self.table(header, rows)

    def judge(self):
        d = self.data["size"]
        quick = self.meta["quick"] == "1"
        n = 100000 if 100000 in d else self.sizes[-1]
        dn = d[n]
        t = []

        fdw = rates(dn, n, "fdw_full_s")
        r_ref = ratio(fdw, rates(dn, n, "ref_full_s"))
        r_peer = ratio(fdw, rates(dn, n, "peer_full_s"))
        t.append((f"full sync ≥ 30× the reference sync ({nlabel(n)})",
                  f"{fmt_ratio(r_ref)} ({fmt_num(fdw[0])} vs {fmt_num(rates(dn, n, 'ref_full_s')[0])} rows/s)",
                  r_ref is not None and r_ref >= 30))
        t.append((f"full sync ≥ 2× the batched SQL peer ({nlabel(n)})",
                  f"{fmt_ratio(r_peer)} ({fmt_num(fdw[0])} vs {fmt_num(rates(dn, n, 'peer_full_s')[0])} rows/s)",
                  r_peer is not None and r_peer >= 2))
        if runs(dn, "store_s"):
            store = rates(dn, n, "store_s")
            for key, label, k in [("ref_full_s", "reference sync", 30), ("peer_full_s", "batched SQL peer", 2)]:
                rs = ratio(store, rates(dn, n, key))
                t.append((f"(bound) crm_fdw's store alone, without HTTP or JSON, ÷ the {label} ({nlabel(n)}): "
                          f"the sync cannot exceed this",
                          f"{fmt_ratio(rs)} ({fmt_num(store[0])} vs {fmt_num(rates(dn, n, key)[0])} rows/s)",
                          rs is not None and rs >= k))

        changed = runs(dn, "changed")
        worst = max(r - (math.ceil(c / PAGE) + 2) for r, c in zip(runs(dn, "fdw_inc_req_log"), changed))
        req = runs(dn, "fdw_inc_req_log")
        t.append((f"incremental after 1 %: requests ≤ ceil(changed / 100) + 2 ({nlabel(n)})",
                  f"{fmt_sum(summary(req))} sent for {fmt_sum(summary(changed))} changed "
                  f"(bound {fmt_sum(summary([math.ceil(c / PAGE) + 2 for c in changed]))}), every run",
                  worst <= 0))
        fi, pi = summary(runs(dn, "fdw_inc_s")), summary(runs(dn, "peer_inc_s"))
        t.append((f"incremental after 1 %: wall time ≤ the batched peer's ({nlabel(n)})",
                  f"{fmt_num(fi[0])} s vs {fmt_num(pi[0])} s", fi[0] <= pi[0]))

        rc = ratio(rates(dn, n, "fdw_count_s"), rates(dn, n, "raw_s"))
        t.append((f"foreign scan count(*) ≥ 0.5× the raw transfer ({nlabel(n)})",
                  f"{fmt_ratio(rc)} ({fmt_num(rates(dn, n, 'fdw_count_s')[0])} vs "
                  f"{fmt_num(rates(dn, n, 'raw_s')[0])} rows/s)", rc is not None and rc >= 0.5))

        rate = self.data.get("rate", {})
        if rate:
            rows = 6000 if 6000 in rate else sorted(rate)[0]
            rd = rate[rows]
            minimum = self.rate_minimum(rd)[0]
            n429 = max(runs(rd, "limited_429"))
            wall = summary(runs(rd, "limited_s"))
            t.append((f"rate limit ({rows:,} rows): zero 429s", f"{int(n429)} received", n429 == 0))
            t.append((f"rate limit ({rows:,} rows): wall ≤ 1.05× the minimum",
                      f"{fmt_num(wall[0])} s vs minimum {fmt_num(minimum)} s ({fmt_ratio(wall[0] / minimum)})",
                      wall[0] <= 1.05 * minimum))
            for other in sorted(rate):
                if other == rows:
                    continue
                ro = rate[other]
                mo = self.rate_minimum(ro)[0]
                wo = summary(runs(ro, "limited_s"))
                t.append((f"(also) rate limit ({other:,} rows): zero 429s, wall ≤ 1.05× minimum",
                          f"{int(max(runs(ro, 'limited_429')))} 429s; {fmt_num(wo[0])} s vs {fmt_num(mo)} s "
                          f"({fmt_ratio(wo[0] / mo)})",
                          max(runs(ro, "limited_429")) == 0 and wo[0] <= 1.05 * mo))

        mem = self.data.get("mem", {})
        if len(mem) > 1:
            lo, hi = (100000, 1000000) if 100000 in mem and 1000000 in mem else (min(mem), max(mem))
            for proc, label in [("scan", "foreign scan backend"),
                                ("pscan", "parallel foreign scan, leader"),
                                ("pworker", "parallel foreign scan, a worker"),
                                ("sync", "sync worker"), ("fetch", "sync's fetcher")]:
                if not (runs(mem[lo], f"{proc}_vmhwm_kb") and runs(mem[hi], f"{proc}_vmhwm_kb")):
                    continue
                a = runs(mem[lo], f"{proc}_vmhwm_kb")[0] / MB
                b = runs(mem[hi], f"{proc}_vmhwm_kb")[0] / MB
                t.append((f"memory, {label}: peak RSS at {hi:,} rows within 64 MB of {lo:,}",
                          f"VmHWM {fmt_num(a)} → {fmt_num(b)} MB ({b - a:+.1f} MB)", b - a <= 64))

        self.out("## Targets", "")
        if quick:
            self.out("Quick mode: small N and one run, so these verdicts say nothing; "
                     "run `bench/run` for the real figures.", "")
        self.table(["target", "measured", "met?"],
                   [[a, b, "met" if ok else "**missed**"] for a, b, ok in t])
        self.targets = t

    def render(self):
        self.machine()
        self.judge()
        self.full_sync()
        self.incremental()
        self.scans()
        self.requests()
        self.rate()
        self.memory()
        self.out("The plot `latest.png` shows the rows/s of each approach by N (log scale; bars are medians, "
                 "whiskers the min–max of the runs).", "")
        return "\n".join(self.lines)


def plot(data, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = data["size"]
    sizes = sorted(d)
    series = [("raw_s", "raw transfer (limit)"), ("copy_s", "COPY (limit)"),
              ("store_s", "crm_fdw store alone (limit)"),
              ("ref_full_s", "reference sync"), ("peer_full_s", "batched SQL peer"),
              ("fdw_full_s", "crm_fdw full sync"), ("fdw_count_s", "crm_fdw count(*) scan")]
    fig, ax = plt.subplots(figsize=(10, 5.5))
    width = 0.8 / len(sizes)
    for i, n in enumerate(sizes):
        med, lo, hi = [], [], []
        for key, _ in series:
            s = rates(d[n], n, key) or (float("nan"),) * 3
            med.append(s[0]); lo.append(s[0] - s[1]); hi.append(s[2] - s[0])
        xs = [j + (i - (len(sizes) - 1) / 2) * width for j in range(len(series))]
        ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=nlabel(n))
        for x, v, up in zip(xs, med, hi):
            if v == v:  # not NaN: label the median above its whisker
                ax.text(x, (v + up) * 1.1, fmt_num(v, 3), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(series)))
    ax.set_xticklabels([label for _, label in series], rotation=15, ha="right")
    ax.set_yscale("log")
    ax.set_ylim(top=ax.get_ylim()[1] * 2)  # room for the labels
    ax.set_ylabel("rows per second (log scale)")
    ax.set_title("crm_fdw: full sync and foreign scan against the alternatives and the limits")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--png", required=True)
    a = ap.parse_args()
    data = load(a.raw)
    with open(a.meta) as f:
        meta = json.load(f)
    text = Report(data, meta).render()
    with open(a.md, "w") as f:
        f.write(text)
    plot(data, a.png)


if __name__ == "__main__":
    main()
