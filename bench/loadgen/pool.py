"""Coordinator side of the load generator: a pool of client processes.

The coordinator is synchronous: it sends one command to some or all workers
and waits for their answers.  Workers are separate processes (fork), each
with its own asyncio loop, so client-side parsing spreads over cores and the
GIL of one client never limits the load.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from array import array

import psutil

from .worker import worker_main


class WorkerError(RuntimeError):
    pass


class ClientPool:
    def __init__(self, n_workers: int):
        self.n = n_workers
        ctx = mp.get_context("fork")
        self.conns = []
        self.procs = []
        for wid in range(n_workers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(wid, child), daemon=True, name=f"bench-client-{wid}")
            p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)
        self.psprocs = [psutil.Process(p.pid) for p in self.procs]
        for c in self.conns:
            c.send({"cmd": "ping"})
        for c in self.conns:
            c.recv()

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def send(self, wid: int, cmd: dict):
        self.conns[wid].send(cmd)

    def recv(self, wid: int, timeout: float = 600.0) -> dict:
        c = self.conns[wid]
        if not c.poll(timeout):
            raise WorkerError(f"client worker {wid} did not answer within {timeout}s")
        res = c.recv()
        if "exception" in res:
            raise WorkerError(f"client worker {wid}: {res['exception']}\n{res.get('traceback', '')}")
        return res

    def call(self, cmds: dict[int, dict], timeout: float = 600.0) -> dict[int, dict]:
        """Send cmds[wid] to each listed worker, then gather all answers."""
        for wid, cmd in cmds.items():
            self.send(wid, cmd)
        return {wid: self.recv(wid, timeout) for wid in cmds}

    def call_all(self, cmd: dict, timeout: float = 600.0) -> dict[int, dict]:
        return self.call({w: cmd for w in range(self.n)}, timeout)

    def cpu_seconds(self) -> list[float]:
        out = []
        for p in self.psprocs:
            try:
                t = p.cpu_times()
                out.append(t.user + t.system)
            except psutil.Error:
                out.append(0.0)
        return out

    def close(self):
        for wid in range(self.n):
            try:
                self.send(wid, {"cmd": "quit"})
            except (OSError, BrokenPipeError):
                pass
        deadline = time.time() + 5
        for p in self.procs:
            p.join(max(0.1, deadline - time.time()))
            if p.is_alive():
                p.kill()
                p.join(1)


def lat_from(results, key="lat") -> array:
    out = array("q")
    for r in results:
        b = r.get(key)
        if b:
            a = array("q")
            a.frombytes(b)
            out.extend(a)
    return out
