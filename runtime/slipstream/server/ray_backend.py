"""The Ray backend: each pool worker is a Ray actor, placed by Ray on a node with its GPUs.

    slipstream serve --backend ray [--ray-address ADDR]

The pool logic (queue, scaling, timeouts, crash handling, reloads) is the local backend's; only
where a worker runs changes. A worker is a small supervisor actor created with the endpoint's
``num_gpus`` and ``accelerator_type:<type>`` resource. The actor starts the unchanged worker
(``python -m slipstream.worker.main --connect HOST:PORT``) as its child process, which dials this
runtime's worker port and authenticates with a secret made for that worker alone; from then on
it speaks the same messages as a local worker. Code reaches it through the runtime's own sync
(``fetch_url`` in init/load: the worker downloads the blobs it lacks, see fetch.py), never
through Ray's runtime_env, so a reload swaps code inside the live actor and keep() holds models
across edits. The actor returns the child's exit code, so crashes read as they do locally.

Importing this module imports ray; nothing else in slipstream imports it (``pip install
'slipstream[ray]'``). Settings by environment: SLIPSTREAM_RAY_WORKER_CPUS (CPUs per actor,
default 1), SLIPSTREAM_RAY_WORKER_HOST (the address actors dial; default 127.0.0.1 when every
node is this machine, else this node's IP, listening on all interfaces) and
SLIPSTREAM_RAY_AUTOSCALE=1 (the cluster has Ray's autoscaler: an endpoint whose GPU no node has
yet waits for one instead of being refused).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import itertools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ray

from ..protocol import envvars
from ..protocol.hosts import is_loopback
from ..protocol.ipc import PREFIX, ServerSide
from ..spec.catalog import catalog
from ..spec.catalog import cost as price_cost
from ..spec.endpoint_spec import EndpointSpec
from ..worker import fetch
from .backend import GpuFallbacks, Placement
from .gpus import Device
from .pools import ChannelWorker, exit_reason

__all__ = ["RayBackend", "RayWorker", "ClusterGPU", "ray_types"]

_ids = itertools.count(1)
_HELLO_MAX = 4096  # bytes of header a connection may send before it has authenticated
_HELLO_WAIT = 30.0  # seconds a connection may take to authenticate


@functools.cache
def ray_types() -> dict[str, list[str]]:
    """Catalog GPU name -> Ray accelerator types that satisfy it (data/ray_accelerators.toml)."""
    text = (
        resources.files("slipstream.spec")
        .joinpath("data", "ray_accelerators.toml")
        .read_text("utf-8")
    )
    return {k: list(v) for k, v in tomllib.loads(text)["types"].items()}


def _canonical(ray_type: str) -> str | None:
    for name, types in ray_types().items():
        if ray_type in types:
            return name
    hit = catalog().lookup(ray_type)
    return hit.name if hit else None


@dataclass(frozen=True)
class ClusterGPU(Device):
    """One GPU of a Ray node, as the runtime's health reports it."""

    node_id: str = ""
    node_ip: str = ""
    ray_type: str = ""


# --- the actor (runs on a Ray node) --------------------------------------------------------
class WorkerSupervisor:
    """A Ray actor holding one worker's resources; its child process is the worker itself."""

    def where(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {
            "node_id": ctx.get_node_id(),
            "ip": ray.util.get_node_ip_address(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "pid": os.getpid(),
        }

    def run(self, connect: str, worker_id: str, secret: str, env: dict[str, str]) -> dict[str, Any]:
        from ..worker.main import (
            set_parent_death_signal,  # the worker gets SIGKILL when its actor dies
        )

        full = {
            **envvars.without_runtime_token(dict(os.environ)),
            **env,
            envvars.WORKER_SECRET: secret,
        }
        full[envvars.RAY_NODE_ID] = ray.get_runtime_context().get_node_id()
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-P",  # the worker's own imports never see a project in the current folder
                    "-m",
                    "slipstream.worker.main",
                    "--connect",
                    connect,
                    "--worker-id",
                    worker_id,
                ],
                env=full,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=set_parent_death_signal if sys.platform == "linux" else None,
            )
            code = proc.wait()
            shutil.rmtree(fetch.worker_dir(proc.pid), ignore_errors=True)
            out.seek(max(out.seek(0, os.SEEK_END) - 2000, 0))
            tail = out.read().decode(errors="replace").strip()
        return {"returncode": code, "output": tail}


