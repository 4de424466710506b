"""GPU pinning on a runtime that has GPUs (faked inventory: this machine has none)."""

from __future__ import annotations

import concurrent.futures as cf

import httpx
import pytest

from tests.conftest import start_runtime

APP = """
import os, time
from slipstream import endpoint

@endpoint(gpu="H100", workers=(0, 2))
def one(delay=0.0):
    time.sleep(delay)
    return os.environ.get("CUDA_VISIBLE_DEVICES")

@endpoint(gpu="H100:2")
def pair():
    return os.environ.get("CUDA_VISIBLE_DEVICES")

@endpoint(gpu="A100-80GB")
def missing():
    return "never"

@endpoint(gpu=["A100-80GB", "H100"])
def fallback():
    return os.environ.get("CUDA_VISIBLE_DEVICES")
"""


@pytest.fixture(scope="module")
def gpu_runtime():
    rt = start_runtime(env={"SLIPSTREAM_FAKE_GPUS": "H100,H100"})
    yield rt
    rt.stop()


def test_health_reports_the_inventory(gpu_runtime):
    gpus = httpx.get(f"{gpu_runtime.url}/health").json()["gpus"]
    assert [g["canonical"] for g in gpus] == ["H100", "H100"] and gpus[0]["memory_gb"] == 80


def test_workers_are_pinned_to_their_own_device(gpu_runtime, project_factory):
    app = project_factory(gpu_runtime, {"gpuapp.py": APP}).module("gpuapp")
    with cf.ThreadPoolExecutor(2) as ex:
        seen = set(ex.map(lambda _: app.one(0.8), range(2)))
    assert seen == {"0", "1"}, "two workers, one H100 each"
    assert app.pair() == "0,1"
    assert app.fallback() in ("0", "1"), "the fallback list picks the GPU this runtime has"


def test_a_gpu_the_runtime_lacks_is_refused_with_what_it_has(gpu_runtime, project_factory):
    app = project_factory(gpu_runtime, {"gpuapp2.py": APP}).module("gpuapp2")
    from slipstream.protocol.errors import SlipstreamError

    with pytest.raises(SlipstreamError, match="A100-80GB.*H100"):
        app.missing()
