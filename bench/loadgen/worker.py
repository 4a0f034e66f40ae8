"""One load-generator client process.

A worker owns a share of the client sockets and runs its own asyncio loop.  It
obeys commands sent by the coordinator (``bench.loadgen.pool.ClientPool``) over
a multiprocessing pipe; each command is a dict with a ``cmd`` key and is
answered with one dict.  Commands run one at a time per worker.

Latency: every benchmark message carries its send time in its ``content``::

    B|<phase>|<send time.time_ns()>|<sender key>|<padding>

Each receiving socket computes ``recv time.time_ns() - send time`` (same
machine, same clock) and files it under the phase, so deliveries that arrive
after their phase was collected are counted as late, never mixed into the
next phase.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from array import array

try:
    import orjson as _json

    def _loads(b):
        return _json.loads(b)

    def _dumps(o) -> bytes:
        return _json.dumps(o)
except ImportError:  # pragma: no cover
    import json as _json

    def _loads(b):
        return _json.loads(b)

    def _dumps(o) -> bytes:
        return _json.dumps(o, separators=(",", ":")).encode()

from . import wsclient
from .churn import Churn
from .httpclient import KeepAliveHTTP


class PhaseStats:
    __slots__ = ("lat", "recv", "own")

    def __init__(self):
        self.lat = array("q")
        self.recv = 0
        self.own = 0


class Sock:
    __slots__ = ("idx", "key", "user", "convs", "proto", "established", "joined", "join_waiters",
                 "est_waiter", "outstanding", "closed_loop_conv", "sent")

    def __init__(self, idx, key, user, convs):
        self.idx = idx
        self.key = key
        self.user = user
        self.convs = convs
        self.proto = None
        self.established = False
        self.joined = {}
        self.join_waiters = {}
        self.est_waiter = None
        self.outstanding = 0
        self.closed_loop_conv = None
        self.sent = 0


class Worker:
    def __init__(self, wid: int, conn):
        self.wid = wid
        self.conn = conn
        self.socks: list[Sock] = []
        self.by_key: dict[str, Sock] = {}
        self.phases: dict[int, PhaseStats] = {}
        self.current_phase = -1
        self.late = 0
        self.unparsed = 0
        self.errors: dict[str, int] = {}
        self.error_samples: list = []
        self.other_types: dict[str, int] = {}
        self.closed_sockets = 0
        self.close_codes: dict = {}
        self.closed_loop_active = False
        self.closed_loop_pad = ""
        self.closed_loop_phase = -1
        self.closed_loop_sent = 0
        self.stop = None
        self.churn = Churn(wid)

    # ------------------------------------------------------------------ io
    def _on_close(self, proto):
        self.closed_sockets += 1
        self.close_codes[proto.close_code] = self.close_codes.get(proto.close_code, 0) + 1

    def _on_message(self, proto, payload: bytes, recv_ns: int):
        sock: Sock = proto.tag
        # Fast path: new_message frames carry our marker; avoid a full dict walk.
        try:
            d = _loads(payload)
        except Exception:
            self.unparsed += 1
            return
        t = d.get("type")
        if t == "new_message":
            m = d.get("message") or {}
            content = m.get("content") or ""
            if content.startswith("B|"):
                parts = content.split("|", 4)
                try:
                    phase = int(parts[1])
                    ts = int(parts[2])
                except (ValueError, IndexError):
                    self.unparsed += 1
                    return
                st = self.phases.get(phase)
                if st is None:
                    self.late += 1
                else:
                    st.lat.append(recv_ns - ts)
                    st.recv += 1
                if parts[3] == sock.key:
                    if st is not None:
                        st.own += 1
                    if sock.outstanding:
                        sock.outstanding -= 1
                    if self.closed_loop_active and sock.closed_loop_conv is not None:
                        self._send_bench(sock, sock.closed_loop_conv, self.closed_loop_phase,
                                         self.closed_loop_pad)
                        self.closed_loop_sent += 1
            return
        if t == "connection_established":
            sock.established = True
            if sock.est_waiter is not None and not sock.est_waiter.done():
                sock.est_waiter.set_result(d)
            return
        if t == "conversation_joined":
            cid = str(d.get("conversation_id"))
            sock.joined[cid] = d.get("last_seq")
            w = sock.join_waiters.pop(cid, None)
            if w is not None and not w.done():
                w.set_result(d)
            return
        if t == "error":
            code = str(d.get("code"))
            self.errors[code] = self.errors.get(code, 0) + 1
            if len(self.error_samples) < 5:
                self.error_samples.append(d)
            rid = str(d.get("request_id") or "")
            if rid.startswith("j:"):
                w = sock.join_waiters.pop(rid[2:], None)
                if w is not None and not w.done():
                    w.set_exception(RuntimeError(f"join refused: {d}"))
                return
            # otherwise it answers one of our sends: count it as settled
            # (a closed-loop sender whose send was refused stops: no error storm)
            if sock.outstanding:
                sock.outstanding -= 1
            return
        self.other_types[str(t)] = self.other_types.get(str(t), 0) + 1

    def _send_bench(self, sock: Sock, conv, phase: int, pad: str):
        sock.sent += 1
        ts = time.time_ns()
        msg = {
            "type": "send_message",
            "conversation_id": conv,
            "content": f"B|{phase}|{ts}|{sock.key}|{pad}",
            "message_type": "text",
            "client_msg_id": f"{sock.key}.{sock.sent}",
        }
        sock.outstanding += 1
        sock.proto.send(_dumps(msg))

    # ------------------------------------------------------------ commands
    async def cmd_connect(self, c):
        """Open sockets, wait for connection_established, then join."""
        host, port = c["host"], c["port"]
        conc = c.get("concurrency", 100)
        timeout = c.get("timeout", 60.0)
        specs = c["socks"]  # list of {"path", "user", "convs", "since"?: {conversation id: since_seq}}
        base = len(self.socks)
        new = []
        for i, s in enumerate(specs):
            sock = Sock(base + i, f"w{self.wid}s{base + i}", s["user"], s["convs"])
            self.socks.append(sock)
            self.by_key[sock.key] = sock
            new.append((sock, s["path"], s.get("since") or {}))
        sem = asyncio.Semaphore(conc)
        loop = asyncio.get_running_loop()
        failures = []
        conn_lat = array("q")

        deadline = c.get("deadline") or float("inf")  # epoch secs: stop opening after it
        skipped = [0]

        join_lat = array("q")
        join_fail = []
        do_join = c.get("join", True)

        async def one(sock, path, since):
            """Connect, wait for connection_established, then join each conversation (resuming
            from ``since[conversation id]`` where given)."""
            async with sem:
                if time.time() > deadline:
                    skipped[0] += 1
                    return
                t0 = time.perf_counter_ns()
                sock.est_waiter = loop.create_future()
                try:
                    sock.proto = await wsclient.connect(host, port, path, self._on_message,
                                                        self._on_close, tag=sock, timeout=timeout)
                    await asyncio.wait_for(sock.est_waiter, timeout)
                    conn_lat.append(time.perf_counter_ns() - t0)
                except Exception as e:  # noqa: BLE001
                    failures.append(f"connect {sock.user}: {type(e).__name__}: {e}"[:300])
                    return
                if not do_join:
                    return
                for cid in sock.convs:
                    t1 = time.perf_counter_ns()
                    w = loop.create_future()
                    sock.join_waiters[str(cid)] = w
                    join = {"type": "join_conversation", "conversation_id": cid, "request_id": f"j:{cid}"}
                    if str(cid) in since:
                        join["since_seq"] = since[str(cid)]
                    sock.proto.send(_dumps(join))
                    try:
                        await asyncio.wait_for(w, timeout)
                        join_lat.append(time.perf_counter_ns() - t1)
                    except Exception as e:  # noqa: BLE001
                        join_fail.append(f"join {sock.user} {cid}: {type(e).__name__}: {e}"[:300])

        t0 = time.perf_counter()
        await asyncio.gather(*(one(s, p, since) for s, p, since in new))
        t_connect = time.perf_counter() - t0
        t_join = t_connect
        return {
            "connected": len(conn_lat), "failed": len(failures), "fail_samples": failures[:5],
            "t_connect": t_connect, "conn_lat": conn_lat.tobytes(),
            "joined": len(join_lat), "join_failed": len(join_fail), "join_fail_samples": join_fail[:5],
            "t_join": t_join, "join_lat": join_lat.tobytes(), "skipped": skipped[0],
        }

    async def cmd_phase(self, c):
        """Run one timed sending phase and report what this worker saw.

        mode "open":   every listed sender sends at ``rate`` msgs/s (open loop).
        mode "closed": every listed sender keeps ``window`` messages in flight,
                       sending the next when its own copy comes back.
        mode "none":   only receive.
        """
        phase = c["phase"]
        st = PhaseStats()
        self.phases[phase] = st
        senders = [(self.socks[i], conv) for i, conv in c.get("senders", [])]
        senders = [(s, cv) for s, cv in senders if s.proto is not None and not s.proto.closed]
        pad = "x" * c.get("pad", 40)
        mode = c.get("mode", "none")
        now = time.time()
        start_at = c["start_at"]
        if start_at > now:
            await asyncio.sleep(start_at - now)
        t0 = time.monotonic()
        end = t0 + c["duration"]
        sent = 0
        if mode == "open" and senders:
            total_rate = c["rate"] * len(senders)
            tick = c.get("tick", 0.002)
            rr = 0
            n_s = len(senders)
            # stagger so that workers' bursts do not line up
            await asyncio.sleep(random.random() * tick)
            while True:
                now = time.monotonic()
                if now >= end:
                    break
                due = int((now - t0) * total_rate) - sent
                for _ in range(due):
                    s, cv = senders[rr]
                    rr = (rr + 1) % n_s
                    self._send_bench(s, cv, phase, pad)
                sent += max(due, 0)
                await asyncio.sleep(tick)
        elif mode == "closed" and senders:
            self.closed_loop_phase = phase
            self.closed_loop_pad = pad
            self.closed_loop_sent = 0
            self.closed_loop_active = True
            window = c.get("window", 1)
            for s, cv in senders:
                s.closed_loop_conv = cv
                for _ in range(window):
                    self._send_bench(s, cv, phase, pad)
                    self.closed_loop_sent += 1
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            self.closed_loop_active = False
            for s, _ in senders:
                s.closed_loop_conv = None
            sent = self.closed_loop_sent
        else:
            await asyncio.sleep(max(0.0, end - time.monotonic()))
        send_elapsed = time.monotonic() - t0
        await asyncio.sleep(c.get("drain", 1.0))
        del self.phases[phase]
        return {
            "sent": sent, "send_elapsed": send_elapsed, "recv": st.recv, "own": st.own,
            "lat": st.lat.tobytes(), "late": self.late, "errors": dict(self.errors),
            "error_samples": list(self.error_samples), "closed": self.closed_sockets,
            "close_codes": {str(k): v for k, v in self.close_codes.items()},
            "other_types": dict(self.other_types), "unparsed": self.unparsed,
        }

    async def cmd_http_pager(self, c):
        """Page backwards through a conversation's history over REST.

        ``pagers`` concurrent cursors, each on its own keep-alive connection,
        each starting at a random ``before`` seq, for at most ``duration``
        seconds and ``max_pages`` pages in all.
        """
        host, port = c["host"], c["port"]
        path_tmpl = c["path"]  # with {before}
        first_path = c["first_path"]
        headers = c.get("headers", {})
        duration = c["duration"]
        max_pages = c["max_pages"]
        top = c["top_seq"]
        req_timeout = c.get("request_timeout", 60.0)
        lat = array("q")
        counts = {"pages": 0, "items": 0, "errors": 0, "status": {}}
        samples = []
        end = time.monotonic() + duration
        rnd = random.Random(self.wid)

        async def pager(k):
            cli = KeepAliveHTTP(host, port)
            try:
                before = None if k == 0 else rnd.randint(top // 10, top + 1)
                while time.monotonic() < end and counts["pages"] < max_pages:
                    path = first_path if before is None else path_tmpl.format(before=before)
                    t0 = time.perf_counter_ns()
                    try:
                        status, body = await asyncio.wait_for(cli.get(path, headers), req_timeout)
                    except asyncio.TimeoutError:
                        counts["errors"] += 1
                        counts["timeouts"] = counts.get("timeouts", 0) + 1
                        return
                    lat.append(time.perf_counter_ns() - t0)
                    counts["status"][status] = counts["status"].get(status, 0) + 1
                    if status != 200:
                        counts["errors"] += 1
                        if len(samples) < 3:
                            samples.append(body[:300].decode(errors="replace"))
                        before = rnd.randint(top // 10, top + 1)
                        continue
                    d = _loads(body)
                    res = d.get("results") or []
                    counts["pages"] += 1
                    counts["items"] += len(res)
                    seqs = [r.get("seq") for r in res if isinstance(r, dict) and r.get("seq") is not None]
                    if not seqs or min(seqs) <= 1:
                        before = rnd.randint(top // 10, top + 1)  # wrap to a new cursor
                    else:
                        before = min(seqs)
            finally:
                cli.close()

        t0 = time.perf_counter()
        await asyncio.gather(*(pager(k + self.wid * 1000) for k in range(c["pagers"])))
        return {"elapsed": time.perf_counter() - t0, "lat": lat.tobytes(), **counts, "samples": samples}

    async def cmd_seed(self, c):
        """Send ``count`` messages from every listed sender, ``window`` in flight each."""
        senders = [(self.socks[i], conv) for i, conv in c["senders"]]
        count = c["count"]
        window = c.get("window", 16)
        pad = "x" * c.get("pad", 40)
        phase = c["phase"]
        st = PhaseStats()
        self.phases[phase] = st
        t0 = time.perf_counter()
        deadline = time.monotonic() + c.get("timeout", 120.0)

        async def one(s: Sock, conv):
            sent = 0
            while sent < count and time.monotonic() < deadline:
                while s.outstanding < window and sent < count:
                    self._send_bench(s, conv, phase, pad)
                    sent += 1
                await asyncio.sleep(0.001)
            while s.outstanding and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            return sent

        sent = await asyncio.gather(*(one(s, cv) for s, cv in senders))
        elapsed = time.perf_counter() - t0
        del self.phases[phase]
        return {"sent": sum(sent), "elapsed": elapsed, "own": st.own, "recv": st.recv,
                "errors": dict(self.errors), "error_samples": list(self.error_samples)}

    async def cmd_sent_by_conv(self, c):
        """Messages sent per conversation by this worker's sockets, and last_seq at join."""
        sent: dict = {}
        joined: dict = {}
        for s in self.socks:
            for cv in s.convs:
                k = str(cv)
                if s.closed_loop_conv is None and len(s.convs) == 1:
                    sent[k] = sent.get(k, 0) + s.sent
                ls = s.joined.get(k)
                if ls is not None:
                    joined[k] = min(joined.get(k, ls), ls)
        return {"sent": sent, "joined": joined}

    async def cmd_churn(self, c):
        """One slice of the soak's connect-join-send-react-disconnect cycles (``bench.loadgen.churn``)."""
        return await self.churn.run_slice(c)

    async def cmd_close_all(self, c):
        for s in self.socks:
            if s.proto is not None:
                s.proto.close()
        await asyncio.sleep(0.2)
        n = len(self.socks)
        self.socks.clear()
        self.by_key.clear()
        return {"closed": n}

    async def cmd_counters(self, c):
        """What this worker's sockets received and how they closed, counted since it started."""
        return {"other_types": dict(self.other_types), "close_codes": {str(k): v for k, v in self.close_codes.items()},
                "errors": dict(self.errors), "error_samples": list(self.error_samples)}

    async def cmd_ping(self, c):
        return {"pid": os.getpid()}

    async def cmd_quit(self, c):
        self.stop.set()
        return {"bye": True}

    # --------------------------------------------------------------- loop
    async def _handle(self, c):
        try:
            res = await getattr(self, "cmd_" + c["cmd"])(c)
        except Exception as e:  # noqa: BLE001
            import traceback
            res = {"exception": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        self.conn.send(res)

    async def run(self):
        loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        queue: asyncio.Queue = asyncio.Queue()

        def readable():
            try:
                while self.conn.poll():
                    queue.put_nowait(self.conn.recv())
            except (EOFError, OSError):
                queue.put_nowait({"cmd": "quit"})

        loop.add_reader(self.conn.fileno(), readable)

        async def consume():
            while True:
                c = await queue.get()
                await self._handle(c)
                if c["cmd"] == "quit":
                    return

        await consume()
        loop.remove_reader(self.conn.fileno())


def worker_main(wid: int, conn):
    import gc
    gc.freeze()
    asyncio.run(Worker(wid, conn).run())
