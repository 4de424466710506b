"""The measurements behind scripts/gpu-check (run that: it prepares the environment first).

    python scripts/gpu_check.py --out out/gpu-check            # on a GPU: full-size models
    python scripts/gpu_check.py --out out/gpu-check --dry-run  # on a CPU: the same, small

Everything runs through the image pipeline's own endpoints (examples/image_pipeline, copied to
OUT/project so that the edits below never touch the repository) on an embedded runtime, next to
the same calls made directly in this process (`.local()`: the same methods, no Slipstream),
subject and baseline interleaved, n samples each. Models: random weights from the published
configs (random-full/..., no download; random-small/... in a dry run). Measured in one run:

- paint, compose, prompts: p50, min and max through Slipstream and directly, and their ratio
  (goal for paint at 512x512, 25 steps: <= 1.02); the first (cold) call of each side
- save -> live with the full-size model loaded: edits of the painter's module, each timed from
  the file write to the first call that answers with the new code; model loads (goal: 0 more)
- a model swap as the editor does it (DEFAULT_MODEL rewritten, saved): the old model released,
  GPU memory of the painter's worker before and after

Figures are printed as they come and OUT/gpu-check.json is rewritten after each of them, so a
run cut short still reports what it measured. Exit 0 when every check passed (goals are
reported, not enforced), 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "image_pipeline"
IDEA = "a lighthouse keeper's cat watching a storm roll in over the sea"
PROMPT = "a lighthouse on a rocky coast at dusk, warm amber light, teal sea, soft fog"

FULL = {
    "device": "cuda",
    "paint_model": "random-full/dreamshaper-8",
    "swap_model": "random-full/stable-diffusion-v1-5",
    "prompt_model": "random-full/qwen3-0.6b",
    "size": 512,
    "steps": 25,
    "new_tokens": 128,
}
DRY = {
    "device": "cpu",
    "paint_model": "random-small/dreamshaper-8",
    "swap_model": "random-small/stable-diffusion-v1-5",
    "prompt_model": "random-small/qwen3-0.6b",
    "size": 64,
    "steps": 2,
    "new_tokens": 8,
}
PAINT_GOAL = 1.02
SAVE_TO_LIVE_GOAL_MS = 100.0

# Added to the copy of painter.py: what the painter's worker holds, asked through the endpoint.
PROBE = '''
    def gpu_check_probe(self) -> dict:
        """Added by scripts/gpu-check to its copy of the project: what this worker holds."""
        import os

        import torch
        from slipstream.keeper import stats

        kept = stats()
        on_gpu = torch.cuda.is_available() and torch.cuda.is_initialized()
        return {
            "edit": GPU_CHECK_EDIT,
            "default_model": DEFAULT_MODEL,
            "pid": os.getpid(),
            "loads": kept.loads,
            "releases": kept.releases,
            "keys": kept.keys,
            "allocated_bytes": torch.cuda.memory_allocated() if on_gpu else None,
        }

'''


def say(text: str) -> None:
    print(f"gpu-check: {text}", flush=True)


class Report:
    """The JSON report, written again after every figure."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"checks": {}, "goals": {}, "skipped": []}

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.write()

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.data["checks"][name] = {"ok": bool(ok), "detail": detail}
        say(f"{'ok' if ok else 'FAIL'}: {name}: {detail}")
        self.write()

    def goal(self, name: str, met: bool, detail: str) -> None:
        self.data["goals"][name] = {"met": bool(met), "detail": detail}
        say(f"goal {'met' if met else 'MISSED'}: {name}: {detail}")
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        tmp.replace(self.path)


