"""The Ray backend against a real local two-node Ray cluster (ray.cluster_utils.Cluster).

The second node fakes an H100: `num_gpus=1` plus the resource `accelerator_type:H100`, which is
what Ray itself puts on a node with that card. The runtime is `slipstream serve --backend ray`
attached to the cluster; this process is a second Ray driver so it can look at the actors.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import socket
import struct
import time
from collections.abc import Iterator

import httpx
import pytest

ray = pytest.importorskip(
    "ray", reason="the Ray backend tests need ray: pip install 'slipstream[ray]'"
)

from slipstream.protocol.errors import EndpointTimeout, SlipstreamError, WorkerCrashed  # noqa: E402
from tests.conftest import RunningRuntime, start_runtime  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

STORE_MB = 80 * 1024 * 1024  # Ray's object store is unused here: keep it small

APP = """
import os, signal, time
from slipstream import endpoint

def where():
    return {"node": os.environ.get("SLIPSTREAM_RAY_NODE_ID"), "pid": os.getpid()}

@endpoint
def hello(name):
    return f"hello {name}"

@endpoint
def echo(x):
    return x

@endpoint
def boom():
    raise ValueError("bad input")

@endpoint(workers=(0, 2), idle_timeout=2)
def spread(i, delay=0.8):
    time.sleep(delay)
    return {**where(), "i": i}

@endpoint(gpu="H100", workers=(0, 1), idle_timeout=1)
def on_h100():
    return {**where(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}

@endpoint(gpu="A100-80GB")
def on_a100():
    return "never"

@endpoint(timeout=1)
def sleepy(seconds):
    time.sleep(seconds)
    return "woke"

@endpoint(workers=(0, 2), idle_timeout=30)
def fragile(mode="ok", delay=0.0):
    time.sleep(delay)
    if mode == "exit":
        os._exit(3)
    if mode == "actor":
        os.kill(os.getppid(), signal.SIGKILL)  # the Ray actor hosting this worker dies
        time.sleep(30)
    return os.getpid()
"""

MODEL = """
import os, time
from slipstream import endpoint, keep
from slipstream.keeper import stats

VERSION = {version}

def load_model():
    time.sleep(0.5)  # a slow "model" load
    return {{"loaded_by": os.getpid()}}

@endpoint
class Model:
    def setup(self):
        self.model = keep("weights", load_model)

    def info(self):
        return {{"version": VERSION, "loads": stats().loads, "pid": os.getpid(),
                 "loaded_by": self.model["loaded_by"], "file": __file__}}
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "num_gpus": 0,
            "object_store_memory": STORE_MB,
            "include_dashboard": False,
        },
    )
    gpu = c.add_node(
        num_cpus=2, num_gpus=1, resources={"accelerator_type:H100": 1}, object_store_memory=STORE_MB
    )
    ray.init(
        address=c.address, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    try:
        yield {"address": c.address, "head": c.head_node.node_id, "gpu_node": gpu.node_id}
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def ray_runtime(cluster) -> Iterator[RunningRuntime]:
    rt = start_runtime(
        "--backend",
        "ray",
        "--ray-address",
        cluster["address"],
        env={"SLIPSTREAM_RAY_WORKER_CPUS": "0.5"},
    )
    yield rt
    rt.stop()


@pytest.fixture()
def app(ray_runtime, project_factory):
    return project_factory(ray_runtime, {"rayapp.py": APP}, name="rayapp").module("rayapp")


def _get(rt: RunningRuntime, path: str) -> dict:
    return httpx.get(
        f"{rt.url}{path}", headers={"Authorization": f"Bearer {rt.token}"}, timeout=30
    ).json()


def _actors() -> list[str]:
    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("slipstream-")
    ]


