"""CUDA out of memory moves a call to the next GPU of the decorator's fallback list, on a
runtime with a faked inventory (one H100, one A100-80GB; workers run on the CPU, pinned by
CUDA_VISIBLE_DEVICES) and real worker processes raising torch's own OutOfMemoryError."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import start_runtime
from tests.reliability.helpers import HANG_BOUND_S, auth, log_lines

APP = """
import os
from slipstream import endpoint

def _device() -> str:
    return os.environ.get("CUDA_VISIBLE_DEVICES", "")

@endpoint(gpu=["H100", "A100-80GB"], workers=1)
def big(n: int) -> str:
    if _device() == "0":  # the H100 (device 0 of the faked inventory) is too small for it
        import torch
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    return f"{n} on device {_device()}"

@endpoint(gpu=["H100", "A100-80GB"], workers=1)
def old_style() -> str:
    if _device() == "0":
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)")
    return f"device {_device()}"

@endpoint(gpu="H100", workers=1)
def no_fallback() -> str:
    import torch
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

@endpoint(gpu=["H100", "A100-80GB"], workers=1)
def plain_error() -> str:
    raise ValueError(f"not memory, on device {_device()}")
"""


@pytest.fixture(scope="module")
def gpu_runtime():
    rt = start_runtime(env={"SLIPSTREAM_FAKE_GPUS": "H100,A100-80GB"})
    yield rt
    rt.stop()


@pytest.fixture()
def app(gpu_runtime, project_factory):
    return project_factory(gpu_runtime, {"oom_app.py": APP}).module("oom_app")


def _endpoints(rt) -> dict[str, dict]:
    return {
        e["name"]: e
        for e in httpx.get(f"{rt.url}/v1/endpoints", headers=auth(rt), timeout=HANG_BOUND_S).json()[
            "endpoints"
        ]
    }


def test_cuda_out_of_memory_moves_the_call_to_the_next_gpu(app, gpu_runtime):
    assert app.big(3) == "3 on device 1", (
        "ran again on the A100-80GB after the H100 ran out of memory"
    )
    assert app.big.last_call.gpu == "A100-80GB", "priced and reported on the GPU that ran it"
    eps = _endpoints(gpu_runtime)
    assert eps["big"]["stats"]["gpu_fallbacks"] == 1 and eps["big"]["stats"]["errors"] == 1
    assert eps["big@A100-80GB"]["stats"]["calls"] == 1, (
        "the fallback GPU's pool is listed with its call"
    )
    assert any(
        "ran out of GPU memory on H100" in ln and "moving it to A100-80GB" in ln
        for ln in log_lines(gpu_runtime, "big")
    )
    metrics = httpx.get(
        f"{gpu_runtime.url}/metrics", headers=auth(gpu_runtime), timeout=HANG_BOUND_S
    ).text
    row = next(
        ln
        for ln in metrics.splitlines()
        if ln.startswith("slipstream_gpu_fallbacks_total") and 'endpoint="big"' in ln
    )
    assert row.endswith(" 1")
    # over HTTP (curl, the editor) the reply lists the move with the error that caused it
    from slipstream.sdk.config import project_key

    reply = gpu_runtime.client().call_json("big", {"n": 4}, project=project_key(_root(app)))
    assert reply["ok"] and reply["result"] == "4 on device 1" and reply["gpu"] == "A100-80GB"
    (moved,) = reply["retries"]
    assert (
        moved["kind"] == "cuda-oom" and moved["gpu"] == "H100" and moved["moved_to"] == "A100-80GB"
    )
    assert "CUDA out of memory" in moved["message"]


def _root(mod):
    from pathlib import Path

    return Path(mod.__file__).parent


def test_a_runtime_error_saying_cuda_out_of_memory_moves_too(app):
    assert app.old_style() == "device 1"


def test_without_a_next_gpu_the_error_is_the_callers(app, gpu_runtime):
    import torch

    with pytest.raises(torch.cuda.OutOfMemoryError, match="CUDA out of memory"):
        app.no_fallback()
    with pytest.raises(ValueError, match="on device 0"):
        app.plain_error()  # other errors never move
    eps = _endpoints(gpu_runtime)
    assert (
        eps["no_fallback"]["stats"]["gpu_fallbacks"] == 0
        and eps["plain_error"]["stats"]["gpu_fallbacks"] == 0
    )