# --- the runtime side ------------------------------------------------------------------------
class _Hello(asyncio.Protocol):
    """A new connection on the worker port, until it proves which worker it is."""

    def __init__(self, listener: _Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.timer = asyncio.get_running_loop().call_later(_HELLO_WAIT, transport.close)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) < PREFIX.size:
            return
        hlen, blen = PREFIX.unpack_from(self.buf)
        if hlen > _HELLO_MAX or blen:
            return self._refuse()
        if len(self.buf) < PREFIX.size + hlen:
            return
        try:
            header = json.loads(self.buf[PREFIX.size : PREFIX.size + hlen])
        except ValueError:
            return self._refuse()
        worker = (
            self.listener.expected.get(str(header.get("worker", "")))
            if isinstance(header, dict)
            else None
        )
        secret = str(header.get("secret", "")).encode() if worker else b""
        if (
            worker is None
            or header.get("op") != "hello"
            or not hmac.compare_digest(secret, worker.secret.encode())
        ):
            return self._refuse()
        del self.listener.expected[worker.id]
        if self.timer:
            self.timer.cancel()
        header.pop("secret", None)
        rest = bytes(self.buf[PREFIX.size + hlen :])
        proto = ServerSide(worker._message, worker._lost)
        assert self.transport is not None
        self.transport.set_protocol(proto)
        proto.connection_made(self.transport)
        worker._attach(proto, header)
        _feed(proto, rest)

    def _refuse(self) -> None:
        if self.timer:
            self.timer.cancel()
        if self.transport:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer:
            self.timer.cancel()


def _feed(proto: ServerSide, data: bytes) -> None:
    view = memoryview(data)
    while view.nbytes:
        buf = proto.get_buffer(view.nbytes)
        n = min(len(buf), view.nbytes)
        buf[:n] = view[:n]
        proto.buffer_updated(n)
        view = view[n:]


class _Listener:
    """The runtime's worker port: actors' workers dial in and are paired with their handles."""

    def __init__(self, bind: str) -> None:
        self.bind = bind
        self.port = 0
        self.expected: dict[str, RayWorker] = {}
        self._server: asyncio.AbstractServer | None = None
        self._lock: asyncio.Lock | None = None

    async def ensure(self) -> int:
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._server is None:
                loop = asyncio.get_running_loop()
                self._server = await loop.create_server(lambda: _Hello(self), self.bind, 0)
                self.port = self._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.port


