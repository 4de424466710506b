"""An edit of a kept model's class, through `slipstream dev`, next to rebuilding the model.

    .venv/bin/python bench/bench_model_class_edit.py [--edits 50] [--no-plain]

A nanoGPT-like project (model.py: GPT made of Block, CausalSelfAttention and MLP children,
6 layers x 256 wide, 6.8M parameters; serve.py: a class endpoint whose setup() does
`self.model = keep("gpt", load, version=model.KEEP_VERSION)`, the loader building the GPT and
loading a state dict saved once outside the project) runs under `slipstream dev`, each side in
its own folder with its own dev server (and so its own embedded runtime). Each edit rewrites
model.py with a new version marker in GPT.generate(); the clock runs from the file write to
the first HTTP call to the dev route (POST /Sampler/generate, polled with no pause) that
answers with the new marker: the watcher, the sync, the worker's reload and the call.

- class edit (the subject): only GPT.generate changes; the kept GPT follows its class
  (worker/follow.py), weights in place, so it must load 0 times after the first.
- rebuild (the baseline, what users paid before kept objects followed their classes): the
  same edit also bumps `KEEP_VERSION`, so keep() loads the model again on every edit.
- plain edit (for reference, --no-plain drops it): an edit of serve.py that leaves the model
  class alone (today's save -> live case, now with a torch model kept).

The sides are edited in turns, the order reversed every other round, so load from other work
on this shared machine falls on all alike. Each sample is split by the dev server's own line
("live in N ms", the time of its sync_project): the watcher's part (write -> the sync starts),
the sync (the runtime's commit; it waits for a worker that was idle to reload), and what comes
after (a worker that was running a call when the commit came reloads before its next call,
then that call). The same call is timed again once live: what the call itself costs (a
1-token greedy step of the GPT, torch on 1 thread in each worker). Generated tokens must be the
same on every call: the weights stay the same.

Goals: class edit p50 <= 100 ms; 0 rebuilds over the edits.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from _common import ROOT, fmt, free_port, goal, machine, project, stats_ms

MODEL_SRC = """
import torch
import torch.nn as nn
import torch.nn.functional as F

KEEP_VERSION = {keep_version}  # serve.py: keep("gpt", load, version=KEEP_VERSION)
VOCAB, WIDTH, LAYERS, HEADS, CONTEXT = 4096, 256, 6, 4, 64


class CausalSelfAttention(nn.Module):
    def __init__(self, n, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(n, 3 * n)
        self.proj = nn.Linear(n, n)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(n, 4 * n)
        self.proj = nn.Linear(4 * n, n)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, n, heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n)
        self.attn = CausalSelfAttention(n, heads)
        self.ln_2 = nn.LayerNorm(n)
        self.mlp = MLP(n)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, WIDTH)
        self.wpe = nn.Embedding(CONTEXT, WIDTH)
        self.h = nn.ModuleList([Block(WIDTH, HEADS) for _ in range(LAYERS)])
        self.ln_f = nn.LayerNorm(WIDTH)
        self.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x[:, [-1], :]))  # inference: the last position's logits

    @torch.no_grad()
    def generate(self, new_tokens=1):
        idx = torch.zeros((1, 1), dtype=torch.long)
        for _ in range(new_tokens):
            idx = torch.cat([idx, self(idx)[:, -1].argmax(-1, keepdim=True)], dim=1)
        return {{"version": "{marker}", "tokens": idx[0].tolist()}}
"""

SERVE_SRC = """
import torch

from slipstream import endpoint, keep
from slipstream.keeper import stats

import model

WEIGHTS = {weights!r}  # saved once, outside the project
NOTE = "{note}"  # the plain edit's marker


def load():
    gpt = model.GPT()
    gpt.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    return gpt.eval()


@endpoint
class Sampler:
    def setup(self):
        torch.set_num_threads(1)
        self.model = keep("gpt", load, version=model.KEEP_VERSION)

    def generate(self):
        return {{**self.model.generate(), "note": NOTE}}

    def loads(self):
        return {{"loads": stats().loads, "load_seconds": stats().load_seconds}}
"""

SIDES = {
    "class": "class edit, model followed (subject)",
    "rebuild": "class edit + keep version bump (rebuild)",
    "plain": "plain module edit (reference)",
}
LIVE = re.compile(r"^↻ .* live in (\d+) ms")


def write_model(root: Path, marker: str, keep_version: int) -> None:
    (root / "model.py").write_text(
        textwrap.dedent(MODEL_SRC).format(marker=marker, keep_version=keep_version)
    )


def write_serve(root: Path, weights: Path, note: str) -> None:
    (root / "serve.py").write_text(
        textwrap.dedent(SERVE_SRC).format(weights=str(weights), note=note)
    )


def save_weights(folder: Path) -> Path:
    """The GPT's state dict, saved once outside the projects (what a checkpoint is)."""
    import torch

    ns: dict[str, Any] = {}
    exec(textwrap.dedent(MODEL_SRC).format(marker="v0", keep_version=0), ns)
    torch.manual_seed(0)
    gpt = ns["GPT"]()
    path = folder / "gpt.pt"
    torch.save(gpt.state_dict(), path)
    n = sum(p.numel() for p in gpt.parameters())
    print(f"weights: {n / 1e6:.1f}M parameters, {path.stat().st_size / 2**20:.1f} MiB at {path}")
    return path


