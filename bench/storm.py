"""Reconnect storm: every socket of a tenant comes back at once and resumes (issue 12).

    python -m bench.storm                            # 1,000 and 10,000 sockets, ours and bare Tornado, twice each
    python -m bench.storm --sizes 1000 --repeat 1    # one short round

One tenant, one socket per user, ``--group`` (20) users per conversation. For each size, round
and server, on one server process: the calm phase connects every socket a few at a time
(``--calm-in-flight``) and joins its conversation; then every socket closes and, for ours, the
run waits until the server has let go of everything (every actor retired, presence offline), as
after a deploy. Then the storm: every socket connects, authenticates and joins its conversation
again with ``since_seq`` = the ``last_seq`` it saw, ``--in-flight`` sockets under way at once,
until every socket got ``conversation_joined``. Both servers run in the same round, one after the
other (their order alternates between rounds), so their ratio is what counts on a shared machine.

Figures: joined/s (sockets / time until the last ``conversation_joined``), connect and join
latencies, server CPU, presence frames each socket received during the storm, sockets closed
with 4408 (slow reader), and the server's RSS after the storm against its RSS with the same
sockets connected calmly. See bench/README.md ("Reconnect storm").
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import psutil

if __package__ in (None, ""):  # python bench/storm.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "bench"  # noqa: A001

from bench.common import percentiles, raise_nofile  # noqa: E402
from bench.ferret import Ferret, find_binary  # noqa: E402
from bench.loadgen.pool import ClientPool  # noqa: E402
from bench.run import wait_quiet  # noqa: E402
from bench.scenarios import (  # noqa: E402
    Ctx,
    bottleneck,
    close_sockets,
    connect,
    cpu_str,
    prepare,
    settle,
)
from bench.servers import ServerFailed, make_servers  # noqa: E402
from bench.soak import quiesce  # noqa: E402

MIB = 2**20
SLOW_READER = "4408"
PRESENCE_EVENTS = ("presence_update", "presence_batch")
TARGET_RATIO = 0.5  # ours / bare Tornado, joined/s (issue 12)
TARGET_RSS_RATIO = 1.10  # RSS after the storm / RSS with the same sockets connected calmly


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000", help="sockets per storm, comma list (default 1000,10000)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds per size (default 2)")
    ap.add_argument("--servers", default="ours,bare", help="comma list: ours, bare (default both)")
    ap.add_argument("--group", type=int, default=20, help="sockets (users) per conversation (default 20)")
    ap.add_argument("--clients", type=int, default=3, help="load-generator processes (default 3)")
    ap.add_argument("--in-flight", type=int, default=96,
                    help="storm sockets under way at once, in all (default 96: below the listen backlog of 128, "
                         "whose overflow would add the kernel's 1 s SYN retransmits)")
    ap.add_argument("--calm-in-flight", type=int, default=3, help="calm-phase sockets under way at once (default 3)")
    ap.add_argument("--storm-secs", type=float, default=300.0, help="give up on a storm after this long (default 300)")
    ap.add_argument("--quiesce-secs", type=float, default=120.0,
                    help="wait this long at most for our server to retire every actor between the phases (default 120)")
    ap.add_argument("--quiet-wait", type=float, default=10.0,
                    help="before each storm wait up to this long for other processes to leave the CPU (default 10)")
    db = ap.add_mutually_exclusive_group()
    db.add_argument("--mongodb-uri", default=os.environ.get("BENCH_MONGODB_URI"),
                    help="run our server against this MongoDB (default: its embedded database)")
    db.add_argument("--ferretdb", action="store_true",
                    help="run our server on a FerretDB of its own ($FERRETDB_BIN or ~/.cache/chat-ferretdb/ferretdb)")
    ap.add_argument("--ours-dir", help="checkout of our server to run (default: this repository)")
    ap.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for our server (repeatable), e.g. PRESENCE_BATCH_SECS=0.5")
    ap.add_argument("--profile", metavar="DIR",
                    help="record our server during each storm with py-spy (pip install py-spy) into DIR, "
                         "as collapsed stacks (flamegraph.pl or speedscope read them)")
    ap.add_argument("--json", help="also write every figure to this JSON file")
    ap.add_argument("--logdir", help="where server logs go (default: a temp dir)")
    a = ap.parse_args(argv)
    a.sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    a.servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    if any(s not in ("ours", "bare") for s in a.servers):
        ap.error("--servers: ours and/or bare")
    if a.ferretdb and find_binary() is None:
        ap.error("--ferretdb: no FerretDB binary (build it with .ci/build-ferretdb.sh or set FERRETDB_BIN)")
    if any(n < a.group or n % a.group for n in a.sizes):
        ap.error("every size must be a multiple of --group")
    try:
        a.server_env = dict(item.split("=", 1) for item in a.server_env)
    except ValueError:
        ap.error("--server-env takes NAME=VALUE")
    return a


def counters(ctx: Ctx) -> dict:
    """Frames received by type, close codes and errors over all client processes, since they started."""
    out: dict = {"other_types": {}, "close_codes": {}, "errors": {}, "error_samples": []}
    for answer in ctx.pool.call_all({"cmd": "counters"}, timeout=60).values():
        for key in ("other_types", "close_codes", "errors"):
            for k, v in answer[key].items():
                out[key][k] = out[key].get(k, 0) + v
        out["error_samples"] += answer["error_samples"]
    return out


def since(before: dict, after: dict, key: str) -> dict:
    return {k: v - before[key].get(k, 0) for k, v in after[key].items() if v - before[key].get(k, 0)}


def last_seq_seen(ctx: Ctx) -> dict:
    """Conversation id -> the ``last_seq`` its sockets were told at their join."""
    seen: dict = {}
    for answer in ctx.pool.call_all({"cmd": "sent_by_conv"}, timeout=60).values():
        for cid, seq in answer["joined"].items():
            seen[cid] = min(seen.get(cid, seq), seq)
    return seen


def let_go(ctx: Ctx, server, a, log) -> None:
    """Close every socket and wait until the server holds nothing for them (ours: no actor left)."""
    close_sockets(ctx)
    ctx.where.clear()
    ctx.per_worker = []
    if hasattr(server, "health"):
        secs, health = quiesce(server, a.quiesce_secs)
        if secs is None:
            log(f"    still {health['actors']} actors and {health['sockets']} sockets after {a.quiesce_secs:.0f}s")
        else:
            log(f"    every socket closed and every actor retired within {secs:.0f}s")
    settle(ctx, max_secs=10.0)


def rss_settled(ctx: Ctx) -> int:
    """The server's RSS once the work queued by the last phase is done (bounded)."""
    settle(ctx, max_secs=20.0)
    time.sleep(1.0)
    return ctx.server.rss()