def _wait(cond, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_health_reports_the_cluster_gpus_per_node(ray_runtime, cluster):
    h = httpx.get(f"{ray_runtime.url}/health").json()
    assert h["backend"] == "ray"
    assert [(g["name"], g["node_id"]) for g in h["gpus"]] == [("H100", cluster["gpu_node"])]
    assert h["gpus"][0]["memory_gb"] == 80 and h["gpus"][0]["ray_type"] == "H100"
    nodes = {n["node_id"]: n for n in h["cluster"]["nodes"]}
    assert set(nodes) == {cluster["head"], cluster["gpu_node"]}
    assert nodes[cluster["gpu_node"]]["gpu"] == "H100" and nodes[cluster["head"]]["gpu"] is None
    assert h["cluster"]["gpu_types"]["H100"]["gpus"] == 1


def test_calls_and_remote_exceptions(app):
    assert app.hello("ray") == "hello ray"
    with pytest.raises(ValueError, match="bad input") as exc:
        app.boom()
    assert "rayapp.py" in str(exc.value.__cause__), "the remote traceback names the user's file"


def test_large_payloads_cross_the_tcp_channel(app):
    blob = bytes(range(256)) * (12 * 1024)  # 3 MB each way, over the worker's TCP connection
    assert app.echo(blob) == blob


def test_map_fans_out_across_actors_on_both_nodes(app, cluster):
    out = list(app.spread.map(range(6)))
    assert [o["i"] for o in out] == list(range(6))
    assert {o["node"] for o in out} == {cluster["head"], cluster["gpu_node"]}, "one actor per node"
    assert len({o["pid"] for o in out}) == 2, "two workers (workers=(0, 2))"


def test_placement_by_gpu_type_and_scale_to_zero(app, ray_runtime, cluster):
    out = app.on_h100()
    assert out["node"] == cluster["gpu_node"], (
        "an H100 endpoint lands only on the node with that resource"
    )
    assert out["cuda"] == "0", "Ray assigned the node's GPU to the actor"
    pool = _get(ray_runtime, "/v1/endpoints/on_h100")["pool"]
    assert len(pool["workers"]) == 1 and "ray node" in pool["workers"][0]["device"]
    assert any("on_h100" in name for name in _actors())

    def free() -> float:
        return _get(ray_runtime, "/health")["cluster"]["gpu_types"]["H100"]["gpus_free"]

    assert free() == 0, "the actor holds the GPU while it is warm"
    from slipstream.sdk import session

    session.current().detach()  # an attached dev session would keep one worker warm
    # scale to zero: the idle worker stops and its actor is removed from the cluster
    _wait(
        lambda: not _get(ray_runtime, "/v1/endpoints/on_h100")["pool"]["workers"],
        what="scale to zero",
    )
    _wait(lambda: not any("on_h100" in name for name in _actors()), what="the actor to be removed")
    _wait(lambda: free() == 1, what="the GPU to be free again")
    assert app.on_h100()["node"] == cluster["gpu_node"], "and it scales from zero again"
    meter = _get(ray_runtime, "/health")["cluster"]["metering"]
    h100 = [m for m in meter if m["gpu"] == "H100"]
    assert h100 and h100[0]["node_id"] == cluster["gpu_node"] and h100[0]["calls"] == 2
    assert h100[0]["cost_usd"] > 0


def test_an_endpoint_for_a_gpu_no_node_has_is_refused_clearly(app):
    with pytest.raises(SlipstreamError, match="A100-80GB") as exc:
        app.on_a100()
    assert "autoscaler" in str(exc.value) and "accelerator_type:A100-80G" in str(exc.value)


def test_crash_fails_only_its_own_request_and_is_replaced(app, ray_runtime):
    app.fragile()
    with cf.ThreadPoolExecutor(2) as ex:
        ok = ex.submit(app.fragile, "ok", 1.5)
        time.sleep(0.3)
        with pytest.raises(WorkerCrashed, match="exited with code 3"):
            app.fragile("exit")
        assert isinstance(ok.result(), int), "the call on the other actor finishes"
    assert isinstance(app.fragile(), int), "a new actor serves the next call"
    with pytest.raises(WorkerCrashed, match="Ray actor"):
        app.fragile("actor")
    assert isinstance(app.fragile(), int)
    assert app.hello("again") == "hello again", "other endpoints never noticed"
    assert _get(ray_runtime, "/v1/endpoints/fragile")["stats"]["crashes"] == 2


def test_timeout_kills_the_actor_and_the_next_call_works(app, ray_runtime):
    started = time.perf_counter()
    with pytest.raises(EndpointTimeout, match="timeout of 1s"):
        app.sleepy(10)
    assert time.perf_counter() - started < 8
    assert app.sleepy(0) == "woke"
    assert _get(ray_runtime, "/v1/endpoints/sleepy")["stats"]["timeouts"] == 1


def test_worker_port_refuses_connections_without_the_worker_secret(ray_runtime, app):
    app.hello("warm")  # the worker port opens with the first worker
    port = _get(ray_runtime, "/health")["cluster"]["worker_port"]
    for hello in (
        {"op": "hello", "pid": 1, "worker": "hello-r1", "secret": "guess"},
        {"op": "call", "id": 1},
    ):
        raw = json.dumps(hello).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(struct.pack("<IQ", len(raw), 0) + raw)
            assert s.recv(1) == b"", "the runtime hangs up"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            struct.pack("<IQ", 1 << 30, 1 << 40)
        )  # absurd sizes are refused before any allocation
        assert s.recv(1) == b""
    assert app.hello("still") == "hello still"