def summary(samples: list[float]) -> dict[str, Any]:
    return {
        "n": len(samples),
        "p50_s": statistics.median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "spread": (max(samples) - min(samples)) / statistics.median(samples),
        "samples_s": samples,
    }


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def interleaved(
    name: str, subject: Callable[[int], Any], baseline: Callable[[int], Any], n: int
) -> dict[str, Any]:
    """n calls each, alternating which side goes first; both sides warmed up already."""
    through, direct = [], []
    for i in range(n):
        order = [(subject, through), (baseline, direct)]
        for fn, samples in order if i % 2 == 0 else order[::-1]:
            samples.append(timed(lambda fn=fn, i=i: fn(i))[1])
        say(f"  {name} {i + 1}/{n}: slipstream {through[-1]:.3f} s, direct {direct[-1]:.3f} s")
    s, d = summary(through), summary(direct)
    ratio = s["p50_s"] / d["p50_s"]
    say(
        f"{name}: slipstream p50 {s['p50_s']:.3f} s ({s['min_s']:.3f}-{s['max_s']:.3f}), "
        f"direct p50 {d['p50_s']:.3f} s ({d['min_s']:.3f}-{d['max_s']:.3f}), ratio {ratio:.3f}"
    )
    return {"slipstream": s, "direct": d, "ratio_p50": ratio}


def prepare_project(dest: Path, cfg: dict[str, Any]) -> Path:
    """A copy of the image pipeline whose painter preloads cfg's model and has a probe method."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(
        EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "README.md")
    )
    painter = dest / "painter.py"
    text = painter.read_text("utf-8")
    text, found = re.subn(
        r'^DEFAULT_MODEL = "[^"]*"$',
        f'DEFAULT_MODEL = "{cfg["paint_model"]}"\nGPU_CHECK_EDIT = 0',
        text,
        count=1,
        flags=re.M,
    )
    marker = "    def _pipeline("
    if found != 1 or marker not in text:
        raise SystemExit(f"gpu-check: {painter} no longer has DEFAULT_MODEL or _pipeline")
    painter.write_text(text.replace(marker, PROBE.lstrip("\n") + marker, 1), "utf-8")
    return dest


def edit_painter(root: Path, edit: int, model: str | None = None) -> None:
    """A save of painter.py: the edit counter, and the default model when swapping."""
    path = root / "painter.py"
    text = re.sub(
        r"^GPU_CHECK_EDIT = \d+$", f"GPU_CHECK_EDIT = {edit}", path.read_text("utf-8"), flags=re.M
    )
    if model:
        text = re.sub(r'^DEFAULT_MODEL = "[^"]*"$', f'DEFAULT_MODEL = "{model}"', text, flags=re.M)
    path.write_text(text, "utf-8")


def wait_for_edit(probe: Callable[[], dict], edit: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        seen = probe()
        if seen["edit"] == edit:
            return seen
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"edit {edit} was not live after {timeout:g} s (still {seen['edit']})"
            )


def check_imports() -> list[str]:
    """Every module the check needs, imported now: all that fail, at once."""
    import importlib

    missing = []
    for name in (
        "torch",
        "diffusers",
        "transformers",
        "tokenizers",
        "PIL",
        "numpy",
        "cloudpickle",
        "httpx",
        "fastapi",
        "starlette",
        "uvicorn",
        "slipstream.server.app",
    ):
        try:
            importlib.import_module(name)
        except Exception as e:  # an ImportError, or a broken install
            missing.append(f"{name} ({type(e).__name__}: {e})")
    return missing


def follow_logs(client: Any, path: Path, stop: threading.Event) -> threading.Thread:
    """The runtime's log (worker starts, installs, model loads) into a file, as it comes."""

    def follow() -> None:
        began = time.monotonic()
        with path.open("a", encoding="utf-8") as f:
            try:
                for event in client.logs(backlog=1000, stop=stop):
                    f.write(json.dumps({"t": round(time.monotonic() - began, 3), **event}) + "\n")
                    f.flush()
            except Exception as e:  # the runtime stopped: the log ends here
                f.write(json.dumps({"end": f"{type(e).__name__}: {e}"}) + "\n")

    thread = threading.Thread(target=follow, name="gpu-check-logs", daemon=True)
    thread.start()
    return thread


