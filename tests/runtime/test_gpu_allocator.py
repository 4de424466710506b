"""One GPU allocator per runtime (server/allocator.py; docs/gpus.md): workers spread over the
GPUs, share one only when its free memory fits, wait (releasing other endpoints' idle workers)
when nothing fits, and fail at once when they never can. Faked inventories with memory."""

from __future__ import annotations

import concurrent.futures as cf
import time

import httpx
import pytest

from tests.conftest import start_runtime

VISIBLE = "import os\n\ndef _visible():\n    return os.environ.get('CUDA_VISIBLE_DEVICES')\n"

PIPELINE = (
    VISIBLE
    + """
from slipstream import endpoint

LLM = "Qwen/Qwen3-8B"

@endpoint(gpu="H100")
def write_prompt():
    name = LLM  # the model it would load
    return _visible()

@endpoint(gpu="H100")
class Paint:
    def setup(self):
        self.model = "stabilityai/stable-diffusion-xl-base-1.0"

    def paint(self):
        return _visible()
"""
)

TEAM_A = (
    VISIBLE
    + """
from slipstream import endpoint

@endpoint(gpu="H100", workers=(1, 1))
def one():
    return _visible()

@endpoint(gpu="H100:2", workers=(1, 1))
def pair():
    return _visible()
"""
)

TEAM_B = (
    VISIBLE
    + """
from slipstream import endpoint

@endpoint(gpu="H100", workers=(1, 1))
def other():
    return _visible()
"""
)

WAITER = (
    VISIBLE
    + """
import time
from slipstream import endpoint

@endpoint(gpu="H100", gpu_memory=30, idle_timeout=600)
def big(delay=0.0):
    time.sleep(delay)
    return _visible()

@endpoint(gpu="H100", gpu_memory=30)
def late():
    return _visible()
"""
)

HUGE = (
    VISIBLE
    + """
from slipstream import endpoint

@endpoint(gpu="H100", gpu_memory=100)
def huge():
    return _visible()

@endpoint(gpu="H100", gpu_memory=30)
def small():
    return _visible()
"""
)


def _health(rt) -> dict:
    return httpx.get(f"{rt.url}/health").json()


def _status(rt) -> dict:
    return httpx.get(
        f"{rt.url}/v1/endpoints", headers={"Authorization": f"Bearer {rt.token}"}
    ).json()


def test_the_fake_inventory_takes_counts_and_memory(monkeypatch):
    from slipstream.server.gpus import inventory

    monkeypatch.setenv("SLIPSTREAM_FAKE_GPUS", "H100,2xH100@24,A100-80GB")
    got = [(d.index, d.canonical, d.memory_gb) for d in inventory()]
    assert got == [(0, "H100", 80), (1, "H100", 24), (2, "H100", 24), (3, "A100-80GB", 80)]


def test_memory_per_worker_gpu_memory_then_the_models_then_a_default():
    from slipstream.server.allocator import memory_need

    assert memory_need(12, ["Qwen/Qwen3-8B"], 1, 80, 4) == (12, "gpu_memory=")
    gb, basis = memory_need(None, ["Qwen/Qwen3-8B"], 1, 80, 4)
    assert 15 < gb < 40 and "Qwen/Qwen3-8B" in basis
    assert memory_need(None, ["Qwen/Qwen3-32B"], 1, 24, 4)[0] == 24, "an estimate never refuses"
    assert memory_need(None, [], 1, 80, 4)[0] == 80, "an unknown endpoint: the whole GPU"
    assert memory_need(None, [], 1, 80, 1)[0] == 0, "one GPU: shared, nothing reserved"


@pytest.fixture(scope="module")
def one_gpu():
    rt = start_runtime(env={"SLIPSTREAM_FAKE_GPUS": "H100@40"})
    yield rt
    rt.stop()


def test_the_image_pipeline_shares_one_gpu_by_its_models_estimates(one_gpu, project_factory):
    app = project_factory(one_gpu, {"pipe.py": PIPELINE}).module("pipe")
    assert app.write_prompt() == "0"
    assert app.Paint().paint() == "0"
    (gpu,) = _health(one_gpu)["gpu_use"]
    held = {h["endpoint"]: h["gb"] for h in gpu["holders"]}
    assert set(held) == {"write_prompt", "Paint"}, gpu
    assert 0 < held["Paint"] < held["write_prompt"] and sum(held.values()) <= 40
    assert gpu["reserved_gb"] == pytest.approx(sum(held.values()), abs=0.01)


@pytest.fixture(scope="module")
def four_gpus():
    rt = start_runtime(env={"SLIPSTREAM_FAKE_GPUS": "4xH100"})
    yield rt
    rt.stop()