def test_reload_keeps_the_model_loaded_in_the_actor(ray_runtime, project_factory):
    proj = project_factory(ray_runtime, {"model.py": MODEL.format(version=0)}, name="rayreload")
    mod = proj.module("model")
    first = mod.Model().info()
    assert first["version"] == 0 and first["loads"] == 1
    assert "slipstream-cache" in first["file"], (
        "the actor runs code fetched from the runtime, not its disk"
    )
    for v in (1, 2):
        proj.write("model.py", MODEL.format(version=v))
        proj.sync()
        now = mod.Model().info()
        assert now["version"] == v, "the edit is live on the next call"
        assert now["loads"] == 1 and now["pid"] == first["pid"], "same actor, model still loaded"
    stats = _get(ray_runtime, "/v1/endpoints/Model")["stats"]
    assert stats["reloads"] == 2 and stats["model_loads"] == 0 and stats["started_workers"] == 1


def test_placement_decisions(cluster):
    from slipstream.server.backend import Placement
    from slipstream.server.ray_backend import RayBackend, ray_types
    from slipstream.spec.endpoint_spec import EndpointSpec

    b = RayBackend(init=False)  # this process is already a driver of the test cluster
    assert b.worker_host == "127.0.0.1" and b.listener.bind == "127.0.0.1", (
        "a one-machine cluster stays on loopback"
    )
    assert b.placement(EndpointSpec("cpu")) == Placement()
    h = b.placement(EndpointSpec("h", gpu=("H100",)))
    assert (h.note, h.unavailable, h.slots) == ("", "", []), "Ray picks the node and devices"
    assert h.ray_type == "H100" and h.count == 1 and b._placed["h"] is h, "create() asks for it"
    why = b.placement(EndpointSpec("two", gpu=("H100:2",))).unavailable
    assert "H100:2" in why and "2 GPU(s) on one node" in why, "two GPUs must be on one node"
    fb = b.placement(EndpointSpec("fb", gpu=("A100-80GB", "H100")))
    assert (fb.note, fb.unavailable) == ("", "") and fb.gpu == "H100", (
        "the first choice the cluster has"
    )
    a = b.placement(EndpointSpec("a", gpu=("A100-80GB",)), gpu_fallback=True)
    assert not a.unavailable and "running on H100 instead" in a.note and a.label == "H100"
    auto = RayBackend(init=False, autoscale=True)
    a = auto.placement(EndpointSpec("a", gpu=("A100-80GB",)))
    assert not a.unavailable and "autoscaler" in a.note and a.ray_type == "A100-80G"
    assert auto.listener.bind == "0.0.0.0", "nodes the autoscaler adds must reach the worker port"
    far = RayBackend(init=False, worker_host="10.1.2.3")
    assert far.listener.bind == "0.0.0.0" and far.worker_host == "10.1.2.3"
    assert (
        far.fetch_url({"SLIPSTREAM_RUNTIME_URL": "http://0.0.0.0:8765"}) == "http://10.1.2.3:8765"
    )
    from slipstream.spec.catalog import catalog

    assert set(ray_types()) == {g.name for g in catalog()}, (
        "every catalog GPU has Ray accelerator types"
    )
