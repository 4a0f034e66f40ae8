"""Run the chat benchmark and print the comparison table.

    python -m bench.run                 # full run (under 10 minutes on 2 cores)
    python -m bench.run --quick         # smoke run, about a minute
    python -m bench.run --scenario fanout --servers ours,bare

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback

if __package__ in (None, ""):  # python bench/run.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "bench"  # noqa: A001

from bench.common import raise_nofile  # noqa: E402
from bench.loadgen.pool import ClientPool  # noqa: E402
from bench.scenarios import SCENARIOS, Ctx  # noqa: E402
from bench.servers import ServerFailed, make_servers  # noqa: E402

ORDER = ["fanout", "small", "idle", "history"]
COLS = ["ours", "channels", "bare"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run with smaller loads")
    ap.add_argument("--scenario", action="append", choices=ORDER,
                    help="run only this scenario (repeatable); default: all")
    ap.add_argument("--servers", default="ours,channels,bare",
                    help="comma list of servers: ours, channels, bare (default: all)")
    ap.add_argument("--clients", type=int, default=3, help="client processes (default 3)")
    ap.add_argument("--channels-server", choices=["daphne", "uvicorn"], default="uvicorn",
                    help="ASGI server for the Channels baseline (default uvicorn: the faster of the two here)")
    ap.add_argument("--mongodb-uri", default=os.environ.get("BENCH_MONGODB_URI"),
                    help="run our server against this MongoDB (default: its embedded mongomock)")
    ap.add_argument("--ours-dir", help="checkout of our server to run (default: this repository)")
    ap.add_argument("--history-db", choices=["ferretdb", "embedded"], default="ferretdb",
                    help="database for our server in the history scenario: FerretDB (SQLite) when its "
                         "binary is built (.ci/build-ferretdb.sh), else embedded (default ferretdb)")
    ap.add_argument("--history-messages", type=int, dest="history_messages_cli",
                    help="override the history conversation size")
    ap.add_argument("--history-pagers", type=int, dest="history_pagers_cli",
                    help="override the number of concurrent pagers (in all)")
    ap.add_argument("--quiet-wait", type=float, default=10.0,
                    help="before each measurement wait up to this long for other processes to leave "
                         "the CPU (< 15%% busy); default 20 s")
    ap.add_argument("--budget-secs", type=float, default=530.0,
                    help="skip what is left once the run has taken this long (default 530)")
    ap.add_argument("--json", help="also write all figures to this JSON file")
    ap.add_argument("--logdir", help="where server logs go (default: a temp dir)")
    a = ap.parse_args(argv)
    a.servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    for s in a.servers:
        if s not in COLS:
            ap.error(f"unknown server {s!r}")
    a.scenarios = a.scenario or ORDER
    a.cores = os.cpu_count() or 1
    if a.quick:
        a.fanout_sockets, a.step_secs, a.probe_secs = 100, 1.0, 1.0
        a.small_convs, a.half_rate_secs = 100, 2.0
        a.idle_sockets, a.idle_group, a.connect_concurrency, a.idle_connect_secs = 1000, 2, 32, 30.0
        a.idle_per_user = 4
        a.history_messages, a.history_secs, a.history_pagers, a.seed_timeout = 3000, 3.0, 2, 30.0
        a.history_request_timeout = 30.0
        a.history_sizes = [1000]
        a.prepare_secs = 30.0
    else:
        a.fanout_sockets, a.step_secs, a.probe_secs = 500, 2.5, 2.0
        a.small_convs, a.half_rate_secs = 500, 10.0
        a.idle_sockets, a.idle_group, a.connect_concurrency, a.idle_connect_secs = 10000, 2, 32, 60.0
        a.idle_per_user = 4
        a.history_messages, a.history_secs, a.history_pagers, a.seed_timeout = 100000, 15.0, 1, 45.0
        a.history_request_timeout = 45.0
        a.history_sizes = [1000, 10000]
        a.prepare_secs = 60.0
    if a.history_messages_cli:
        a.history_messages = a.history_messages_cli
    if a.history_pagers_cli:
        a.history_pagers = a.history_pagers_cli
    return a


# (scenario, key, label, format, target)
ROWS = [
    ("fanout", "fan_deliv", "fan-out: deliveries/s with p99 < 100 ms", "int", ">= 3x channels, >= 0.6x bare"),
    ("fanout", "fan_msgs", "  sends/s at that step", "f1", ""),
    ("fanout", "fan_p50", "  p50 / ms at that step", "f1", ""),
    ("fanout", "fan_p99", "  p99 / ms at that step", "f1", "< 100"),
    ("fanout", "fan_sat", "  deliveries/s saturated (closed loop)", "int", ""),
    ("fanout", "fan_cpu", "  CPU server / clients at the limit", "str", ""),
    ("fanout", "fan_bottleneck", "  bottleneck", "str", ""),
    ("small", "sc_msgs", "small chats: msgs/s sustained (stored+delivered)", "int", ">= 3x channels"),
    ("small", "sc_deliv", "  deliveries/s sustained", "int", ""),
    ("small", "sc_sat_p99", "  p99 / ms at sustained (1000 in flight)", "f1", ""),
    ("small", "sc_half_rate", "  msgs/s offered at half rate", "int", ""),
    ("small", "sc_p50", "  p50 / ms at half rate", "f1", ""),
    ("small", "sc_p99", "  p99 / ms at half rate", "f1", "< 50"),
    ("small", "sc_stored", "  stored check (REST read-back)", "str", "every message stored"),
    ("small", "sc_cpu", "  CPU server / clients sustained", "str", ""),
    ("small", "sc_bottleneck", "  bottleneck", "str", ""),
    ("idle", "idle_n", "idle: sockets connected and joined", "int", "10,000"),
    ("idle", "idle_convs", "  conversations (live)", "int", ""),
    ("idle", "idle_rss_per_1k", "  server RSS MiB per 1,000 connections", "f1", "< 50"),
    ("idle", "idle_rss_total", "  server RSS MiB total", "f1", ""),
    ("idle", "idle_threads", "  server threads before -> after", "str", "bounded"),
    ("idle", "idle_setup_rate", "  sockets set up/s (connect+auth+join)", "int", ""),
    ("idle", "idle_conn_lat", "  connect+auth p50 / p99 ms", "str", ""),
    ("idle", "idle_join_lat", "  join p50 / p99 ms", "str", ""),
    ("idle", "idle_cpu", "  server CPU % while idle", "f1", ""),
    ("idle", "idle_conn_cpu", "  CPU server / clients during set-up", "str", ""),
    ("idle", "idle_bottleneck", "  bottleneck", "str", ""),
    ("history", "hist_db", "history: database", "str", ""),
    ("history", "hist_seeded", "  messages in the conversation", "int", "100,000"),
    ("history", "hist_seed_how", "  seeded how", "str", ""),
    ("history", "hist_scaling", "  page p50 / ms by conversation size", "str", ""),
    ("history", "hist_pages", "  pages read at full size (limit=100, before=seq)", "int", ""),
    ("history", "hist_rps", "  pages/s", "f1", ""),
    ("history", "hist_items", "  messages/s read", "int", ""),
    ("history", "hist_p50", "  p50 / ms", "f1", ""),
    ("history", "hist_p99", "  p99 / ms", "f1", ""),
    ("history", "hist_cpu", "  CPU server / clients", "str", ""),
    ("history", "hist_bottleneck", "  bottleneck", "str", ""),
]
RATIO_KEYS = {"fan_deliv", "fan_sat", "sc_msgs", "sc_deliv", "sc_p99", "sc_p50", "fan_p99", "idle_rss_per_1k",
              "idle_setup_rate", "idle_rss_total"}


def fmt(v, kind):
    if v is None:
        return "-"
    if isinstance(v, str) or kind == "str":
        return str(v)
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if kind == "int":
        return f"{v:,.0f}"
    if 0 < abs(v) < 1:
        return f"{v:.2f}"
    return f"{v:,.1f}"


def ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or isinstance(a, bool):
        return "-"
    if b == 0 or math.isinf(a) or math.isinf(b):
        return "-"
    return f"{a / b:.2f}x"


def render_table(results, a, servers, header_lines) -> str:
    labels = {s.key: s.label for s in servers}
    cols = [c for c in COLS if c in labels]
    head = ["figure"] + [labels[c] for c in cols]
    if "ours" in cols and "channels" in cols:
        head.append("ours/channels")
    if "ours" in cols and "bare" in cols:
        head.append("ours/bare")
    head.append("target")
    rows = []
    for scen, key, label, kind, target in ROWS:
        if scen not in results:
            continue
        r = [label]
        vals = {}
        for c in cols:
            res = results[scen].get(c)
            if isinstance(res, dict) and "_error" in res:
                v = "error (see log above)"
            elif isinstance(res, dict) and "_skipped" in res:
                v = "skipped"
            elif res is None:
                v = "n/a" if scen == "history" and c != "ours" else "-"
            else:
                v = res.get(key)
            vals[c] = v
            r.append(fmt(v, kind) if not isinstance(v, str) else v)
        if "ours" in cols and "channels" in cols:
            r.append(ratio(vals.get("ours"), vals.get("channels")) if key in RATIO_KEYS else "")
        if "ours" in cols and "bare" in cols:
            r.append(ratio(vals.get("ours"), vals.get("bare")) if key in RATIO_KEYS else "")
        r.append(target)
        rows.append(r)
    lines = list(header_lines)
    lines.append("")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        lines.append("| " + " | ".join(r) + " |")
    return "\n".join(lines)


def background_load(secs: float = 1.0) -> float:
    import psutil

    from bench.scenarios import machine_busy
    a = psutil.cpu_times()
    time.sleep(secs)
    return max(0.0, machine_busy(a, psutil.cpu_times()))


def wait_quiet(limit: float) -> tuple[float, float]:
    """Wait up to ``limit`` seconds for other processes to leave the CPU (< 15% busy);
    returns how busy the machine was last and how long it waited."""
    t_q = time.monotonic()
    busy = background_load(0.5)
    while busy >= 15 and time.monotonic() - t_q < limit:
        busy = background_load(0.5)
    return busy, time.monotonic() - t_q


def main(argv=None):
    a = parse_args(argv)
    t_start = time.monotonic()
    soft, hard = raise_nofile(65536)
    logdir = a.logdir or tempfile.mkdtemp(prefix="chat-bench-")
    os.makedirs(logdir, exist_ok=True)
    servers = make_servers(a, logdir)
    log = lambda s: print(s, flush=True)  # noqa: E731
    log(f"# chat bench: {a.cores} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{a.clients} client processes, RLIMIT_NOFILE {soft}/{hard}, logs in {logdir}")
    bg = background_load()
    log(f"  machine busy before the run: {bg:.0f}% of {a.cores} cores (other processes)")
    if bg > 10:
        log("  warning: something else is using the CPU; figures will be lower and noisier")
    need_fd = a.idle_sockets + 200
    if "idle" in a.scenarios and soft < need_fd:
        log(f"  warning: RLIMIT_NOFILE soft limit {soft} < {need_fd}: the idle scenario will hit it")
    avail = {}
    for s in servers:
        ok, why = s.available()
        avail[s.key] = (ok, why)
        if not ok:
            log(f"  {s.label}: not available: {why}")
    results: dict = {}
    for scen in ORDER:
        if scen not in a.scenarios:
            continue
        results[scen] = {}
        for s in servers:
            if scen == "history" and not s.has_history:
                results[scen][s.key] = None
                continue
            if not avail[s.key][0]:
                results[scen][s.key] = {"_skipped": avail[s.key][1]}
                continue
            elapsed = time.monotonic() - t_start
            if elapsed > a.budget_secs:
                log(f"## {scen} / {s.label}: skipped, time budget spent ({elapsed:.0f}s)")
                results[scen][s.key] = {"_skipped": "time budget"}
                continue
            bg_now, waited = wait_quiet(a.quiet_wait)
            log(f"## {scen} / {s.label}  (t={elapsed:.0f}s; machine {bg_now:.0f}% busy before it"
                + (f", after waiting {waited:.0f}s for other processes" if waited > 1 else "") + ")")
            pool = None
            try:
                s.start(scen)
                pool = ClientPool(a.clients)
                ctx = Ctx(server=s, pool=pool, opts=a, log=log)
                t0 = time.monotonic()
                res = SCENARIOS[scen](ctx)
                res["_secs"] = time.monotonic() - t0
                if not s.alive():
                    res["_server_died"] = True
                    log(f"    server died during the scenario; log tail:\n{s.log_tail()}")
                results[scen][s.key] = res
                log("    " + ", ".join(f"{k}={fmt(v, 'f1') if isinstance(v, float) else v}"
                                      for k, v in res.items() if not k.startswith("_")))
            except (ServerFailed, Exception) as e:  # noqa: BLE001
                log(f"    ERROR: {type(e).__name__}: {e}")
                if not isinstance(e, ServerFailed):
                    log(traceback.format_exc())
                if s.proc is not None:
                    log("    server log tail:\n" + s.log_tail(1500))
                results[scen][s.key] = {"_error": f"{type(e).__name__}: {e}"}
            finally:
                if pool is not None:
                    pool.close()
                s.stop()
    total = time.monotonic() - t_start
    notes = [
        "",
        f"Chat backend benchmark, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, one run, loopback only.",
        f"Machine: {a.cores} cores, {platform.system()} {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}; servers and "
        f"{a.clients} load-generator processes share these cores. Machine {bg:.0f}% busy before the run. "
        f"Total run time {total:.0f}s"
        + (" (--quick: smaller loads)" if a.quick else "") + ".",
        "Servers: " + "; ".join(f"{s.label}: {s.storage_note}" for s in servers) + ".",
        "The baselines store nothing while ours stores every message before broadcasting it: "
        "this favours the baselines.",
        f"Loads: fan-out {a.fanout_sockets} sockets in one conversation, one sender; small chats "
        f"{2 * a.small_convs} sockets in {a.small_convs} two-person conversations, all sending; idle "
        f"{a.idle_sockets} sockets ({a.idle_per_user} per user) in {a.idle_sockets // a.idle_per_user // a.idle_group} "
        f"conversations of {a.idle_group}; history {a.history_messages} messages "
        f"in one conversation (our server only: the baselines have no REST history).",
        "CPU is % of one core (server / sum of clients (each client)); a single-threaded server tops out near 100%.",
    ]
    print(render_table(results, a, servers, notes), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": {k: v for k, v in vars(a).items() if isinstance(v, (int, float, str, list, type(None)))},
                       "results": results}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
