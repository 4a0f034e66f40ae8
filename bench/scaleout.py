"""Scale-out: one node against two at the same offered load, in one run on one machine.

    python -m bench.scaleout                         # FerretDB (the test suite's binary)
    python -m bench.scaleout --mongodb-uri URI       # a real MongoDB
    python -m bench.scaleout --rate 150 --secs 10 --json /tmp/scaleout.json

Three configurations, each on a fresh database (and a fresh Redis when it has one):

- ``single``: one process without ``REDIS_URL``, the server as it ran before it could scale out;
- ``one node``: one process with ``REDIS_URL``: what being a cluster costs with nobody to share with;
- ``two nodes``: two processes; every conversation has members on both.

The same load for each: ``--conversations`` groups of ``--members`` users, one socket each,
every socket sending in turn so that ``--rate`` messages a second go out in all (after a
``--warmup-secs`` of it, not measured: each conversation's first subscription reads what it
may have missed, once); in two nodes
a group's members alternate between the nodes, and client process 0 holds the sockets of node
0, process 1 those of node 1. Figures: deliveries a second, CPU per delivery (the nodes and
Redis; the database on its own line), end-to-end p50/p99, missing deliveries. Two nodes also
measure what a hop adds (senders on a conversation's owner: receivers there and on the other
node; then senders on the other node, whose writes are forwarded) and the takeover time: a
client of the surviving node sends to a conversation of the other, retrying with its
``client_msg_id``, while that node is killed with SIGKILL.

A 2-core machine runs the clients, the nodes, Redis and the database at once: two nodes cannot
be faster here, and are not meant to be. What this measures is the price of the cluster per
delivery and per hop, and that nothing is lost. See docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from types import SimpleNamespace

import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import TENANT, free_port, percentiles, raise_nofile, wait_port, ws_path  # noqa: E402
from bench.ferret import Ferret, find_binary  # noqa: E402
from bench.loadgen.pool import ClientPool, lat_from  # noqa: E402
from bench.servers import Ours, ServerFailed  # noqa: E402
from cluster import conversation_key  # noqa: E402
from cluster.nodes import rendezvous  # noqa: E402

TAKEOVER_LIMIT_SECS = 30.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=100.0, help="messages a second, all senders together (default 100)")
    p.add_argument("--secs", type=float, default=10.0, help="length of the measured load phase (default 10)")
    p.add_argument("--warmup-secs", type=float, default=3.0, help="the same load first, not measured (default 3)")
    p.add_argument("--conversations", type=int, default=50, help="conversations (default 50)")
    p.add_argument("--members", type=int, default=4, help="members of each, one socket each (default 4)")
    p.add_argument("--hop-rate", type=float, default=40.0, help="messages a second in each hop phase (default 40)")
    p.add_argument("--mongodb-uri", default=os.environ.get("BENCH_MONGODB_URI"), help="a MongoDB instead of FerretDB")
    p.add_argument("--redis-server", default=shutil.which("redis-server") or "/usr/bin/redis-server")
    p.add_argument("--ours-dir", default=None, help="another checkout of the server to measure")
    p.add_argument("--logdir", default=None)
    p.add_argument("--json", default=None, help="also write every figure here")
    return p.parse_args(argv)


class RedisProcess:
    def __init__(self, binary: str, logdir: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=open(os.path.join(logdir, f"redis-{self.port}.log"), "wb"),
            stderr=subprocess.STDOUT,
        )
        if not wait_port(self.port, 15, self.proc):
            raise ServerFailed("redis-server did not start")
        self.ps = psutil.Process(self.proc.pid)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def counters(node: Ours) -> dict[str, float]:
    """The node's unlabelled counters from /metrics, and its store-latency histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{node.port}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if (sample.name.endswith("_total") and not sample.labels) or sample.name == "chat_store_batch_seconds_count"
    } | {
        f"stores within {sample.labels['le']} s": sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "chat_store_batch_seconds_bucket" and sample.labels["le"] in ("0.05", "0.1", "0.25")
    }


