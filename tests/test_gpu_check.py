"""scripts/gpu-check: its CPU dry run (the same script as on a GPU, small models) and its
refusal to wait on a network that is not there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-check"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_dry_run_measures_every_part_interleaved_and_passes(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_OUT": str(out)}
    env.pop("SLIPSTREAM_RUNTIME_URL", None)
    proc = subprocess.run(
        [str(SCRIPT), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
        stdin=subprocess.DEVNULL,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    report = json.loads((out / "gpu-check.json").read_text())
    assert report["settings"]["dry_run"] and report["settings"]["device"] == "cpu"
    assert report["settings"]["paint_model"] == "random-small/dreamshaper-8"
    assert not report["skipped"]
    assert all(c["ok"] for c in report["checks"].values()), report["checks"]

    # each stage, through Slipstream and directly, n >= 5 each, p50 and spread, the ratio
    assert set(report["stages"]) == {"paint", "compose", "prompts"}
    for name, stage in report["stages"].items():
        for side in ("slipstream", "direct"):
            s = stage[side]
            assert s["n"] == len(s["samples_s"]) >= 5, (name, side)
            assert s["min_s"] <= s["p50_s"] <= s["max_s"] and s["min_s"] > 0
        ratio = stage["slipstream"]["p50_s"] / stage["direct"]["p50_s"]
        assert stage["ratio_p50"] == pytest.approx(ratio)
    assert "paint overhead" in report["goals"]
    assert set(report["cold"]) == {"paint", "prompts"}
    # interleaved: the log alternates sides sample by sample, and says it as it goes
    assert log.index("paint 1/5") < log.index("paint 5/5") < log.index("PASS")

    # save -> live with the model loaded: timed, no reload, same worker
    live = report["save_to_live"]
    assert len(live["ms"]) == 5 and live["reloads"] == 0 and live["same_worker"]
    # the swap released the old model before the new one loaded
    swap = report["swap"]
    assert swap["releases"] == 1
    assert any("random-small/dreamshaper-8" in k for k in swap["keys_before"])
    assert not any("random-small/dreamshaper-8" in k for k in swap["keys_after"])
    assert any("random-small/stable-diffusion-v1-5" in k for k in swap["keys_after"])
    # the runtime's log came along (worker starts, reloads) for reading a GPU run afterwards
    assert "reloaded" in (out / "runtime-log.jsonl").read_text()


def test_without_wheels_or_an_index_it_says_what_to_do_within_seconds(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA H200, 143771 MiB, 570.00'\n")
    fake.chmod(0o755)
    venv = tmp_path / "venv"  # has none of the runtime's packages
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHON": sys.executable,
        "GPU_CHECK_VENV": str(venv),
        "GPU_CHECK_WHEELS": str(tmp_path / "no-wheels"),
        "GPU_CHECK_OUT": str(tmp_path / "out"),
        "PIP_CONFIG_FILE": os.devnull,  # this machine's pip settings (local wheel folders) off
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # nothing listens there: no index
    }
    started = time.monotonic()
    proc = subprocess.run(
        [str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    took = time.monotonic() - started
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no package index answers" in proc.stdout
    assert "scripts/fetch-gpu-wheels" in proc.stdout
    assert took < 15, f"took {took:.1f} s to notice there is no index"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fetch_gpu_wheels_makes_a_folder_that_installs_offline_and_travels(tmp_path):
    # Needs the package index (this machine and CI reach it); the GPU machine does not.
    dest = tmp_path / "wheels"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_WHEELS": str(dest)}
    proc = subprocess.run(
        [str(REPO / "scripts" / "fetch-gpu-wheels")],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "installs with --no-index for CPython 3.12" in proc.stdout
    wheels = sorted(p.name for p in dest.glob("*.whl"))
    size = sum(p.stat().st_size for p in dest.iterdir())
    assert size < 60 * 2**20, f"{size / 2**20:.1f} MiB would not travel with the working tree"
    names = {w.split("-")[0].lower() for w in wheels}
    assert {"fastapi", "uvicorn", "starlette", "diffusers", "pillow"} <= names
    assert not names & {"torch", "transformers", "triton"}  # the GPU machine has these
    assert not any(n.startswith("nvidia_") for n in names)
    assert all("cp312" in w or "abi3" in w or "none-any" in w for w in wheels), wheels