class RayWorker(ChannelWorker):
    """A pool worker on the Ray cluster: the handle the pool drives (see pools.WorkerHandle)."""

    def __init__(
        self, backend: RayBackend, pool: Any, env: dict[str, str], place: Placement
    ) -> None:
        super().__init__()
        self.id = f"{pool.name}-r{next(_ids)}"
        self.pid: int | None = None
        self.device = "cpu"
        self.devices: tuple[int, ...] = ()
        self.node_id = ""
        self.node_ip = ""
        self.note = ""
        self.started_by = "ray"
        self.secret = secrets.token_urlsafe(32)
        self.place = place
        self._backend = backend
        self._pool = pool
        self._env = env
        self._actor: Any = None
        self._connected = False

    # --- lifecycle --------------------------------------------------------------------
    async def start(self, init: dict[str, Any]) -> dict[str, Any]:
        b = self._backend
        self._gone = asyncio.Event()
        port = await b.listener.ensure()
        b.listener.expected[self.id] = self
        hello = self._expect("hello")
        try:
            self._actor = b.actor_class().options(**b.actor_options(self)).remote()
        except Exception:
            b.listener.expected.pop(self.id, None)
            raise
        where = asyncio.ensure_future(self._actor.where.remote())
        env = b.worker_env(self._env)
        run = self._actor.run.remote(f"{b.worker_host}:{port}", self.id, self.secret, env)
        asyncio.ensure_future(self._watch(run))
        done, _ = await asyncio.wait({where}, timeout=b.placement_notice_s)
        if not done:
            self._log(
                f"worker {self.id} is waiting for Ray to place it (needs {self.place.label}"
                f"{', and the autoscaler to add a node' if b.autoscale else ''}; "
                f"cluster free: {b.free_summary()})"
            )
        try:
            info = await where
        except Exception:  # noqa: BLE001 - the actor died; _watch reports why and fails `hello`
            info = {}
        self.node_id, self.node_ip = info.get("node_id", ""), info.get("ip", "")
        self.devices = tuple(int(g) for g in info.get("gpu_ids", []) if str(g).isdigit())
        await hello
        if not init:
            return {}
        self.send(init)
        reply = await self._expect("ready", "fatal")
        self.device = (
            f"{reply.get('device', 'cpu')} on ray node {self.node_ip} ({self.node_id[:8]})"
        )
        return reply

    async def _watch(self, run: Any) -> None:
        try:
            res = await run
        except Exception as exc:  # noqa: BLE001 - RayActorError and kin: the actor is gone
            where = f" on node {self.node_ip}" if self.node_ip else ""
            reason = (
                self._killed or f"the Ray actor of worker {self.id}{where} died ({_summary(exc)})"
            )
        else:
            reason = exit_reason(res.get("returncode"), self._killed)
            out = res.get("output", "")
            if not self._connected and not self._killed:
                reason += " before it connected to the runtime" + (
                    f": {out[-1500:]}" if out else ""
                )
            elif out and not self._killed:
                reason += f" (its last output: {out[-300:]})"
        self._report_exit(reason)

    def _attach(self, proto: ServerSide, hello: dict[str, Any]) -> None:
        self._proto = proto
        self._connected = True
        self.pid = hello.get("pid")
        self._message(hello, bytearray())

    def _lost(self, exc: Exception | None) -> None:
        if not self._exited:  # the actor's answer says how the worker ended; wait a moment for it
            asyncio.get_running_loop().call_later(
                3.0,
                self._report_exit,
                self._killed or "the worker's connection to the runtime closed unexpectedly",
            )

    def _report_exit(self, reason: str) -> None:
        if self._exited:
            return
        self._exited = True
        self._backend.listener.expected.pop(self.id, None)
        if self._gone is not None:
            self._gone.set()
        self._fail_waiters(reason)
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._kill_actor()
        self._pool._on_worker_exit(self, reason)

    def _kill_actor(self) -> None:
        if self._actor is not None:
            try:
                ray.kill(self._actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def kill(self, reason: str = "the worker was stopped") -> None:
        self._killed = self._killed or reason
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._kill_actor()

    def _never_started(self) -> None:
        self._kill_actor()

    def _did_not_exit(self) -> None:
        self._report_exit(self._killed or "the worker was stopped")

    # --- messages ---------------------------------------------------------------------
    def _message(self, header: dict[str, Any], body: bytearray) -> None:
        if self._take_reply(header):
            return
        if header.get("op") in ("result", "error"):
            self._backend.meter(self, float(header.get("duration", 0.0)))
        self._pool._on_worker_message(self, header, body)

    def send(self, header: dict[str, Any], body: Any = ()) -> None:
        if header.get("op") in ("init", "load"):  # code comes from the runtime, not the node's disk
            header = {
                **header,
                "fetch_url": self._backend.fetch_url(self._env),
                "fetch_token": self._env.get(envvars.TOKEN, ""),
            }
        super().send(header, body)

    def _log(self, text: str) -> None:
        self._pool.logs.emit(endpoint=self._pool.name, stream="system", text=text)


def _summary(exc: BaseException) -> str:
    """The gist of a RayActorError (Ray's own text runs to a paragraph of possible causes)."""
    text = " ".join(str(exc).split())
    for marker in ("Worker exit detail:", "The actor is dead because"):
        if marker in text:
            detail = text.split(marker, 1)[1].split(" Some common causes", 1)[0].strip()
            return f"{detail} Killed by a signal, the out-of-memory killer or `ray stop`?"[:400]
    return text[:400] or type(exc).__name__


class RayBackend:
    """Pools of Ray actors on a Ray cluster (``slipstream serve --backend ray``; a
    `backend.Backend`). Its placement names what the actors ask Ray for (a GPU type in catalog
    and Ray names, and a count); Ray picks the node and the devices."""

    name = "ray"
    forks = False  # actors start their worker on their own node
    placement_notice_s = 10.0

    def __init__(
        self,
        address: str | None = None,
        *,
        worker_cpus: float | None = None,
        worker_host: str | None = None,
        autoscale: bool | None = None,
        init: bool = True,
    ) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or ""
        self.worker_cpus = float(
            worker_cpus if worker_cpus is not None else os.environ.get(envvars.RAY_WORKER_CPUS, 1)
        )
        self.autoscale = (
            autoscale
            if autoscale is not None
            else os.environ.get(envvars.RAY_AUTOSCALE, "") not in ("", "0")
        )
        if init and not ray.is_initialized():
            ray.init(
                address=address or None,
                namespace="slipstream",
                include_dashboard=False,
                ignore_reinit_error=True,
                configure_logging=False,
            )
        self.id = secrets.token_hex(4)
        self._nodes_at = 0.0
        self._nodes_cache: list[dict[str, Any]] = []
        self._placed: dict[str, Placement] = {}
        self._meter: dict[tuple[str, str], dict[str, float]] = {}
        self._actor_cls: Any = None
        self._warned_url = False
        here = ray.util.get_node_ip_address()
        ips = {n["NodeManagerAddress"] for n in self.nodes()}
        host = worker_host or os.environ.get(envvars.RAY_WORKER_HOST, "")
        self.remote = bool(
            (host and not is_loopback(host))
            or self.address.startswith("ray://")
            or ips - {here}
            or self.autoscale
        )
        self.worker_host = host or (here if self.remote else "127.0.0.1")
        self.listener = _Listener("0.0.0.0" if self.remote else "127.0.0.1")

    # --- cluster facts ----------------------------------------------------------------
    def nodes(self, max_age: float = 1.0) -> list[dict[str, Any]]:
        """Alive nodes (ray.nodes()), cached for max_age seconds."""
        if time.monotonic() - self._nodes_at > max_age:
            self._nodes_cache = [n for n in ray.nodes() if n.get("Alive")]
            self._nodes_at = time.monotonic()
        return self._nodes_cache

    @staticmethod
    def _node_type(node: dict[str, Any]) -> str:
        return next(
            (
                k.split(":", 1)[1]
                for k in node.get("Resources", {})
                if k.startswith("accelerator_type:")
            ),
            "",
        )

    def inventory(self) -> list[Device]:
        """Every GPU of every alive node, by node and type (the runtime's health `gpus`)."""
        return list(self.cluster_gpus())

    def cluster_gpus(self) -> list[ClusterGPU]:
        out: list[ClusterGPU] = []
        for n in self.nodes():
            count = int(n.get("Resources", {}).get("GPU", 0))
            rtype = self._node_type(n)
            canonical = _canonical(rtype) if rtype else None
            gpu = catalog().lookup(canonical) if canonical else None
            for i in range(count):
                out.append(
                    ClusterGPU(
                        i,
                        canonical or rtype or "GPU",
                        gpu.vram_gb if gpu else 0.0,
                        canonical,
                        node_id=n["NodeID"],
                        node_ip=n["NodeManagerAddress"],
                        ray_type=rtype,
                    )
                )
        return out

    def _available(self) -> dict[str, dict[str, float]]:
        try:
            from ray._private.state import available_resources_per_node

            return available_resources_per_node()
        except Exception:  # noqa: BLE001 - an internal API; the health still answers without it
            return {}

    def cluster(self) -> dict[str, Any]:
        """Nodes, GPU types and metering per node and GPU type (the runtime's health `cluster`)."""
        avail = self._available()
        nodes: list[dict[str, Any]] = []
        types: dict[str, dict[str, float]] = {}
        for n in self.nodes():
            res, free = n.get("Resources", {}), avail.get(n["NodeID"], {})
            rtype = self._node_type(n)
            gpu = (_canonical(rtype) or rtype) if rtype else ("GPU" if res.get("GPU") else None)
            nodes.append(
                {
                    "node_id": n["NodeID"],
                    "ip": n["NodeManagerAddress"],
                    "gpu": gpu,
                    "ray_accelerator_type": rtype or None,
                    "gpus": res.get("GPU", 0),
                    "gpus_free": free.get("GPU", 0) if avail else None,
                    "cpus": res.get("CPU", 0),
                    "cpus_free": free.get("CPU", 0) if avail else None,
                }
            )
            if gpu:
                t = types.setdefault(gpu, {"nodes": 0, "gpus": 0, "gpus_free": 0})
                t["nodes"] += 1
                t["gpus"] += res.get("GPU", 0)
                t["gpus_free"] += free.get("GPU", 0)
        return {
            "address": self.address or "local",
            "worker_host": self.worker_host,
            "worker_port": self.listener.port or None,
            "autoscale": self.autoscale,
            "nodes": nodes,
            "gpu_types": types,
            "metering": [
                {"node_id": node, "gpu": label, **{k: round(v, 8) for k, v in m.items()}}
                for (node, label), m in sorted(self._meter.items())
            ],
        }

    def free_summary(self) -> str:
        try:
            free = ray.available_resources()
        except Exception:  # noqa: BLE001
            return "unknown"
        keys = ["CPU", "GPU"] + sorted(k for k in free if k.startswith("accelerator_type:"))
        return ", ".join(f"{k} {free[k]:g}" for k in keys if k in free) or "nothing"

    def meter(self, w: RayWorker, seconds: float) -> None:
        m = self._meter.setdefault(
            (w.node_id, w.place.label), {"calls": 0, "busy_s": 0.0, "gpu_s": 0.0, "cost_usd": 0.0}
        )
        m["calls"] += 1
        m["busy_s"] += seconds
        m["gpu_s"] += seconds * w.place.count
        m["cost_usd"] += price_cost(w.place.label, seconds) if w.place.gpu else 0.0

    # --- placement --------------------------------------------------------------------
    def gpu_fallbacks(self, spec: EndpointSpec) -> GpuFallbacks:
        """None: a call that runs out of CUDA memory on a cluster fails as it is."""
        return []

    def placement(self, spec: EndpointSpec, gpu_fallback: bool = False) -> Placement:
        """What the endpoint's actors ask Ray for (remembered for create()), with a note when it
        is a fallback, or why no node can run it."""
        req = spec.gpu_request
        if req.is_cpu:
            place = self._placed[spec.name] = Placement()
            return place
        nodes = self.nodes(max_age=0)

        def node_with(ray_type: str, count: int) -> bool:
            return any(
                n["Resources"].get(f"accelerator_type:{ray_type}", 0) > 0
                and n["Resources"].get("GPU", 0) >= count
                for n in nodes
            )

        for choice in req.choices:
            for t in ray_types().get(choice.gpu.name, [choice.gpu.name]):
                if node_with(t, choice.count):
                    place = Placement(gpu=choice.gpu.name, ray_type=t, count=choice.count)
                    self._placed[spec.name] = place
                    return place
        primary = req.primary
        assert primary is not None
        wanted = ray_types().get(primary.gpu.name, [primary.gpu.name])
        have = (
            ", ".join(
                sorted({f"{g.canonical or g.name} on {g.node_ip}" for g in self.cluster_gpus()})
            )
            or "no GPU"
        )
        if self.autoscale:
            place = Placement(
                note=(
                    f"no node in the Ray cluster has {primary.label} yet; "
                    "workers wait for Ray's autoscaler "
                    f"to add one (resource accelerator_type:{wanted[0]})"
                ),
                gpu=primary.gpu.name,
                ray_type=wanted[0],
                count=primary.count,
            )
            self._placed[spec.name] = place
            return place
        if gpu_fallback:
            for g in self.cluster_gpus():
                if g.ray_type and node_with(g.ray_type, primary.count):
                    place = Placement(
                        note=f"this Ray cluster has no {req.label}; "
                        f"running on {g.canonical or g.ray_type} instead",
                        gpu=g.canonical or g.ray_type,
                        ray_type=g.ray_type,
                        count=primary.count,
                    )
                    self._placed[spec.name] = place
                    return place
            place = Placement(
                note=f"this Ray cluster has no GPU for {req.label}; {spec.name!r} runs on the CPU"
            )
            self._placed[spec.name] = place
            return place
        self._placed.pop(spec.name, None)
        return Placement(
            unavailable=(
                f"endpoint {spec.name!r} asks for {req.label} but no node of the Ray cluster "
                f"has it (needs resource accelerator_type:{wanted[0]} and {primary.count} GPU(s) "
                f"on one node; the cluster has {have}). Add such a node (`ray start --resources "
                f"'{{\"accelerator_type:{wanted[0]}\": 1}}'` on a machine with that GPU), "
                "or let Ray's autoscaler add one: list a node type with that GPU in the cluster "
                "config (or KubeRay worker group) and start the runtime with "
                "SLIPSTREAM_RAY_AUTOSCALE=1 so calls wait for it; "
                "or add a fallback (gpu=[...]), or start the runtime with --gpu-fallback."
            ),
        )

    # --- workers ----------------------------------------------------------------------
    def create(self, pool: Any, env: dict[str, str], devices: tuple[int, ...]) -> RayWorker:
        place = self._placed.get(pool.name)
        if place is None:
            self.placement(pool.spec)
            place = self._placed.get(pool.name, Placement())
        return RayWorker(self, pool, env, place)

    def actor_class(self) -> Any:
        if self._actor_cls is None:
            self._actor_cls = ray.remote(WorkerSupervisor)
        return self._actor_cls

    def actor_options(self, w: RayWorker) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "name": f"slipstream-{self.id}-{w.id}",
            "num_cpus": self.worker_cpus,
            "num_gpus": w.place.count,
            "max_restarts": 0,
            "max_task_retries": 0,
            # a pool's workers on different nodes, as Ray Serve spreads its replicas
            "scheduling_strategy": "SPREAD",
        }
        if w.place.ray_type:
            opts["resources"] = {f"accelerator_type:{w.place.ray_type}": 0.001}
        deps = list(getattr(w._pool.spec, "dependencies", ()) or ())
        if (
            deps
        ):  # packages are an actor-start matter on Ray: its runtime_env installs them per node
            opts["runtime_env"] = {"pip": deps}
        return opts

    def _reachable(self, url: str) -> str:
        """The runtime's URL as a node reaches it (0.0.0.0 -> the advertised host)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if self.remote and host in ("0.0.0.0", "::", ""):
            netloc = f"{self.worker_host}:{parts.port}" if parts.port else self.worker_host
            return urlunsplit(parts._replace(netloc=netloc))
        if self.remote and is_loopback(host) and not self._warned_url:
            self._warned_url = True
            print(
                f"slipstream: the runtime listens on {host} only, so Ray nodes on other "
                "machines cannot fetch "
                "code from it: start `slipstream serve --host 0.0.0.0 --token ...`",
                file=sys.stderr,
                flush=True,
            )
        return url

    def fetch_url(self, env: dict[str, str]) -> str:
        return self._reachable(env.get(envvars.RUNTIME_URL, ""))

    def worker_env(self, env: dict[str, str]) -> dict[str, str]:
        out = dict(env)
        if envvars.RUNTIME_URL in out:
            out[envvars.RUNTIME_URL] = self._reachable(out[envvars.RUNTIME_URL])
        return out