@contextlib.contextmanager
def profiled(server, directory: str | None, name: str, log):
    """py-spy samples our server's stacks while the block runs (when ``directory`` is given)."""
    if not directory or server.key != "ours":
        yield
        return
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name + ".txt")
    spy = subprocess.Popen(["py-spy", "record", "-r", "200", "-f", "raw", "-o", path, "-p", str(server.proc.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
        log(f"    profile: {path}")


def one_storm(server, a, n: int, log) -> dict:
    """Calm phase, let go, storm, on a fresh server process; returns the figures."""
    server.start("storm")
    pool = ClientPool(a.clients)
    try:
        ctx = Ctx(server=server, pool=pool, opts=a, log=log)
        users = [f"storm{i}" for i in range(n)]
        groups = [users[i:i + a.group] for i in range(0, n, a.group)]
        convs, groups, _ = prepare(ctx, groups, "storm")
        rss_empty = rss_settled(ctx)
        calm = connect(ctx, [(u, [c]) for g, c in zip(groups, convs) for u in g],
                       concurrency=max(1, a.calm_in_flight // a.clients))
        if calm["joined"] < n:
            raise RuntimeError(f"calm phase: only {calm['joined']}/{n} joined: {calm['samples'][:2]}")
        rss_calm = rss_settled(ctx)
        seen = last_seq_seen(ctx)
        log(f"    calm: {n} sockets joined in {calm['wall']:.1f}s ({calm['join_rate'] or 0:.0f}/s), "
            f"RSS {rss_empty / MIB:.1f} -> {rss_calm / MIB:.1f} MiB")
        let_go(ctx, server, a, log)
        rss_before = ctx.server.rss()
        busy, waited = wait_quiet(a.quiet_wait)
        before = counters(ctx)
        specs = [(u, [c], {str(c): seen[str(c)]}) for g, c in zip(groups, convs) for u in g]
        db_cpu = cpu_seconds(a.db_process)
        with profiled(server, a.profile, f"storm-{n}-{time.strftime('%H%M%S')}", log):
            storm = connect(ctx, specs, concurrency=max(1, a.in_flight // a.clients), max_secs=a.storm_secs)
        db_cpu = cpu_seconds(a.db_process) - db_cpu
        rss_storm = rss_settled(ctx)
        after = counters(ctx)
    finally:
        pool.close()
        alive = server.alive()
        server.stop()
    if not alive:
        raise ServerFailed(f"{server.label} died; log tail:\n{server.log_tail()}")
    frames = since(before, after, "other_types")
    closes = since(before, after, "close_codes")
    cl, jl = percentiles(storm["conn_lat"], (50, 99)), percentiles(storm["join_lat"], (50, 99))
    joined = storm["joined"]
    return {
        "sockets": n, "joined": joined, "secs": storm["wall"], "rate": joined / storm["wall"] if storm["wall"] else 0.0,
        # CPU the server spent per socket: unlike the rate, hardly moved by other processes taking the cores
        "cpu_ms_per_socket": storm["server_cpu"] / 100 * storm["wall"] / max(1, joined) * 1000,
        "connect_ms": (cl[50], cl[99]), "join_ms": (jl[50], jl[99]),
        "cpu": cpu_str(storm) + (f", database {db_cpu / storm['wall'] * 100:.0f}%" if a.db_process and server.key == "ours" else ""),
        "bottleneck": bottleneck(storm["server_cpu"], storm["client_cpu"], os.cpu_count() or 1, busy=storm["machine_busy"]),
        "presence_frames": {k: frames.get(k, 0) for k in PRESENCE_EVENTS},
        "frames_per_socket": sum(frames.get(k, 0) for k in PRESENCE_EVENTS) / n,
        "slow_readers": after["close_codes"].get(SLOW_READER, 0),
        "closes_during_storm": closes,
        "errors": since(before, after, "errors"), "error_samples": after["error_samples"][:3],
        "failed": storm["failed"] + storm["join_failed"], "skipped": storm["skipped"], "fail_samples": storm["samples"][:3],
        "rss_empty": rss_empty, "rss_calm": rss_calm, "rss_before_storm": rss_before, "rss_storm": rss_storm,
        "rss_ratio": rss_storm / rss_calm if rss_calm else None,
        "calm_rate": calm["join_rate"], "machine_busy_before": busy, "quiet_waited": waited,
    }


def cpu_seconds(process) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return times.user + times.system


def ms(pair) -> str:
    return " / ".join("-" if v is None else f"{v:,.0f}" for v in pair)


def render(rows: list[dict], header: list[str]) -> str:
    lines = header + ["", "| sockets | round | server | joined | secs | joined/s | ours/bare | server CPU ms per socket | "
                          "ours/bare | connect p50/p99 ms | join p50/p99 ms | CPU server / clients | presence frames per socket | "
                          "4408 | RSS calm -> after storm MiB | storm/calm |",
                      "|" + "---|" * 16]
    for r in rows:
        f = r.get("figures")
        if f is None:
            lines.append(f"| {r['size']:,} | {r['round']} | {r['server']} | error: {r['error'][:80]} |" + " |" * 12)
            continue
        frames = ", ".join(f"{k.split('_')[1]} {v / f['sockets']:.1f}" for k, v in f["presence_frames"].items() if v) or "0"
        lines.append(
            f"| {f['sockets']:,} | {r['round']} | {r['server']} | {f['joined']:,} | {f['secs']:.1f} | {f['rate']:,.0f} | "
            f"{r.get('ratio', '')} | {f['cpu_ms_per_socket']:.2f} | {r.get('cpu_ratio', '')} | {ms(f['connect_ms'])} | {ms(f['join_ms'])} | {f['cpu']} | {frames} | "
            f"{f['slow_readers']} | {f['rss_calm'] / MIB:,.1f} -> {f['rss_storm'] / MIB:,.1f} | {f['rss_ratio']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    a = parse_args(argv)
    soft, hard = raise_nofile(65536)
    logdir = a.logdir or tempfile.mkdtemp(prefix="chat-storm-")
    os.makedirs(logdir, exist_ok=True)
    ferret = Ferret(find_binary(), os.path.join(logdir, "ferretdb.log")) if a.ferretdb else None
    if ferret is not None:
        a.mongodb_uri = ferret.start()
        a.db_label = "FerretDB 1.24 + SQLite"
        a.db_process = psutil.Process(ferret.pid())
    else:
        a.db_label = "MongoDB at --mongodb-uri" if a.mongodb_uri else "its embedded database"
        a.db_process = None
    try:
        return storms(a, logdir, soft, hard)
    finally:
        if ferret is not None:
            ferret.stop()


def storms(a, logdir: str, soft: int, hard: int) -> int:
    opts = SimpleNamespace(mongodb_uri=a.mongodb_uri, ours_dir=a.ours_dir, history_db="embedded", prepare_secs=120.0,
                           server_env=a.server_env)
    servers = {s.key: s for s in make_servers(SimpleNamespace(**vars(opts), servers=a.servers), logdir)}
    log = lambda s: print(s, flush=True)  # noqa: E731
    need = max(a.sizes) + 200
    log(f"# reconnect storm: {os.cpu_count()} cores, {a.clients} client processes, RLIMIT_NOFILE {soft}/{hard}, "
        f"logs in {logdir}")
    if soft < need:
        log(f"  warning: RLIMIT_NOFILE {soft} < {need}: the largest storm will run out of descriptors")
    rows = []
    for n in a.sizes:
        for rnd in range(1, a.repeat + 1):
            order = a.servers if rnd % 2 else a.servers[::-1]
            results = {}
            for key in order:
                server = servers[key]
                log(f"## {n:,} sockets, round {rnd}, {server.label}")
                row = {"size": n, "round": rnd, "server": key}
                try:
                    row["figures"] = f = one_storm(server, a, n, log)
                    results[key] = f
                    log(f"    storm: {f['joined']:,}/{n:,} joined in {f['secs']:.1f}s = {f['rate']:,.0f}/s, server CPU "
                        f"{f['cpu_ms_per_socket']:.2f} ms per socket; connect "
                        f"{ms(f['connect_ms'])} ms, join {ms(f['join_ms'])} ms; cpu srv/cli {f['cpu']}; presence frames "
                        f"{f['presence_frames']}; 4408: {f['slow_readers']}; RSS calm {f['rss_calm'] / MIB:.1f} MiB, "
                        f"after storm {f['rss_storm'] / MIB:.1f} MiB ({f['rss_ratio']:.2f}x); {f['bottleneck']}")
                    if f["failed"] or f["skipped"] or f["errors"]:
                        log(f"    failures {f['failed']}, skipped {f['skipped']}, errors {f['errors']}: "
                            f"{f['fail_samples'] + f['error_samples']}")
                except (ServerFailed, Exception) as error:  # noqa: BLE001
                    log(f"    ERROR: {type(error).__name__}: {error}")
                    row["error"] = f"{type(error).__name__}: {error}"
                rows.append(row)
            if "ours" in results and "bare" in results and results["bare"]["rate"]:
                ours, bare = results["ours"], results["bare"]
                for row in rows[-len(order):]:
                    if row["server"] == "ours":
                        row["ratio"] = f"{ours['rate'] / bare['rate']:.2f}x"
                        row["cpu_ratio"] = f"{ours['cpu_ms_per_socket'] / bare['cpu_ms_per_socket']:.2f}x"
    header = [
        f"Reconnect storm, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} cores, "
        f"{platform.system()} {platform.machine()}, {platform.python_implementation()} {platform.python_version()}; "
        f"{a.clients} load-generator processes on the same cores; one tenant, {a.group} sockets per conversation, "
        f"one socket per user; storm {a.in_flight} sockets in flight, each connect + JWT + join with since_seq; "
        f"our server on {a.db_label}"
        + (f", with {a.server_env}" if a.server_env else "") + ".",
        f"Targets: ours >= {TARGET_RATIO}x bare Tornado's joined/s, no 4408, RSS after the storm <= "
        f"{TARGET_RSS_RATIO:.2f}x RSS with the same sockets connected calmly. The server's CPU per socket is the "
        "steadier comparison when other processes share the cores: the rate moves with them.",
    ]
    print(render(rows, header), flush=True)
    if a.json:
        with open(a.json, "w") as out:
            json.dump({"args": vars(a), "rows": rows}, out, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