def health(node: Ours) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.port}/healthz", timeout=30) as response:
        return json.loads(response.read())


def wait_for_nodes(nodes: list[Ours], count: int) -> list[str]:
    """The nodes' ids, once each sees ``count`` live nodes."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen = [health(node)["node"] for node in nodes]
        if all(len(s["live_nodes"]) == count for s in seen):
            return [s["id"] for s in seen]
        time.sleep(0.1)
    raise ServerFailed("the nodes did not see each other")


class Configuration:
    """One of the three set-ups, started on a fresh database (and Redis)."""

    def __init__(self, name: str, node_count: int, with_redis: bool, a, uri: str, database: psutil.Process | None, logdir: str) -> None:
        self.name, self.node_count = name, node_count
        self.database = database
        self.redis = RedisProcess(a.redis_server, logdir) if with_redis else None
        env = {"MONGODB_DB": f"bench_scaleout_{int(time.time())}_{name.replace(' ', '_')}"}
        if self.redis is not None:
            env["REDIS_URL"] = self.redis.url
        opts = SimpleNamespace(mongodb_uri=uri, ours_dir=a.ours_dir, history_db="embedded", prepare_secs=120.0, server_env=env)
        self.nodes = [Ours(opts, logdir) for _ in range(node_count)]
        for index, node in enumerate(self.nodes):
            node.start(f"{name.replace(' ', '-')}-{index}")
        self.node_ids = wait_for_nodes(self.nodes, node_count) if with_redis else []

    def cpu_seconds(self) -> float:
        """The nodes and Redis: what the chat service itself spends."""
        return sum(node.cpu_seconds() for node in self.nodes) + self.redis_cpu_seconds()

    def redis_cpu_seconds(self) -> float:
        return self.redis.cpu_seconds() if self.redis else 0.0

    def database_cpu_seconds(self) -> float | None:
        if self.database is None:
            return None
        times = self.database.cpu_times()
        return times.user + times.system

    def owner(self, conversation_id: str) -> int:
        return self.node_ids.index(rendezvous(self.node_ids, conversation_key(TENANT, conversation_id))) if self.node_ids else 0

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.redis is not None:
            self.redis.stop()


def connect(pool: ClientPool, config: Configuration, conversations: list[str], members: list[list[str]]) -> list[list[tuple]]:
    """Every member's socket: client process ``i`` holds node ``i``'s sockets. Answers, for each
    client process, its sockets as ``(socket index, conversation, member index)``."""
    held: list[list[tuple]] = [[] for _ in range(pool.n)]
    specs: list[list[dict]] = [[] for _ in range(pool.n)]
    for conversation_id, users in zip(conversations, members):
        for index, user in enumerate(users):
            worker = index % pool.n
            held[worker].append((len(specs[worker]), conversation_id, index))
            specs[worker].append({"path": ws_path(user), "user": user, "convs": [conversation_id]})
    commands = {}
    for worker in range(pool.n):
        node = config.nodes[worker % config.node_count]
        commands[worker] = {"cmd": "connect", "host": "127.0.0.1", "port": node.port, "socks": specs[worker], "concurrency": 50}
    for worker, answer in pool.call(commands).items():
        if answer["failed"] or answer["join_failed"]:
            raise ServerFailed(f"client {worker}: {answer['fail_samples'] or answer['join_fail_samples']}")
    return held


def phase(pool: ClientPool, config: Configuration, number: int, senders: list[list[tuple]], rate_each: float, secs: float) -> dict:
    """An open-loop phase: ``senders[w]`` of client process ``w`` each send ``rate_each`` a second."""
    cpu0, db0, redis0 = config.cpu_seconds(), config.database_cpu_seconds(), config.redis_cpu_seconds()
    before = [counters(node) for node in config.nodes]
    start_at = time.time() + 0.5
    commands = {
        w: {"cmd": "phase", "phase": number, "mode": "open", "rate": rate_each, "senders": [(i, c) for i, c, _ in senders[w]],
            "duration": secs, "start_at": start_at, "drain": 2.0}
        for w in range(pool.n)
    }
    answers = pool.call(commands)
    db = config.database_cpu_seconds()
    nodes = []
    for node, b in zip(config.nodes, before):
        grew = {k: v - b.get(k, 0) for k, v in counters(node).items()}
        stores = grew.pop("chat_store_batch_seconds_count", 0)
        for within in [k for k in grew if k.startswith("stores within")]:
            grew[within.replace("within", "slower than")] = stores - grew.pop(within)
        nodes.append({"store batches": stores, **{k: v for k, v in grew.items() if v}})
    return {
        "answers": answers,
        "cpu": config.cpu_seconds() - cpu0,
        "redis_cpu": config.redis_cpu_seconds() - redis0,
        "db_cpu": db - db0 if db is not None else None,
        "nodes": nodes,
    }


def summarize(result: dict, members: int, secs: float) -> dict:
    answers = result["answers"].values()
    sent = sum(a["sent"] for a in answers)
    received = sum(a["recv"] for a in answers)
    latencies = percentiles(lat_from(answers), (50, 99))
    return {
        "sent": sent,
        "deliveries": received,
        "missing": sent * members - received,
        "deliveries_per_sec": received / secs,
        "cpu_us_per_delivery": result["cpu"] / received * 1e6 if received else None,
        "database_cpu_us_per_delivery": result["db_cpu"] / received * 1e6 if received and result["db_cpu"] is not None else None,
        "redis_cpu_us_per_message": result["redis_cpu"] / sent * 1e6 if sent else None,
        "p50_ms": latencies[50],
        "p99_ms": latencies[99],
        "errors": {k: v for a in answers for k, v in a["errors"].items()},
        "node_counters": result["nodes"],
    }


def per_client(result: dict) -> list[dict]:
    out = []
    for w in sorted(result["answers"]):
        answer = result["answers"][w]
        lat = percentiles(lat_from([answer]), (50, 99))
        out.append({"deliveries": answer["recv"], "p50_ms": lat[50], "p99_ms": lat[99]})
    return out


async def takeover(config: Configuration, conversation_id: str, sender: str) -> float:
    """Seconds from killing the conversation's owner until a client of the other node, retrying
    with one ``client_msg_id``, has it acknowledged."""
    import tornado.websocket

    survivor = config.nodes[1 - config.owner(conversation_id)]
    victim = config.nodes[config.owner(conversation_id)]
    sock = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{survivor.port}{ws_path(sender)}")
    await sock.read_message()
    frame = json.dumps({"type": "send_message", "conversation_id": conversation_id, "content": "takeover", "client_msg_id": "takeover-1"})
    victim.proc.kill()
    killed_at = time.monotonic()
    while time.monotonic() - killed_at < TAKEOVER_LIMIT_SECS:
        await sock.write_message(frame)
        while True:
            event = json.loads(await sock.read_message())
            if event["type"] in ("new_message", "error"):
                break
        if event["type"] == "new_message":
            sock.close()
            return time.monotonic() - killed_at
    raise ServerFailed("no takeover")


def run(a, uri: str, database: psutil.Process | None, logdir: str, pool: ClientPool, log) -> dict:
    members = [[f"u{c}-{m}" for m in range(a.members)] for c in range(a.conversations)]
    rate_each = a.rate / (a.conversations * a.members)
    figures = {}
    for name, node_count, with_redis in (("single", 1, False), ("one node", 1, True), ("two nodes", 2, True)):
        log(f"{name}: starting")
        config = Configuration(name, node_count, with_redis, a, uri, database, logdir)
        try:
            conversations = config.nodes[0].prepare(members, name)
            held = connect(pool, config, conversations, members)
            phase(pool, config, 0, held, rate_each, a.warmup_secs)  # subscriptions settle, caches fill
            result = summarize(phase(pool, config, 1, held, rate_each, a.secs), a.members, a.secs)
            log(f"{name}: {json.dumps(result)}")
            figures[name] = result
            if node_count == 2:
                figures["hops"] = hops(pool, config, held, a, log)
                owned_by_1 = next(c for c in conversations if config.owner(c) == 1)
                seconds = asyncio.run(takeover(config, owned_by_1, members[conversations.index(owned_by_1)][0]))
                figures["takeover_secs"] = seconds
                log(f"takeover after SIGKILL: {seconds:.2f} s")
        finally:
            pool.call_all({"cmd": "close_all"})
            config.stop()
    return figures


def hops(pool: ClientPool, config: Configuration, held: list[list[tuple]], a, log) -> dict:
    """Conversations owned by node 0: senders on node 0, then on node 1 (forwarded writes)."""
    owned = {c for w in held for _, c, _ in w if config.owner(c) == 0}
    out = {}
    for number, (label, sending) in enumerate((("senders on the owner", 0), ("senders on the other node", 1)), start=2):
        senders = [[s for s in held[w] if s[1] in owned] if w == sending else [] for w in range(pool.n)]
        rate_each = a.hop_rate / max(1, len(senders[sending]))
        clients = per_client(phase(pool, config, number, senders, rate_each, a.secs / 2))
        out[label] = {"receivers on node 0 (the owner)": clients[0], "receivers on node 1": clients[1]}
        log(f"hops, {label}: {json.dumps(out[label])}")
    return out


def table(figures: dict, a) -> str:
    rows = [
        f"Load: {a.conversations} conversations of {a.members}, {a.rate:g} messages/s in all for {a.secs:g} s after {a.warmup_secs:g} s of warm-up "
        f"({a.rate * a.members:g} deliveries/s offered).",
        "",
        "| | deliveries/s | CPU per delivery: nodes + Redis | database | Redis per message | p50 | p99 | missing |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("single", "one node", "two nodes"):
        f = figures.get(name)
        if f:
            database = f"{f['database_cpu_us_per_delivery']:.0f} us" if f["database_cpu_us_per_delivery"] is not None else "-"
            rows.append(
                f"| {name} | {f['deliveries_per_sec']:.0f} | {f['cpu_us_per_delivery']:.0f} us | {database} "
                f"| {f['redis_cpu_us_per_message']:.0f} us | {f['p50_ms']:.1f} ms "
                f"| {f['p99_ms']:.1f} ms | {f['missing']} |"
            )
    if "hops" in figures:
        rows += ["", "| two nodes, conversations owned by node 0 | receivers on node 0: p50 / p99 | on node 1: p50 / p99 |", "|---|---|---|"]
        for label, clients in figures["hops"].items():
            on0, on1 = clients["receivers on node 0 (the owner)"], clients["receivers on node 1"]
            rows.append(f"| {label} | {on0['p50_ms']:.1f} / {on0['p99_ms']:.1f} ms | {on1['p50_ms']:.1f} / {on1['p99_ms']:.1f} ms |")
    if "takeover_secs" in figures:
        rows += ["", f"Takeover after SIGKILL of a conversation's owner: {figures['takeover_secs']:.1f} s."]
    return "\n".join(rows)


def main(argv=None) -> int:
    a = parse_args(argv)
    raise_nofile(65536)
    logdir = a.logdir or tempfile.mkdtemp(prefix="chat-scaleout-")
    os.makedirs(logdir, exist_ok=True)
    log = lambda s: print(s, flush=True)  # noqa: E731
    log(f"logs in {logdir}")
    ferret = database = None
    uri = a.mongodb_uri
    if uri is None:
        binary = find_binary()
        if binary is None:
            log("no --mongodb-uri and no FerretDB built (.ci/build-ferretdb.sh): nodes need a shared database")
            return 2
        ferret = Ferret(binary, os.path.join(logdir, "ferretdb.log"))
        uri = ferret.start()
        database = psutil.Process(ferret.pid())
    pool = ClientPool(2)
    try:
        figures = run(a, uri, database, logdir, pool, log)
    except ServerFailed as error:
        log(f"ERROR: {error}")
        return 2
    finally:
        pool.close()
        if ferret is not None:
            ferret.stop()
    log("")
    log(table(figures, a))
    if a.json:
        with open(a.json, "w") as out:
            json.dump(figures, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