def test_three_endpoints_of_two_projects_spread_over_four_gpus(four_gpus, project_factory):
    a = project_factory(four_gpus, {"team_a.py": TEAM_A}, name="a").module("team_a")
    seen = [a.one(), a.pair()]
    # a second project (the SDK's session serves one project at a time)
    b = project_factory(four_gpus, {"team_b.py": TEAM_B}, name="b").module("team_b")
    seen.append(b.other())
    devices = [set(s.split(",")) for s in seen]
    assert [len(d) for d in devices] == [1, 2, 1], seen
    assert set.union(*devices) == {"0", "1", "2", "3"}, f"each on its own GPUs: {seen}"
    use = _health(four_gpus)["gpu_use"]
    assert all(len(g["holders"]) == 1 and g["reserved_gb"] == 80 for g in use), use


@pytest.fixture(scope="module")
def small_gpu():
    rt = start_runtime(env={"SLIPSTREAM_FAKE_GPUS": "H100@48"})
    yield rt
    rt.stop()


def test_a_call_waits_saying_who_holds_the_gpu_then_runs_when_an_idle_worker_goes(
    small_gpu, project_factory
):
    app = project_factory(small_gpu, {"waiter.py": WAITER}).module("waiter")
    assert app.big() == "0"  # warm, 30 of 48 GB: late's 30 GB does not fit beside it
    with cf.ThreadPoolExecutor(2) as ex:
        busy = ex.submit(app.big, 2.0)
        time.sleep(0.5)
        late = ex.submit(app.late)
        waiting = ""
        deadline = time.monotonic() + 10
        while not waiting and time.monotonic() < deadline:
            eps = {e["name"]: e for e in _status(small_gpu)["endpoints"]}
            waiting = eps["late"]["pool"]["waiting"]
            time.sleep(0.05)
        assert "GPU 0" in waiting and "big worker" in waiting and "30 GB" in waiting, waiting
        assert busy.result(timeout=30) == "0"
        assert late.result(timeout=30) == "0", "big's idle worker was stopped to make room"
    (gpu,) = _health(small_gpu)["gpu_use"]
    assert [h["endpoint"] for h in gpu["holders"]] == ["late"], gpu


@pytest.fixture(scope="module")
def eight_gpus():
    rt = start_runtime(env={"SLIPSTREAM_FAKE_GPUS": "8xH100@80"})
    yield rt
    rt.stop()


def test_a_worker_that_can_never_fit_fails_at_once_naming_the_gpus(eight_gpus, project_factory):
    from slipstream.protocol.errors import SlipstreamError

    app = project_factory(eight_gpus, {"huge.py": HUGE}).module("huge")
    started = time.monotonic()
    with pytest.raises(SlipstreamError, match=r"100 GB.*GPU 0 H100 \(80 GB\).*GPU 7"):
        app.huge()
    assert time.monotonic() - started < 5


def test_status_and_metrics_say_who_holds_each_gpu(eight_gpus, project_factory):
    proj = project_factory(eight_gpus, {"held.py": HUGE}, name="held")
    assert proj.module("held").small() == "0"
    use = _health(eight_gpus)["gpu_use"]
    assert len(use) == 8 and use[0]["memory_gb"] == 80 and use[0]["reserved_gb"] == 30
    (h,) = use[0]["holders"]
    assert h["endpoint"] == "small" and h["worker"].startswith("small-") and h["project"]
    assert _status(eight_gpus)["runtime"]["gpu_use"] == use
    metrics = httpx.get(
        f"{eight_gpus.url}/metrics", headers={"Authorization": f"Bearer {eight_gpus.token}"}
    ).text
    assert 'slipstream_gpu_memory_total_gb{gpu="7",name="H100"} 80' in metrics
    assert (
        f'slipstream_gpu_memory_reserved_gb{{gpu="0",name="H100",project="{h["project"]}",endpoint="small",worker="{h["worker"]}"}} 30'
        in metrics
    )
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPSTREAM_")}
    env.update(SLIPSTREAM_RUNTIME_URL=eight_gpus.url, SLIPSTREAM_TOKEN=eight_gpus.token)
    out = subprocess.run(
        [sys.executable, "-m", "slipstream", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=proj.root,
    ).stdout
    line = next(x for x in out.splitlines() if x.strip().startswith("GPU 0 "))
    assert f"30/80 GB reserved  {h['project']}/small {h['worker']} 30 GB" in line, out
    assert "GPU 7 H100  0/80 GB reserved  free" in out, out