def print_summary(data: dict[str, Any]) -> None:
    """The figures measured so far, one line each (for docs/performance.md)."""
    say("summary:")
    for name, stage in data.get("stages", {}).items():
        s, d = stage["slipstream"], stage["direct"]
        print(
            f"  {name:<8} slipstream p50 {s['p50_s']:.3f} s vs direct {d['p50_s']:.3f} s: "
            f"{stage['ratio_p50']:.3f}x (n={s['n']}, ranges {s['min_s']:.3f}-{s['max_s']:.3f} "
            f"and {d['min_s']:.3f}-{d['max_s']:.3f} s)"
        )
    for name, c in data.get("cold", {}).items():
        print(f"  {name:<8} cold: " + ", ".join(f"{k} {v:.2f} s" for k, v in c.items()))
    live = data.get("save_to_live")
    if live:
        print(f"  save -> live p50 {live['p50_ms']:.1f} ms, {live['reloads']} reloads")
    swap = data.get("swap")
    if swap:
        print(
            f"  swap: worker GPU memory {gib(swap['worker_allocated_before_bytes'])} -> "
            f"{gib(swap['worker_allocated_after_bytes'])}, released {swap['releases']}"
        )
    for part in data.get("skipped", []):
        print(f"  skipped: {part}")
    sys.stdout.flush()


