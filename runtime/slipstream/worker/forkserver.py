"""Workers in milliseconds: a process that has imported the heavy libraries forks new workers.

The fork server imports what the project's endpoints use (torch, transformers, diffusers, ...)
once, never initialises CUDA, and forks a worker per request: the child inherits the imports
and starts serving at once. The runtime side passes the worker's socket over SCM_RIGHTS.

    runtime -> server: {"op": "fork", "id": n, "env": {...}, "memory_limit": b}  + 1 fd
    server -> runtime: {"op": "ready", "preloaded": [...]}, {"op": "forked", "id": n, "pid": p},
                       {"op": "exited", "pid": p, "code": c}, {"op": "fork_error", "id": n, "error": "..."}
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import select
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from ..protocol.envvars import without_runtime_token

__all__ = ["ForkServer", "HEAVY_MODULES", "wanted_preloads"]

# Imported ahead by the fork server when the project uses them (in this order).
HEAVY_MODULES = ("numpy", "PIL", "torch", "safetensors", "transformers", "diffusers", "accelerate")


def wanted_preloads(sources: list[str]) -> list[str]:
    """The heavy modules the project's files import, in a safe import order."""
    used = set()
    for text in sources:
        for mod in HEAVY_MODULES:
            if f"import {mod}" in text or f"from {mod}" in text:
                used.add(mod)
    return [m for m in HEAVY_MODULES if m in used]


# --- the fork server process ---------------------------------------------------------------
def _send(sock: socket.socket, msg: dict[str, Any]) -> None:
    try:
        sock.sendall(json.dumps(msg).encode() + b"\n")
    except OSError:
        os._exit(0)  # the runtime is gone; its workers notice on their own channels


def _child(fd: int, env: dict[str, str], memory_limit: int | None) -> None:
    os.setsid()
    os.environ.update(env)
    if memory_limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    from .main import serve

    serve(socket.socket(fileno=fd))


def serve_forks(sock: socket.socket, preload: list[str]) -> None:
    from .main import set_parent_death_signal

    set_parent_death_signal()  # dies with the runtime; its workers die with it in turn
    parent = os.getppid()
    loaded, failed = [], []
    started = time.perf_counter()
    for mod in preload:
        try:
            importlib.import_module(mod)
            loaded.append(mod)
        except Exception as exc:  # noqa: BLE001 - a missing library only means no preload
            failed.append(f"{mod}: {exc}")
    import slipstream.worker.main  # noqa: F401 - the worker's own imports, inherited by every child

    torch = sys.modules.get("torch")
    cuda_touched = bool(torch is not None and torch.cuda.is_initialized())
    _send(
        sock,
        {
            "op": "ready",
            "preloaded": loaded,
            "failed": failed,
            "import_s": time.perf_counter() - started,
            "cuda_initialized": cuda_touched,
        },
    )
    while True:
        ready, _, _ = select.select([sock], [], [], 0.05)
        if os.getppid() != parent:
            os._exit(0)  # the runtime is gone (where there is no parent-death signal)
        while True:  # reap children and report how they ended
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            _send(sock, {"op": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})
        if not ready:
            continue
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 4)
        except OSError:
            return
        if not msg:
            return  # the runtime went away
        for line in msg.decode().splitlines():
            req = json.loads(line)
            if req.get("op") != "fork" or not fds:
                continue
            fd = fds.pop(0)
            try:
                pid = os.fork()
            except OSError as exc:
                os.close(fd)
                _send(sock, {"op": "fork_error", "id": req["id"], "error": str(exc)})
                continue
            if pid == 0:
                try:
                    sock.close()
                    _child(fd, req.get("env", {}), req.get("memory_limit"))
                finally:
                    os._exit(70)
            os.close(fd)
            _send(sock, {"op": "forked", "id": req["id"], "pid": pid})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m slipstream.worker.forkserver")
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--preload", default="")
    a = ap.parse_args(argv)
    serve_forks(socket.socket(fileno=a.fd), [m for m in a.preload.split(",") if m])


# --- the runtime's side --------------------------------------------------------------------
class ForkServer:
    """Runtime-side handle of one fork server (one per Python environment)."""

    def __init__(self, python: str, preload: list[str], env: dict[str, str]) -> None:
        self.python = python
        self.preload = preload
        self.env = env
        self.info: dict[str, Any] = {}
        self.proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._buf = b""
        self._ids = 0
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, Callable[[int], None]] = {}
        self._early_exits: dict[int, int] = {}
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self.usable = False
        self.reason = ""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {
            **without_runtime_token(dict(os.environ)),  # workers get their project's credential
            **self.env,
            "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        }
        if "CUDA_VISIBLE_DEVICES" not in os.environ:
            env.pop("CUDA_VISIBLE_DEVICES")
        self.proc = await asyncio.create_subprocess_exec(
            self.python,
            "-P",
            "-m",
            "slipstream.worker.forkserver",
            "--fd",
            str(child.fileno()),
            "--preload",
            ",".join(self.preload),
            pass_fds=(child.fileno(),),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        child.close()
        parent.setblocking(False)
        self._sock = parent
        self._ready = loop.create_future()
        loop.add_reader(parent.fileno(), self._readable)
        try:
            self.info = await asyncio.wait_for(self._ready, 300)
        except (TimeoutError, ConnectionError) as exc:
            self.reason = f"fork server did not start: {exc}"
            return
        if self.info.get("cuda_initialized"):
            self.reason = (
                "the fork server initialised CUDA while importing; forking would be unsafe"
            )
            return
        self.usable = True

    def _readable(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._closed()
            return
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            self._message(json.loads(line))

    def _message(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "ready" and self._ready and not self._ready.done():
            self._ready.set_result(msg)
        elif op == "forked":
            fut = self._pending.pop(msg["id"], None)
            if fut and not fut.done():
                fut.set_result(msg["pid"])
        elif op == "fork_error":
            fut = self._pending.pop(msg["id"], None)
            if fut and not fut.done():
                fut.set_exception(OSError(msg.get("error", "fork failed")))
        elif op == "exited":
            cb = self._exits.pop(msg["pid"], None)
            if cb:
                cb(int(msg["code"]))
            else:
                self._early_exits[msg["pid"]] = int(msg["code"])

    def _closed(self) -> None:
        self.usable = False
        self.reason = "the fork server exited"
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the fork server exited"))
        if self._ready and not self._ready.done():
            self._ready.set_exception(ConnectionError("the fork server exited during start"))
        for cb in list(self._exits.values()):
            cb(-9)
        self._exits.clear()

    async def fork(
        self,
        child_fd: int,
        env: dict[str, str],
        memory_limit: int | None,
        on_exit: Callable[[int], None],
    ) -> int:
        assert self._sock is not None
        self._ids += 1
        fid = self._ids
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[fid] = fut
        msg = (
            json.dumps({"op": "fork", "id": fid, "env": env, "memory_limit": memory_limit}).encode()
            + b"\n"
        )
        socket.send_fds(self._sock, [msg], [child_fd])
        pid = await asyncio.wait_for(fut, 30)
        if pid in self._early_exits:
            on_exit(self._early_exits.pop(pid))
        else:
            self._exits[pid] = on_exit
        return pid

    async def close(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()


if __name__ == "__main__":
    main()
