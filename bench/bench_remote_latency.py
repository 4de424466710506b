"""Latency over a real round trip: the SDK and the daemon's save path against a runtime behind a
TCP proxy that adds a fixed delay, each figure as a ratio to the round trip (RTT).

    .venv/bin/python bench/bench_remote_latency.py [--rtt-ms 50 150] [--n 20] [--files 1000] [--mb 50] [--big-mb 100]
    .venv/bin/python bench/bench_remote_latency.py --ssh [--n 20] ...   (through an SSH tunnel, below)

The runtime (`slipstream serve`) listens on 127.0.0.1; DelayProxy listens on 127.0.0.2 on the
same port numbers (HTTP and the data channel) and holds every chunk for RTT/2 in each
direction, so the SDK reaches everything only through the delay. The proxy does not limit the
rate: "the link's rate" below is what a raw socket moves through the same proxy, measured in
the same run (the assumption: the link is as fast as this machine's loopback plus the proxy).

Goals (p50), each printed with `goal ...: met / NOT met`:
- a no-op call (warm connection)          <= 1 RTT + 5 ms
- a one-file edit, save to live            <= 2 RTT + 30 ms   (sync_project, then the first call
                                                                that answers with the new code)
- the first sync of a 1,000-file 50 MB project <= 4 RTT + its bytes at the link's rate
- a 100 MB argument round trip (echoed back) within 1.2x of a raw socket moving the same bytes
  the same way (100 MB up, then 100 MB back) through the same proxy

Subject and baseline are interleaved sample by sample. Each operation's round trips are
counted at the proxy (requests the client starts: a new connection counts its handshake).

The proxy and the harness are importable (DelayProxy, Remote, measure_all) so the SSH tunnel's
figures can be taken the same way: pass Remote(..., url=<the tunnel's URL>) or wrap another
target in DelayProxy.

--ssh takes the same figures through an SSH tunnel with no added delay, each as a ratio to
direct loopback to the same runtime (measure_ssh): a throwaway OpenSSH server on loopback (the
tests' host, tests/remote/sshhost.py), `ssh://testhost` bootstrapped and reached as the SDK
always does (one multiplexed connection, the HTTP and data ports forwarded).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, fmt, free_port, goal, interleaved, machine, stats_ms  # noqa: E402

PROXY_HOST = "127.0.0.2"


# --- the delaying proxy ------------------------------------------------------------------


class DelayProxy:
    """A TCP proxy on its own thread and event loop: every chunk read on one side is written
    to the other side one_way_s later (order kept, pipelined, no rate limit). `exchanges`
    counts the times a side started sending after the other had sent: each is one round trip
    the client waited for (a new connection counts one more for its handshake)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], one_way_s: float) -> None:
        self.listen, self.target, self.delay = listen, target, one_way_s
        self.loop = asyncio.new_event_loop()
        self.connections = 0
        self.exchanges = 0
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="delay-proxy", daemon=True
        )

    def start(self) -> DelayProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._conn, *self.listen, limit=1 << 20)
        self.listen = self._server.sockets[0].getsockname()[:2]

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def reset_counts(self) -> None:
        self.connections = self.exchanges = 0

    async def _conn(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(*self.target, limit=1 << 20)
        except OSError:
            cw.close()
            return
        for w in (cw, uw):
            s = w.get_extra_info("socket")
            if s is not None:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        self.exchanges += 1  # the client's connect: SYN and SYN-ACK took a round trip
        state = {"last": ""}
        try:
            await asyncio.gather(
                self._pipe(cr, uw, "up", state),
                self._pipe(ur, cw, "down", state),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            pass

    async def _pipe(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, side: str, state: dict[str, str]
    ) -> None:
        q: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await q.get()
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    w.close()
                    return
                w.write(data)
                await w.drain()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                data = await r.read(1 << 20)
                if data and side == "up" and state["last"] != "up":
                    self.exchanges += (
                        1  # the client sends again after hearing back: one more round trip
                    )
                if data:
                    state["last"] = side
                q.put_nowait((self.loop.time() + self.delay, data))
                if not data:
                    break
            await sender
        except (OSError, asyncio.CancelledError):
            sender.cancel()
            w.close()


# --- a raw baseline: the same bytes through the same proxy ---------------------------------


class EchoServer:
    """Reads a u64 length and that many bytes, then sends them back (sequential, like a call)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            try:
                while True:
                    n = int.from_bytes(_recv_exact(conn, 8), "big")
                    _send_framed(conn, _recv_exact(conn, n) if n else b"")
            except (ConnectionError, OSError):
                return

    def close(self) -> None:
        self.sock.close()


def _send_framed(s: socket.socket, data: bytes | bytearray) -> None:
    """A u64 length and the bytes: one write when small, as the SDK does."""
    if len(data) < 1 << 16:
        s.sendall(len(data).to_bytes(8, "big") + bytes(data))
    else:
        s.sendall(len(data).to_bytes(8, "big"))
        s.sendall(data)


def _recv_exact(s: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = s.recv_into(view[got:], n - got)
        if not k:
            raise ConnectionError("closed")
        got += k
    return buf


class RawClient:
    def __init__(self, addr: tuple[str, int]) -> None:
        self.s = socket.create_connection(addr)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def roundtrip(self, data: bytes) -> None:
        _send_framed(self.s, data)
        n = int.from_bytes(_recv_exact(self.s, 8), "big")
        _recv_exact(self.s, n)

    def close(self) -> None:
        self.s.close()


# --- the harness ---------------------------------------------------------------------------

APP = """
    from slipstream import endpoint

    VERSION = {version}

    @endpoint
    def noop():
        return None

    @endpoint
    def version() -> int:
        return VERSION

    @endpoint
    def echo(data: bytes) -> bytes:
        return data
"""


@dataclass
class Remote:
    """A runtime on loopback reached through DelayProxy (or through `url` when given)."""

    rtt_s: float
    url: str = ""
    token: str = ""
    proc: subprocess.Popen[bytes] | None = None
    proxies: list[DelayProxy] = field(default_factory=list)
    echo: EchoServer | None = None
    tmp: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="slipstream-bench-remote-"))
    )

    def start(self) -> Remote:
        import json
        import secrets

        self.token = secrets.token_urlsafe(16)
        ready = self.tmp / "ready.json"
        env = {**os.environ, "SLIPSTREAM_TOKEN": self.token}
        env.pop("SLIPSTREAM_RUNTIME_URL", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "slipstream",
                "serve",
                "--port",
                "0",
                "--temp-store",
                "--gpu-fallback",
                "--ready-file",
                str(ready),
                "--max-project-mb",
                "1024",
            ],
            env=env,
            stdout=(self.tmp / "serve.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.tmp / "serve.log").read_text())
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        import httpx

        port = int(info["url"].rsplit(":", 1)[1])
        data_port = httpx.get(f"{info['url']}/health", timeout=10).json()["data_port"]
        one_way = self.rtt_s / 2
        self.echo = EchoServer()
        for p in (port, data_port, self.echo.port):
            self.proxies.append(DelayProxy((PROXY_HOST, p), ("127.0.0.1", p), one_way).start())
        self.url = self.url or f"http://{PROXY_HOST}:{port}"
        return self

    @property
    def http_proxy(self) -> DelayProxy:
        return self.proxies[0]

    def raw(self) -> RawClient:
        assert self.echo is not None
        return RawClient((PROXY_HOST, self.echo.port))

    def client(self) -> Any:
        from slipstream.sdk.client import RuntimeClient

        return RuntimeClient(self.url, self.token)

    def direct_client(self) -> Any:
        """The same runtime without the proxy: what this machine's CPUs cost on their own."""
        from slipstream.sdk.client import RuntimeClient

        port = self.http_proxy.target[1]
        return RuntimeClient(f"http://127.0.0.1:{port}", self.token)

    def counts(self) -> tuple[int, int]:
        return sum(p.exchanges for p in self.proxies[:2]), sum(
            p.connections for p in self.proxies[:2]
        )

    def reset_counts(self) -> None:
        for p in self.proxies:
            p.reset_counts()

    def stop(self) -> None:
        for p in self.proxies:
            p.stop()
        if self.echo is not None:
            self.echo.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _project(d: Path, files: int = 0, mb: float = 0.0, version: int = 1) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "slipstream.toml").write_text('[project]\nname = "bench"\n')
    (d / "app.py").write_text(textwrap.dedent(APP.format(version=version)))
    if files:
        size = int(mb * 1024 * 1024 / files)
        pkg = d / "data"
        pkg.mkdir(exist_ok=True)
        for i in range(files):
            # text files the sync takes (.txt), random so nothing is shared between samples
            (pkg / f"f{i:04d}.txt").write_bytes(os.urandom(size // 2).hex().encode())
    return d


def _ok(out: Any) -> Any:
    if out.error is not None:
        raise RuntimeError(f"{out.error.type}: {out.error.message}")
    return out.value


def measure_all(
    remote: Remote,
    n: int,
    files: int,
    mb: float,
    big_mb: int,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every figure for one remote; returns {name: stats} and prints as it goes."""
    from slipstream.sdk.sync import build_manifest, sync_project

    rtt_ms = remote.rtt_s * 1000
    link_ms = f"RTT {rtt_ms:.0f} ms"
    out: dict[str, Any] = {}
    client = remote.client()
    root = _project(remote.tmp / "app")
    sync_project(client, root)
    client.project = sync_project(client, root).project

    # 1. a no-op call against a 1-byte raw round trip (the RTT as this proxy gives it)
    raw = remote.raw()
    _ok(client.call("noop", None, (), {}))  # the data channel's connection is made
    remote.reset_counts()
    _ok(client.call("noop", None, (), {}))
    ex, conns = remote.counts()
    s = interleaved(
        {
            "call": lambda: _ok(client.call("noop", None, (), {})),
            "raw": lambda: raw.roundtrip(b"x"),
        },
        n,
    )
    call, ping = stats_ms(s["call"]), stats_ms(s["raw"])
    report(fmt(f"no-op call ({link_ms})", call) + f"   = {call['p50'] / rtt_ms:.2f} RTT")
    report(fmt(f"raw 1-byte round trip ({link_ms})", ping) + f"   = {ping['p50'] / rtt_ms:.2f} RTT")
    report(f"  round trips per call: {ex} ({conns} new connection(s))")
    report(
        goal(
            f"no-op call <= 1 RTT + 5 ms ({link_ms}: {call['p50']:.1f} <= {rtt_ms + 5:.1f} ms)",
            call["p50"] <= rtt_ms + 5,
        )
    )
    out["noop"] = call

    # the first call of a fresh client: health, the data channel's connect, the call
    firsts = []
    for _ in range(max(3, n // 4)):
        fresh = remote.client()
        fresh.project = client.project
        remote.reset_counts()
        t = time.perf_counter()
        _ok(fresh.call("noop", None, (), {}))
        firsts.append(time.perf_counter() - t)
        ex, conns = remote.counts()
        fresh.close()
    first = stats_ms(firsts)
    report(
        fmt(f"first call of a new client ({link_ms})", first)
        + f"   = {first['p50'] / rtt_ms:.2f} RTT; "
        f"{ex} round trips, {conns} connections"
    )

    # 2. save to live: write the module, sync_project (the daemon's save path), the first
    # call that answers with the new code; the baseline is a raw round trip
    version = [1]

    def edit() -> None:
        version[0] += 1
        (root / "app.py").write_text(textwrap.dedent(APP.format(version=version[0])))
        sync_project(client, root)
        while _ok(client.call("version", None, (), {})) != version[0]:
            pass

    remote.reset_counts()
    edit()
    ex, conns = remote.counts()
    s = interleaved({"edit": edit, "raw": lambda: raw.roundtrip(b"x")}, n, warmup=1)
    live = stats_ms(s["edit"])
    report(
        fmt(f"one-file edit, save to live ({link_ms})", live)
        + f"   = {live['p50'] / rtt_ms:.2f} RTT"
    )
    report(f"  round trips per edit (sync + call): {ex} ({conns} new connection(s))")
    report(
        goal(
            f"save to live <= 2 RTT + 30 ms ({link_ms}: {live['p50']:.1f} <= {2 * rtt_ms + 30:.1f} ms)",
            live["p50"] <= 2 * rtt_ms + 30,
        )
    )
    out["save_to_live"] = live

    # 4 (first, as it gives the link's rate). 100 MB echoed back, against the raw socket
    blob = os.urandom(big_mb * 1024 * 1024)
    big_n = max(3, n // 4)
    direct = remote.direct_client()
    direct.project = client.project
    s = interleaved(
        {
            "call": lambda: _ok(client.call("echo", None, (blob,), {}, timeout=600)),
            "raw": lambda: raw.roundtrip(blob),
            "direct": lambda: _ok(direct.call("echo", None, (blob,), {}, timeout=600)),
        },
        big_n,
        warmup=1,
    )
    big, rawbig, floor = stats_ms(s["call"]), stats_ms(s["raw"]), stats_ms(s["direct"])
    ratio = big["p50"] / rawbig["p50"]
    report(fmt(f"{big_mb} MB argument round trip ({link_ms})", big))
    report(fmt(f"raw socket, same bytes ({link_ms})", rawbig) + f"   call/raw = {ratio:.2f}x")
    report(
        fmt(f"{big_mb} MB call, no proxy (this machine's floor)", floor)
        + f"   call - floor = {(big['p50'] - floor['p50']) / rtt_ms:.2f} RTT"
    )
    report(
        goal(
            f"{big_mb} MB round trip within 1.2x of a raw socket ({link_ms}: {ratio:.2f}x)",
            ratio <= 1.2,
        )
    )
    out["big"], out["big_raw"] = big, rawbig
    # the link's rate: what the raw socket moved (both ways) in its time, less its two round trips
    rate = 2 * len(blob) / max(rawbig["p50"] / 1000 - 2 * remote.rtt_s, 1e-3)
    blob = b""  # free it before the next part

    # 3. the first sync of a big project: a fresh project (new bytes) each sample
    firsts_sync, floors, counts = [], [], []
    size_mb = 0.0
    for i in range(max(2, n // 10)):
        for kind in ("proxied", "direct") if i % 2 == 0 else ("direct", "proxied"):  # interleaved
            big_root = _project(remote.tmp / f"big{i}{kind}", files=files, mb=mb)
            size_mb = sum(p.stat().st_size for p in big_root.rglob("*") if p.is_file()) / 1e6
            fresh = remote.client() if kind == "proxied" else remote.direct_client()
            fresh.health()
            build_manifest(
                big_root
            )  # hashed before the clock starts, as an editor's save finds them
            remote.reset_counts()
            t = time.perf_counter()
            res = sync_project(fresh, big_root)
            (firsts_sync if kind == "proxied" else floors).append(time.perf_counter() - t)
            if kind == "proxied":
                counts.append(remote.counts())
            fresh._request("DELETE", f"/v1/projects/{res.project}")
            fresh.close()
            shutil.rmtree(big_root, ignore_errors=True)
    fs, fl = stats_ms(firsts_sync), stats_ms(floors)
    budget_ms = 4 * rtt_ms + size_mb * 1e6 / rate * 1000
    report(
        fmt(f"first sync, {files} files {size_mb:.0f} MB ({link_ms})", fs)
        + f"   = {fs['p50'] / rtt_ms:.1f} RTT"
    )
    report(
        f"  round trips per first sync: {counts[-1][0]} ({counts[-1][1]} new connection(s)); link rate "
        f"{rate / 1e6:.0f} MB/s (raw socket through the proxy)"
    )
    report(
        fmt("first sync, no proxy (this machine's floor)", fl)
        + f"   proxied - floor = {(fs['p50'] - fl['p50']) / rtt_ms:.1f} RTT"
    )
    report(
        goal(
            f"first sync <= 4 RTT + bytes at the link's rate ({link_ms}: {fs['p50']:.0f} <= {budget_ms:.0f} ms)",
            fs["p50"] <= budget_ms,
        )
    )
    report(
        goal(
            f"first sync's cost beyond this machine's floor <= 4 RTT ({link_ms}: "
            f"{fs['p50'] - fl['p50']:.0f} <= {4 * rtt_ms:.0f} ms)",
            fs["p50"] - fl["p50"] <= 4 * rtt_ms,
        )
    )
    out["first_sync"] = fs
    out["first_sync_floor"] = fl
    raw.close()
    direct.close()
    client.close()
    return out


# --- the SSH tunnel, no added delay, against direct loopback -------------------------------


def _ratio(a: dict[str, float], b: dict[str, float]) -> str:
    return f"ssh/direct p50 {a['p50'] / b['p50']:.2f}x, p95 {a['p95'] / b['p95']:.2f}x (p50 {a['p50'] - b['p50']:+.2f} ms)"


def measure_ssh(
    n: int, files: int, mb: float, big_mb: int, report: Callable[[str], None] = print
) -> dict[str, Any]:
    """The same figures through an SSH tunnel with no added delay, each as a ratio to direct
    loopback to the same runtime. The host is the tests' throwaway OpenSSH server on loopback
    (tests/remote/sshhost.py): `ssh://testhost` bootstraps it as `slipstream connect` does (the
    package index unreachable from it, so the wheels go over ssh), and the SDK reaches the
    host's runtime through the forwards of one multiplexed connection; the baseline is the same
    runtime at its own loopback address (http://127.0.0.1:<its port>). Interleaved sample by
    sample; 1-byte and big raw round trips through a forward of the same master show what the
    tunnel itself costs. tests/ is importable as ROOT is on sys.path (_common)."""
    from slipstream.sdk.client import RuntimeClient
    from slipstream.sdk.sshlink import link_for
    from slipstream.sdk.sync import build_manifest, sync_project
    from tests.remote.sshhost import SSHD, start_ssh_host

    if not Path(SSHD).exists():
        raise SystemExit(
            f"--ssh needs OpenSSH's server at {SSHD} (scripts/install-test-hosts installs it)"
        )
    tmp = Path(tempfile.mkdtemp(prefix="slipstream-bench-ssh-"))
    host = start_ssh_host(tmp / "ssh")
    saved = {k: os.environ.get(k) for k in (*host.env, "SLIPSTREAM_RUNTIME_URL")}
    os.environ.update(host.env)
    os.environ.pop("SLIPSTREAM_RUNTIME_URL", None)
    link = None
    out: dict[str, Any] = {}
    try:
        t = time.perf_counter()
        link = link_for("ssh://testhost", quiet=True)
        report(
            f"first connect (bootstrap of the host, wheels sent over ssh): {time.perf_counter() - t:.1f} s"
        )
        remote_url = link.remote["url"]
        ssh_c = RuntimeClient("ssh://testhost")
        direct = RuntimeClient(remote_url, link.token)
        report(
            f"through the tunnel: {ssh_c.url} (data {link.data_port}) -> host {remote_url} (data {link.remote_data}); "
            f"direct: {remote_url}"
        )
        root = _project(tmp / "app")
        ssh_c.project = sync_project(ssh_c, root).project
        direct.project = ssh_c.project
        clients = {"ssh": ssh_c, "direct": direct}

        # the tunnel's own floor: raw round trips to an echo server, through a forward of the
        # same master connection and directly
        echo = EchoServer()
        fwd = free_port()
        if not link._forward(fwd, echo.port):
            raise RuntimeError("could not forward a port to the echo server over ssh")
        raws = {"ssh": RawClient(("127.0.0.1", fwd)), "direct": RawClient(("127.0.0.1", echo.port))}

        def both(
            label: str, fns: dict[str, Callable[[], object]], samples: int, warmup: int = 3
        ) -> tuple[dict[str, float], dict[str, float]]:
            s = interleaved(fns, samples, warmup=warmup)
            a, b = stats_ms(s["ssh"]), stats_ms(s["direct"])
            report(fmt(f"{label} [ssh]", a))
            report(fmt(f"{label} [direct]", b) + "   " + _ratio(a, b))
            return a, b

        # 1. a no-op call (warm connections)
        for c in clients.values():
            _ok(c.call("noop", None, (), {}))
        both(
            "raw 1-byte round trip",
            {k: (lambda r=r: r.roundtrip(b"x")) for k, r in raws.items()},
            n,
        )
        out["noop"] = both(
            "no-op call",
            {k: (lambda c=c: _ok(c.call("noop", None, (), {}))) for k, c in clients.items()},
            n,
        )

        # 2. save to live: one project, each edit made, synced and called by one side
        version = [1]

        def edit(c: Any) -> None:
            version[0] += 1
            (root / "app.py").write_text(textwrap.dedent(APP.format(version=version[0])))
            sync_project(c, root)
            while _ok(c.call("version", None, (), {})) != version[0]:
                pass

        out["save_to_live"] = both(
            "one-file edit, save to live",
            {k: (lambda c=c: edit(c)) for k, c in clients.items()},
            n,
            warmup=1,
        )

        # 4. 100 MB echoed back
        blob = os.urandom(big_mb * 1024 * 1024)
        big_n = max(3, n // 4)
        both(
            f"raw socket, {big_mb} MB up+back",
            {k: (lambda r=r: r.roundtrip(blob)) for k, r in raws.items()},
            big_n,
            warmup=1,
        )
        out["big"] = both(
            f"{big_mb} MB argument round trip",
            {
                k: (lambda c=c: _ok(c.call("echo", None, (blob,), {}, timeout=600)))
                for k, c in clients.items()
            },
            big_n,
            warmup=1,
        )
        blob = b""
        for r in raws.values():
            r.close()
        echo.close()

        # 3. the first sync of a big project: a fresh project (new bytes) and client each sample
        samples: dict[str, list[float]] = {"ssh": [], "direct": []}
        size_mb = 0.0
        for i in range(max(2, n // 10)):
            for kind in ("ssh", "direct") if i % 2 == 0 else ("direct", "ssh"):
                big_root = _project(tmp / f"big{i}{kind}", files=files, mb=mb)
                size_mb = sum(p.stat().st_size for p in big_root.rglob("*") if p.is_file()) / 1e6
                fresh = (
                    RuntimeClient("ssh://testhost")
                    if kind == "ssh"
                    else RuntimeClient(remote_url, link.token)
                )
                fresh.health()
                build_manifest(
                    big_root
                )  # hashed before the clock starts, as an editor's save finds them
                t = time.perf_counter()
                res = sync_project(fresh, big_root)
                samples[kind].append(time.perf_counter() - t)
                fresh._request("DELETE", f"/v1/projects/{res.project}")
                fresh.close()
                shutil.rmtree(big_root, ignore_errors=True)
        a, b = stats_ms(samples["ssh"]), stats_ms(samples["direct"])
        report(fmt(f"first sync, {files} files {size_mb:.0f} MB [ssh]", a))
        report(
            fmt(f"first sync, {files} files {size_mb:.0f} MB [direct]", b) + "   " + _ratio(a, b)
        )
        out["first_sync"] = (a, b)
        for c in clients.values():
            c.close()
        return out
    finally:
        if link is not None:
            try:
                link.stop_runtime()
            except Exception as exc:  # noqa: BLE001 - still stop the master and sshd
                report(f"(stopping the host's runtime: {exc})")
            link.close_master()
        host.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtt-ms", type=float, nargs="+", default=[50.0, 150.0])
    ap.add_argument(
        "--n",
        type=int,
        default=20,
        help="samples of the small operations (fewer of the large ones)",
    )
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--mb", type=float, default=50.0)
    ap.add_argument("--big-mb", type=int, default=100)
    ap.add_argument(
        "--ssh",
        action="store_true",
        help="instead: the same figures through an SSH tunnel (a throwaway "
        "sshd on loopback), no added delay, as a ratio to direct loopback to the same runtime",
    )
    a = ap.parse_args()
    os.chdir(ROOT)
    print(machine())
    if a.ssh:
        print(
            "\n== SSH tunnel (a throwaway OpenSSH server on loopback, ssh://testhost), no added delay, vs direct loopback"
        )
        measure_ssh(a.n, a.files, a.mb, a.big_mb)
        return
    for rtt in a.rtt_ms:
        print(
            f"\n== round trip {rtt:.0f} ms (DelayProxy, {rtt / 2:.0f} ms each way, no rate limit)"
        )
        remote = Remote(rtt / 1000).start()
        try:
            measure_all(remote, a.n, a.files, a.mb, a.big_mb)
        finally:
            remote.stop()


if __name__ == "__main__":
    main()