def device_used() -> int | None:
    """GPU memory in use on the device by every process (this one's direct models too)."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return total - free


def gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.2f} GiB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "out" / "gpu-check")
    ap.add_argument("--dry-run", action="store_true", help="CPU, small models and sizes")
    ap.add_argument("--n", type=int, default=5, help="samples per side and stage (at least 5)")
    ap.add_argument("--edits", type=int, default=5, help="saves timed for save -> live")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds; later parts are skipped")
    a = ap.parse_args(argv)
    if a.n < 5:
        ap.error("--n must be at least 5")
    began = time.monotonic()
    # Cut short (scripts/gpu-check's time limit): stop the runtime and close the report.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    cfg = dict(DRY if a.dry_run else FULL)
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out / "gpu-check.json")

    def left() -> float:
        return a.budget - (time.monotonic() - began)

    def may(part: str, need: float) -> bool:
        if left() >= need:
            return True
        report.data["skipped"].append(part)
        report.write()
        say(f"skipped {part}: {left():.0f} s left of the {a.budget:.0f} s budget")
        return False

    missing = check_imports()
    if missing:
        say("cannot import: " + "; ".join(missing))
        return 2
    say(f"imports ok ({time.monotonic() - began:.1f} s)")
    import torch

    machine: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for lib in ("diffusers", "transformers"):
        machine[lib] = __import__(lib).__version__
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        say(f"torch {torch.__version__} sees no CUDA GPU (use --dry-run on a CPU)")
        return 2
    report.set("settings", {**cfg, "n": a.n, "edits": a.edits, "dry_run": a.dry_run})
    report.set("machine", machine)
    say(
        f"{'DRY RUN on the CPU' if a.dry_run else 'GPU ' + str(machine['gpu'])}: "
        f"{cfg['paint_model']} {cfg['size']}x{cfg['size']} {cfg['steps']} steps, "
        f"{cfg['prompt_model']} {cfg['new_tokens']} new tokens; n={a.n}"
    )

    root = prepare_project(out / "project", cfg)
    from slipstream.sdk.client import RuntimeClient
    from slipstream.sdk.embedded import EmbeddedRuntime
    from slipstream.sdk.sync import sync_project

    rt, took = timed(lambda: EmbeddedRuntime.start(root, log_path=str(out / "runtime.out")))
    say(f"embedded runtime up in {took:.2f} s (its log: {out / 'runtime-log.jsonl'})")
    os.environ["SLIPSTREAM_RUNTIME_URL"] = rt.url
    os.environ["SLIPSTREAM_TOKEN"] = rt.token
    client = RuntimeClient(rt.url, rt.token)
    stop_logs = threading.Event()
    logs = follow_logs(client, out / "runtime-log.jsonl", stop_logs)
    sys.path.insert(0, str(root))
    try:
        import painter as painter_module
        import prompts as prompts_module

        return run(a, cfg, report, root, client, sync_project, painter_module, prompts_module, may)
    except Exception as e:
        report.check("ran to the end", False, f"{type(e).__name__}: {e}")
        traceback.print_exc()
        return 1
    finally:
        stop_logs.set()
        logs.join(timeout=2)
        rt.stop()
        report.set("seconds", round(time.monotonic() - began, 1))
        print_summary(report.data)
        say(f"report: {out / 'gpu-check.json'} ({time.monotonic() - began:.0f} s)")


def run(a, cfg, report, root, client, sync_project, painter_module, prompts_module, may) -> int:
    Painter, write_prompts = painter_module.Painter, prompts_module.write_prompts
    size, steps, device = cfg["size"], cfg["steps"], cfg["device"]
    paint_args = {"steps": steps, "width": size, "height": size, "model": cfg["paint_model"]}
    remote = Painter()
    cold: dict[str, Any] = {}

    # --- paint: cold, then warm interleaved ----------------------------------------------
    image, cold_s = timed(lambda: remote.paint(PROMPT, seed=0, **paint_args))
    local, load_s = timed(Painter.local)
    direct_image, first_s = timed(lambda: local.paint(PROMPT, seed=0, **paint_args))
    cold["paint"] = {
        "slipstream_first_call_s": cold_s,
        "direct_load_s": load_s,
        "direct_first_call_s": first_s,
    }
    say(
        f"paint cold: slipstream first call {cold_s:.2f} s (worker start, imports, model build); "
        f"direct: model build {load_s:.2f} s + first call {first_s:.2f} s"
    )
    report.set("cold", cold)
    for side, im in (("slipstream", image), ("direct", direct_image)):
        report.check(
            f"paint ran on the device ({side})",
            im.info.get("device") == device and im.size == (size, size),
            f"{im.size[0]}x{im.size[1]} on {im.info.get('device')} ({im.info.get('dtype')})",
        )
    stages: dict[str, Any] = {}
    stages["paint"] = interleaved(
        "paint",
        lambda i: remote.paint(PROMPT, seed=i, **paint_args),
        lambda i: local.paint(PROMPT, seed=i, **paint_args),
        a.n,
    )
    report.set("stages", stages)
    ratio = stages["paint"]["ratio_p50"]
    report.goal(
        "paint overhead",
        ratio <= PAINT_GOAL,
        f"{ratio:.3f}x the direct call (goal <= {PAINT_GOAL})",
    )

    # --- compose: the collage of four paintings, img2img over the same modules --------------
    if may("compose", 20):
        tiles = [image] * 4
        compose_args = {k: v for k, v in paint_args.items() if k not in ("width", "height")}
        remote.compose(tiles, title="gpu-check", seed=0, **compose_args)  # warm img2img
        local.compose(tiles, title="gpu-check", seed=0, **compose_args)
        stages["compose"] = interleaved(
            "compose",
            lambda i: remote.compose(tiles, title="gpu-check", seed=i, **compose_args),
            lambda i: local.compose(tiles, title="gpu-check", seed=i, **compose_args),
            a.n,
        )
        report.set("stages", stages)

    # --- save -> live with the model loaded -----------------------------------------------
    probe = remote.gpu_check_probe
    if may("save -> live", 15):
        before = probe()
        live_ms = []
        for edit in range(1, a.edits + 1):
            started = time.perf_counter()
            edit_painter(root, edit)
            sync_project(client, root)
            seen = wait_for_edit(probe, edit, timeout=60)
            live_ms.append((time.perf_counter() - started) * 1000)
            say(f"  save -> live {edit}/{a.edits}: {live_ms[-1]:.1f} ms")
        reloads = seen["loads"] - before["loads"]
        p50 = statistics.median(live_ms)
        report.set(
            "save_to_live",
            {
                "ms": live_ms,
                "p50_ms": p50,
                "min_ms": min(live_ms),
                "max_ms": max(live_ms),
                "reloads": reloads,
                "model": cfg["paint_model"],
                "same_worker": seen["pid"] == before["pid"],
            },
        )
        say(
            f"save -> live with {cfg['paint_model']} loaded: p50 {p50:.1f} ms "
            f"({min(live_ms):.1f}-{max(live_ms):.1f}), {reloads} model reloads"
        )
        # a replaced worker would have loaded the model again, with its own count from zero
        same = seen["pid"] == before["pid"]
        report.check(
            "no model reload on save",
            reloads == 0 and same,
            f"{reloads} reloads in {a.edits} saves, "
            + ("the same worker" if same else f"worker {before['pid']} replaced by {seen['pid']}"),
        )
        report.goal(
            "save -> live",
            p50 < SAVE_TO_LIVE_GOAL_MS,
            f"p50 {p50:.1f} ms (goal < {SAVE_TO_LIVE_GOAL_MS:g} ms, 0 reloads)",
        )

    # --- a model swap: the old model released before the new one loads ----------------------
    if may("model swap", 30):
        before, device_before = probe(), device_used()
        started = time.perf_counter()
        edit_painter(root, 1000, model=cfg["swap_model"])
        sync_project(client, root)
        after = wait_for_edit(probe, 1000, timeout=180)
        swap_s, device_after = time.perf_counter() - started, device_used()
        swapped = remote.paint(PROMPT, seed=0, **{**paint_args, "model": cfg["swap_model"]})
        final = probe()
        old_key = [k for k in before["keys"] if cfg["paint_model"] in k]
        record = {
            "from": cfg["paint_model"],
            "to": cfg["swap_model"],
            "seconds": swap_s,
            "worker_allocated_before_bytes": before["allocated_bytes"],
            "worker_allocated_after_bytes": after["allocated_bytes"],
            "device_used_before_bytes": device_before,
            "device_used_after_bytes": device_after,
            "keys_before": before["keys"],
            "keys_after": final["keys"],
            "releases": after["releases"] - before["releases"],
            "loads_after_swap_call": final["loads"] - after["loads"],
        }
        report.set("swap", record)
        say(
            f"swap {cfg['paint_model']} -> {cfg['swap_model']} in {swap_s:.2f} s: painter worker "
            f"GPU memory {gib(before['allocated_bytes'])} -> {gib(after['allocated_bytes'])} "
            f"(whole GPU {gib(device_before)} -> {gib(device_after)}); released {record['releases']}"
        )
        freed = (
            bool(old_key)
            and not any(k in final["keys"] for k in old_key)
            and record["releases"] >= 1
        )
        report.check(
            "old model freed on swap", freed, f"kept before {before['keys']}, after {final['keys']}"
        )
        if before["allocated_bytes"]:
            grown = after["allocated_bytes"] / before["allocated_bytes"]
            report.check(
                "GPU memory after swap",
                grown < 1.2,
                f"{grown:.2f}x the memory before (one model, not two)",
            )
        report.check(
            "the swapped model paints",
            swapped.info.get("model") == cfg["swap_model"] and record["loads_after_swap_call"] == 0,
            f"{swapped.info.get('model')} on {swapped.info.get('device')}, "
            f"{record['loads_after_swap_call']} extra loads",
        )

    # --- prompts: the LLM, 128 new tokens ---------------------------------------------------
    if may("prompts", 30):
        kw = {"n": 4, "model": cfg["prompt_model"], "max_new_tokens": cfg["new_tokens"]}
        got, cold_s = timed(lambda: write_prompts(IDEA, seed=0, **kw))
        _, local_first = timed(lambda: write_prompts.local(IDEA, seed=0, **kw))
        cold["prompts"] = {"slipstream_first_call_s": cold_s, "direct_first_call_s": local_first}
        report.set("cold", cold)
        say(
            f"prompts cold: slipstream first call {cold_s:.2f} s, direct first call (model build) {local_first:.2f} s"
        )
        info = write_prompts.last_call
        report.check(
            "prompts ran on the device",
            len(got) == 4 and info.device == device,
            f"{len(got)} prompts on {info.device}",
        )
        stages["prompts"] = interleaved(
            "prompts",
            lambda i: write_prompts(IDEA, seed=i, **kw),
            lambda i: write_prompts.local(IDEA, seed=i, **kw),
            a.n,
        )
        report.set("stages", stages)

    failed = [k for k, v in report.data["checks"].items() if not v["ok"]]
    say("FAILED: " + ", ".join(failed) if failed else "PASS: every check passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