class Dev:
    """`python -m slipstream dev ROOT --port P` (an embedded runtime), this tree's code."""

    def __init__(self, root: Path) -> None:
        import httpx

        self.root = root
        self.port = free_port()
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.seen: list[str] = []
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN", "SLIPSTREAM_PROJ"))
        }
        env["PYTHONPATH"] = f"{ROOT / 'runtime'}{os.pathsep}{ROOT / 'daemon'}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slipstream", "dev", str(root), "--port", str(self.port)],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", trust_env=False)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.perf_counter(), line.rstrip("\n")))

    def next_line(self, pattern: re.Pattern[str], timeout: float) -> tuple[float, re.Match[str]]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                at, line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if m := pattern.search(line):
                return at, m
        raise TimeoutError(f"dev server printed no {pattern.pattern!r}:\n" + "\n".join(self.seen))

    def wait_serving(self) -> None:
        self.next_line(re.compile("serving"), 120)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.http.get("/openapi.json")
                return
            except Exception:  # noqa: BLE001 - uvicorn binds just after "serving"
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def call(self, method: str) -> Any:
        r = self.http.post(f"/Sampler/{method}", json={}, timeout=120)
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.text}")
        return r.json()["result"]

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def edit(
    dev: Dev, side: str, n: int, weights: Path
) -> tuple[float, float, float, float, list[int]]:
    """One edit: seconds from the write to the first call answering with it, the dev server's
    sync time, when its sync started after the write, the same call once live (all in s), and
    the tokens generated."""
    marker = f"v{n}"
    t0 = time.perf_counter()
    if side == "plain":
        write_serve(dev.root, weights, marker)
        field = "note"
    else:
        write_model(dev.root, marker, n if side == "rebuild" else 0)
        field = "version"
    while (out := dev.call("generate"))[field] != marker:
        pass
    total = time.perf_counter() - t0
    at, m = dev.next_line(LIVE, 30)  # the dev server's line for this sync
    sync_s = int(m.group(1)) / 1000
    t = time.perf_counter()
    dev.call("generate")  # the same call once the edit is live: what the call itself costs
    warm = time.perf_counter() - t
    return total, sync_s, max(0.0, at - t0 - sync_s), warm, out["tokens"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=50, help="edits on each side")
    ap.add_argument("--no-plain", action="store_true", help="leave out the plain-edit reference")
    a = ap.parse_args()

    print(machine())
    sides = ["class", "rebuild"] + ([] if a.no_plain else ["plain"])
    outside = Path(tempfile.mkdtemp(prefix="slipstream-bench-weights-"))
    devs: dict[str, Dev] = {}
    try:
        weights = save_weights(outside)
        for side in sides:
            root = project({})
            write_model(root, "v0", 0)
            write_serve(root, weights, "v0")
            t = time.perf_counter()
            devs[side] = Dev(root)
            devs[side].wait_serving()
            first = devs[side].call("generate")
            print(
                f"{side}: dev server up and first call (worker start, model load) "
                f"{time.perf_counter() - t:.2f}s; loads {devs[side].call('loads')}"
            )
        tokens = first["tokens"]
        total: dict[str, list[float]] = {s: [] for s in sides}
        sync: dict[str, list[float]] = {s: [] for s in sides}
        watch: dict[str, list[float]] = {s: [] for s in sides}
        warm: dict[str, list[float]] = {s: [] for s in sides}
        same_tokens = True
        for n in range(1, a.edits + 1):
            for side in sides if n % 2 else sides[::-1]:
                t, s, w, c, toks = edit(devs[side], side, n, weights)
                warm[side].append(c)
                total[side].append(t)
                sync[side].append(s)
                watch[side].append(w)
                same_tokens &= toks == tokens
        loads = {side: devs[side].call("loads") for side in sides}
        rebuilds = {side: loads[side]["loads"] - 1 for side in sides}

        print(
            f"== model-class edit -> first call, through `slipstream dev`, {a.edits} edits each side, interleaved =="
        )
        st = {side: stats_ms(total[side]) for side in sides}
        for side in sides:
            print(fmt(SIDES[side], st[side]))
            rest = [t - s - w for t, s, w in zip(total[side], sync[side], watch[side], strict=True)]
            print(fmt("  write -> the sync starts (watcher)", stats_ms(watch[side])))
            print(fmt('  the sync ("live in N ms")', stats_ms(sync[side])))
            print(fmt("  after it: worker reload + the call", stats_ms(rest)))
            print(fmt("  the same call once live", stats_ms(warm[side])))
        print(
            f"model load in the worker (construct + load_state_dict), over its {loads['rebuild']['loads']} "
            f"loads: {1000 * loads['rebuild']['load_seconds'] / loads['rebuild']['loads']:.0f} ms mean"
        )
        ratio = st["rebuild"]["p50"] / st["class"]["p50"]
        print(f"the class edit is {ratio:.1f}x faster than rebuilding the model (p50 over p50)")
        if "plain" in st:
            print(f"class edit / plain edit: {st['class']['p50'] / st['plain']['p50']:.2f}x (p50)")
        for side in sides:
            print(f"rebuilds over {a.edits} edits, {side}: {rebuilds[side]}")
        print(f"generated tokens identical on every call (weights unchanged): {same_tokens}")
        print(machine())
        print(goal("model-class edit p50 <= 100 ms", st["class"]["p50"] <= 100))
        print(goal(f"0 rebuilds over {a.edits} edits", rebuilds["class"] == 0 and same_tokens))
    finally:
        for dev in devs.values():
            dev.stop()
            shutil.rmtree(dev.root, ignore_errors=True)
        shutil.rmtree(outside, ignore_errors=True)


if __name__ == "__main__":
    main()
