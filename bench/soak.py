"""Soak: does the server's memory stay flat under steady churn?

    python -m bench.soak                          # 30 minutes, embedded database
    python -m bench.soak --minutes 10 --ferretdb  # FerretDB (the test suite's binary)
    python -m bench.soak --mongodb-uri mongodb://127.0.0.1:27017
    python -m bench.soak --minutes 10 --tracemalloc   # and the allocation sites that grew

A bounded population (default 1,000 users in 10 tenants, 100 conversations of 10) visits the
server in turn, ``--rate`` visits a second: connect, join, send, react, disconnect. Every
``--sample-secs`` the server's RSS and its /healthz figures are printed. Verdict: RSS at the
end of the run minus RSS just after warm-up (the first ``--warmup`` of the run), each the
median of a few samples, must stay under ``--max-growth-mib``; the exit code is 1 if not
(2 if the run itself failed). See bench/README.md ("Soak").
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from types import SimpleNamespace

if __package__ in (None, ""):  # python bench/soak.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "bench"  # noqa: A001

from bench.common import REPO_ROOT, make_token, percentiles, raise_nofile  # noqa: E402
from bench.ferret import Ferret, find_binary  # noqa: E402
from bench.loadgen.httpclient import KeepAliveHTTP  # noqa: E402
from bench.loadgen.pool import ClientPool, lat_from  # noqa: E402
from bench.servers import Ours, ServerFailed  # noqa: E402

MIB = 2**20
CONVERSATIONS_PATH = "/api/notifications/chat/conversations/"
# bench.servers.Ours raises these for throughput runs; the soak keeps the defaults, so that the
# rate limiter's per-user state is part of what is measured.
ABUSE_LIMIT_OVERRIDES = ("RATE_LIMIT_PER_SEC", "RATE_LIMIT_BURST", "FLOOD_CLOSE_AFTER", "MAX_CONNECTIONS_PER_USER")
# Frames kept per traceback with --tracemalloc and no number.
TRACEMALLOC_FRAMES = 16
TRACEBACK_LINES = 20  # of a traceback printed: the innermost frames, two lines each
TRACED_RATE = 5.0  # visits/s by default with --tracemalloc: tracing makes the server several times slower
# Past these shares of the visits due, the run did not do the churn it was asked for.
FAILED_VISITS_ALLOWED = 0.01
SKIPPED_VISITS_ALLOWED = 0.10


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="length of the churn (default 30)")
    ap.add_argument("--rate", type=float, help=f"visits started per second (default 25; {TRACED_RATE:g} with --tracemalloc)")
    ap.add_argument("--users", type=int, default=1000, help="users in all, split evenly over the tenants (default 1000)")
    ap.add_argument("--tenants", type=int, default=10, help="tenants (default 10)")
    ap.add_argument("--conversations", type=int, default=100, help="conversations in all; a user is in one (default 100)")
    ap.add_argument("--sample-secs", type=float, default=10.0, help="seconds between two RSS samples (default 10)")
    ap.add_argument("--warmup", type=float, default=0.2, help="share of the run before the baseline (default 0.2)")
    ap.add_argument("--max-growth-mib", type=float, default=5.0, help="largest RSS growth after warm-up that passes (default 5)")
    db = ap.add_mutually_exclusive_group()
    db.add_argument("--mongodb-uri", default=os.environ.get("BENCH_MONGODB_URI"), help="run the server on this MongoDB")
    db.add_argument("--ferretdb", action="store_true", help="run the server on a FerretDB of its own ($FERRETDB_BIN or ~/.cache/chat-ferretdb/ferretdb)")
    ap.add_argument("--rotate-secs", type=float, default=120.0,
                    help="delete and re-create each conversation this often, staggered, so that stored data stays bounded "
                         "(default 120); 0: never, and then the embedded database grows by every message, by design")
    ap.add_argument("--tracemalloc", type=int, nargs="?", const=TRACEMALLOC_FRAMES, default=0, metavar="FRAMES",
                    help=f"trace the server's allocations (FRAMES per traceback, default {TRACEMALLOC_FRAMES}) and print the sites "
                         "that grew between warm-up and the end")
    ap.add_argument("--top", type=int, default=15, help="allocation sites printed with --tracemalloc (default 15)")
    ap.add_argument("--clients", type=int, default=1, help="load-generator processes (default 1)")
    ap.add_argument("--concurrency", type=int, default=16,
                    help="visits open at once per client process, at most (default 16): when the server (or the machine) "
                         "stalls, visits due are skipped rather than piled onto it, so a stall does not raise its peak memory")
    ap.add_argument("--quiesce-secs", type=float, default=90.0,
                    help="after the churn, wait up to this long for every actor to retire, then sample once more (default 90)")
    ap.add_argument("--ours-dir", help="checkout of our server to run (default: this repository)")
    ap.add_argument("--logdir", help="where the server's log and snapshots go (default: a temp dir)")
    a = ap.parse_args(argv)
    if a.users % a.tenants or a.conversations % a.tenants or (a.users // a.tenants) < (a.conversations // a.tenants) * 2:
        ap.error("users and conversations must split evenly over the tenants, with at least two users per conversation")
    if a.rate is None:
        a.rate = TRACED_RATE if a.tracemalloc else 25.0
    if not 0 < a.warmup < 0.9 or a.rate <= 0 or a.minutes <= 0 or a.sample_secs <= 0:
        ap.error("--warmup must be in (0, 0.9); --rate, --minutes and --sample-secs positive")
    if a.ferretdb and find_binary() is None:
        ap.error("--ferretdb: no FerretDB binary (build it with .ci/build-ferretdb.sh or set FERRETDB_BIN)")
    return a


class SoakServer(Ours):
    """Our server with its default abuse limits, and tracing when asked."""

    start_timeout = 120.0  # tracing every allocation makes imports several times slower

    def __init__(self, opts, logdir: str) -> None:
        super().__init__(opts, logdir)
        self.snapshot_dir = os.path.join(logdir, "tracemalloc")

    def command(self, port):
        argv, env = super().command(port)
        for name in ABUSE_LIMIT_OVERRIDES:
            env.pop(name, None)
        if self.opts.tracemalloc:
            os.makedirs(self.snapshot_dir, exist_ok=True)
            env.update(PYTHONTRACEMALLOC=str(self.opts.tracemalloc), TRACEMALLOC_SNAPSHOT_DIR=self.snapshot_dir)
        return argv, env

    def snapshot(self, timeout: float = 300.0) -> str:
        """Ask for a tracemalloc snapshot (SIGUSR1) and wait until it is written."""
        before = set(os.listdir(self.snapshot_dir))
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = [n for n in os.listdir(self.snapshot_dir) if n.endswith(".tracemalloc") and n not in before]
            if new:
                return os.path.join(self.snapshot_dir, new[0])
            if not self.alive():
                break
            time.sleep(0.2)
        raise ServerFailed(f"no tracemalloc snapshot within {timeout:.0f}s; see {self.log_path}")


@dataclass
class Population:
    """Who visits: users of each tenant, each in one conversation of that tenant."""

    users_per_tenant: int
    conversations_per_tenant: int
    tenants: list[str]
    ids: dict = field(default_factory=dict)  # (tenant, group) -> conversation id
    born: dict = field(default_factory=dict)  # (tenant, group) -> when created (monotonic)

    def members(self, group: int) -> list[str]:
        return [f"u{n}" for n in range(group, self.users_per_tenant, self.conversations_per_tenant)]

    def visits(self) -> list[tuple[str, str, str]]:
        """(user, tenant, conversation id), tenants interleaved so consecutive visits spread out."""
        return [(f"u{n}", tenant, self.ids[(tenant, n % self.conversations_per_tenant)])
                for n in range(self.users_per_tenant) for tenant in self.tenants]

    def create(self, server: SoakServer, keys: list[tuple[str, int]]) -> None:
        for tenant in {t for t, _ in keys}:
            groups = [g for t, g in keys if t == tenant]
            ids = server.prepare([self.members(g) for g in groups], "soak", tenant)
            now = time.monotonic()
            for group, cid in zip(groups, ids):
                if cid is None:
                    raise ServerFailed(f"conversation {tenant}/{group} was not created")
                self.ids[(tenant, group)] = cid
                self.born[(tenant, group)] = now

    def rotate(self, server: SoakServer, count: int) -> None:
        """Delete the ``count`` oldest conversations (their messages, reactions and
        participants go with them) and create them again, same members, new ids."""
        oldest = sorted(self.born, key=self.born.get)[:count]
        asyncio.run(self._delete(server.port, oldest))
        self.create(server, oldest)

    async def _delete(self, port: int, keys: list[tuple[str, int]]) -> None:
        http = KeepAliveHTTP("127.0.0.1", port)
        try:
            for tenant, group in keys:
                owner = self.members(group)[0]
                status, body = await http.request("DELETE", f"{CONVERSATIONS_PATH}{self.ids[(tenant, group)]}/",
                                                  {"Authorization": f"Bearer {make_token(owner, tenant)}"})
                if status not in (200, 204):
                    raise ServerFailed(f"delete conversation: {status} {body[:300]!r}")
        finally:
            http.close()


@dataclass
class Sample:
    secs: float
    cycles: int
    rate: float
    p50_ms: float | None
    p99_ms: float | None
    failed: int
    server_cpu: float
    rss: int
    health: dict


def mib(n: float) -> str:
    return f"{n / MIB:,.1f}"


HEADER = (f"{'time':>7} {'cycles':>8} {'cyc/s':>6} {'p50 ms':>6} {'p99 ms':>7} {'failed':>6} {'srv CPU':>7} {'RSS MiB':>8} "
          f"{'sockets':>7} {'actors':>6} {'convs':>5} {'tenants':>7}")


def row(s: Sample) -> str:
    h = s.health
    p50, p99 = ("-", "-") if s.p99_ms is None else (f"{s.p50_ms:.0f}", f"{s.p99_ms:.0f}")
    return (f"{int(s.secs) // 60:4d}:{int(s.secs) % 60:02d} {s.cycles:8,d} {s.rate:6.1f} {p50:>6} {p99:>7} {s.failed:6d} "
            f"{s.server_cpu:6.0f}% {mib(s.rss):>8} {h.get('sockets', '-'):>7} {h.get('actors', '-'):>6} "
            f"{h.get('live_conversations', '-'):>5} {h.get('live_tenants', '-'):>7}")


@dataclass
class Growth:
    """RSS after warm-up and at the end, each the median of ``window`` samples, and what lies between."""

    window: int
    since_secs: float
    base: float
    end: float
    peak: int
    trend_per_hour: float  # least squares over every sample after warm-up

    @property
    def growth(self) -> float:
        return self.end - self.base

    def describe(self, limit_mib: float) -> str:
        return (f"warm-up RSS {mib(self.base)} MiB (median of {self.window} samples from {self.since_secs / 60:.1f} min), "
                f"end RSS {mib(self.end)} MiB (median of the last {self.window}), growth {self.growth / MIB:+.2f} MiB "
                f"(limit {limit_mib:g}); peak after warm-up {mib(self.peak)} MiB; trend {self.trend_per_hour / MIB:+.2f} MiB/hour")


def growth_after_warmup(samples: list[Sample], warm_at: float) -> Growth | None:
    post = [s for s in samples if s.secs >= warm_at]
    if len(post) < 4:
        return None
    window = max(2, len(post) // 20)
    xs, ys = [s.secs for s in post], [s.rss for s in post]
    return Growth(window, post[0].secs, statistics.median(ys[:window]), statistics.median(ys[-window:]), max(ys),
                  statistics.linear_regression(xs, ys).slope * 3600)


def print_growth(warm_path: str, end_path: str, top: int) -> int:
    """Print the allocation sites that grew most between the two snapshots; returns the growth
    of all traced memory, in bytes."""
    ignore = [tracemalloc.Filter(False, pattern) for pattern in
              ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>", "<unknown>", tracemalloc.__file__)]
    warm = tracemalloc.Snapshot.load(warm_path).filter_traces(ignore)
    end = tracemalloc.Snapshot.load(end_path).filter_traces(ignore)
    total = sum(s.size for s in end.statistics("filename")) - sum(s.size for s in warm.statistics("filename"))
    print(f"\n## tracemalloc: traced memory {total / MIB:+.2f} MiB between warm-up and the end; sites that grew most", flush=True)
    for stat in sorted(end.compare_to(warm, "lineno"), key=lambda s: s.size_diff, reverse=True)[:top]:
        frame = stat.traceback[0]
        print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {short(frame.filename)}:{frame.lineno}")
    print("\n## the three tracebacks that grew most (most recent call last)")
    for stat in sorted(end.compare_to(warm, "traceback"), key=lambda s: s.size_diff, reverse=True)[:3]:
        print(f"  {stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks:")
        for line in stat.traceback.format(most_recent_first=False)[-TRACEBACK_LINES:]:
            print("  " + line)
    print(f"\n(snapshots: {warm_path} and {end_path}; tracemalloc.Snapshot.load() reads them)", flush=True)
    return total


def short(path: str) -> str:
    for prefix in (REPO_ROOT + os.sep, *(p + os.sep for p in sys.path if p.endswith("site-packages"))):
        if path.startswith(prefix):
            return path[len(prefix):]
    return path


def run_slice(pool: ClientPool, server: SoakServer, visits: list, a, secs: float) -> tuple[dict, int, dict]:
    """One slice of churn on every client process; RSS and /healthz are read halfway through,
    while visits are open."""
    for w in range(pool.n):
        pool.send(w, {"cmd": "churn", "host": "127.0.0.1", "port": server.port, "visits": visits[w::pool.n],
                      "rate": a.rate / pool.n, "duration": secs, "concurrency": a.concurrency, "timeout": 30.0})
    time.sleep(secs / 2)
    rss, health = server.rss(), server.health()
    answers = [pool.recv(w, timeout=secs + 120) for w in range(pool.n)]
    lat = lat_from(answers)
    out = {k: sum(r[k] for r in answers) for k in ("started", "ok", "failed", "not_started", "others")}
    out["p50_ms"], out["p99_ms"] = percentiles(lat, (50, 99)).values() if lat else (None, None)
    out["failures"] = [f for r in answers for f in r["failures"]]
    return out, rss, health


def quiesce(server: SoakServer, limit: float) -> tuple[float | None, dict]:
    """Seconds until no actor and no socket is left (None if not within ``limit``)."""
    t0 = time.monotonic()
    while True:
        health = server.health()
        if health["actors"] == 0 and health["sockets"] == 0:
            return time.monotonic() - t0, health
        if time.monotonic() - t0 > limit:
            return None, health
        time.sleep(1.0)


@dataclass
class Churned:
    samples: list[Sample] = field(default_factory=list)
    totals: dict = field(default_factory=lambda: dict.fromkeys(("started", "ok", "failed", "not_started", "others"), 0))
    failures: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)  # with --tracemalloc: after warm-up, at the end

    def share(self, what: str) -> float:
        """Visits ``failed`` or ``not_started``, of those due."""
        t = self.totals
        return t[what] / max(1, t["started"] + t["not_started"])


def churn(a, server: SoakServer, pop: Population, log) -> Churned:
    """Visits in slices of ``--sample-secs``, a sample after each; rotation between slices."""
    run = Churned()
    duration = a.minutes * 60
    pool = ClientPool(a.clients)
    try:
        t0 = rotated_at = time.monotonic()
        owed = 0.0  # conversations due for rotation
        while (elapsed := time.monotonic() - t0) < duration - 0.5:
            if a.rotate_secs:
                now = time.monotonic()
                owed += a.conversations * (now - rotated_at) / a.rotate_secs
                rotated_at = now
                if int(owed):
                    pop.rotate(server, int(owed))
                    owed -= int(owed)
            started, cpu0 = time.monotonic(), server.cpu_seconds()  # a rotation or a snapshot is not the churn's CPU
            r, rss, health = run_slice(pool, server, pop.visits(), a, min(a.sample_secs, duration - elapsed))
            ended, cpu1 = time.monotonic(), server.cpu_seconds()
            for k in run.totals:
                run.totals[k] += r[k]
            run.failures.extend(r["failures"][: max(0, 5 - len(run.failures))])
            sample = Sample(ended - t0, run.totals["ok"], r["ok"] / (ended - started), r["p50_ms"], r["p99_ms"],
                            run.totals["failed"], (cpu1 - cpu0) / (ended - started) * 100, rss, health)
            run.samples.append(sample)
            log(row(sample))
            if not server.alive():
                raise ServerFailed(f"the server died; log tail:\n{server.log_tail()}")
            if a.tracemalloc and not run.snapshots and sample.secs >= a.warmup * duration:
                run.snapshots.append(server.snapshot())
                log(f"  (warm-up tracemalloc snapshot: {run.snapshots[0]})")
        if a.tracemalloc:
            run.snapshots.append(server.snapshot())
    finally:
        pool.close()
    return run


def soak(a, server: SoakServer, db_label: str, log) -> int:
    tenants = [f"soak-t{n}" for n in range(a.tenants)]
    pop = Population(a.users // a.tenants, a.conversations // a.tenants, tenants)
    pop.create(server, [(t, g) for t in tenants for g in range(pop.conversations_per_tenant)])
    if a.rotate_secs:
        kept = (f"conversations deleted and re-created every {a.rotate_secs:g}s, staggered "
                f"(about {a.rate * a.rotate_secs / 2:,.0f} messages stored at any time)")
    else:
        kept = "every message kept"
    log(f"# soak: {a.minutes:g} min on {db_label}; {a.users:,} users in {a.tenants} tenants, {a.conversations} conversations of "
        f"{len(pop.members(0))}; {a.rate:g} visits/s (connect, join, send, react, disconnect; 1 in 10 dropped without a close); "
        f"{kept}; warm-up {a.warmup:.0%}; server log {server.log_path}")
    if not a.mongodb_uri and not a.ferretdb and not a.rotate_secs:
        log("  note: on the embedded database every stored message stays in the server's memory: RSS grows with them by design")
    if a.tracemalloc:
        log(f"  tracemalloc on ({a.tracemalloc} frames): the server is several times slower, and each snapshot leaves RSS "
            "higher, so the verdict is on traced memory")
    log(HEADER)
    run = churn(a, server, pop, log)
    settled_in, health = quiesce(server, a.quiesce_secs)
    rss_after = server.rss()
    t = run.totals
    log(f"\ncycles: {t['ok']:,} completed, {t['failed']:,} failed, {t['not_started']:,} not started "
        f"(more than {a.concurrency} open per client process), {t['others']:,} events from other users received")
    if run.failures:
        log("  failures, e.g.: " + "; ".join(run.failures[:3]))
    if settled_in is None:
        log(f"after the churn: still {health['actors']} actors and {health['sockets']} sockets after {a.quiesce_secs:.0f}s; "
            f"RSS {mib(rss_after)} MiB")
    else:
        log(f"after the churn: every actor retired and every socket closed within {settled_in:.0f}s; RSS then {mib(rss_after)} MiB")
    g = growth_after_warmup(run.samples, a.warmup * a.minutes * 60)
    if g is not None:
        log(g.describe(a.max_growth_mib))
    traced = print_growth(*run.snapshots, a.top) if len(run.snapshots) == 2 else None
    if run.share("failed") > FAILED_VISITS_ALLOWED or run.share("not_started") > SKIPPED_VISITS_ALLOWED:
        log(f"\nVERDICT: none: {run.share('failed'):.1%} of visits failed and {run.share('not_started'):.1%} were not started "
            f"(limits {FAILED_VISITS_ALLOWED:.0%} and {SKIPPED_VISITS_ALLOWED:.0%}): the churn asked for did not run; lower --rate")
        return 2
    if g is None:
        log("\nVERDICT: none: fewer than 4 samples after warm-up; run longer or sample more often")
        return 2
    what, growth = ("traced memory", traced) if traced is not None else ("RSS", g.growth)
    ok = growth < a.max_growth_mib * MIB
    log(f"\nVERDICT: {'PASS' if ok else 'FAIL'}: {what} growth after warm-up {growth / MIB:+.2f} MiB, limit {a.max_growth_mib:g} MiB")
    if traced is None:  # a row for bench/README.md; with tracing, RSS is not the server's own
        log(f"| {dt.datetime.now(dt.timezone.utc):%Y-%m-%d} | {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
            f"{platform.python_implementation()} {platform.python_version()} | {a.minutes:g} min, {t['ok']:,} cycles | {db_label} | "
            f"{mib(g.base)} MiB | {mib(g.end)} MiB | {g.growth / MIB:+.2f} MiB |")
    return 0 if ok else 1


def main(argv=None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops the run with its clean-up
    raise_nofile(65536)
    logdir = a.logdir or tempfile.mkdtemp(prefix="chat-soak-")
    os.makedirs(logdir, exist_ok=True)
    log = lambda s: print(s, flush=True)  # noqa: E731
    ferret = None
    if a.ferretdb:
        ferret = Ferret(find_binary(), os.path.join(logdir, "ferretdb.log"))
        db_label = "FerretDB 1.24 + SQLite"
    elif a.mongodb_uri:
        db_label = "MongoDB at --mongodb-uri"
    else:
        db_label = "embedded mongomock"
    opts = SimpleNamespace(mongodb_uri=a.mongodb_uri, ours_dir=a.ours_dir, history_db="embedded", prepare_secs=120.0,
                           tracemalloc=a.tracemalloc)
    server = SoakServer(opts, logdir)
    try:
        if ferret is not None:
            opts.mongodb_uri = ferret.start()
        server.start("soak")
        return soak(a, server, db_label, log)
    except ServerFailed as error:
        log(f"ERROR: {error}")
        return 2
    finally:
        server.stop()
        if ferret is not None:
            ferret.stop()


if __name__ == "__main__":
    sys.exit(main())
