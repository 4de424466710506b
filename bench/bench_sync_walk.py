"""The cost of the sync's walk with .gitignore rules: scan_stamp (the stat-only look the SDK's
session takes before a call, at most every 0.5 s) over a 1,020-file project with a 30-line
.gitignore.

    .venv/bin/python bench/bench_sync_walk.py [--n 30]

To compare with another tree, run it with that tree's runtime first on PYTHONPATH
(`git archive <commit> runtime | tar -x -C /tmp/base; PYTHONPATH=/tmp/base/runtime ...`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from slipstream.sdk.sync import scan_stamp


def make_project() -> Path:
    root = Path(tempfile.mkdtemp(prefix="bench-sync-walk-"))
    (root / "slipstream.toml").write_text('[project]\nname = "b"\n')
    rules = ["*.log", "data/", "/out.json", "wandb/", "*.ckpt", "!keep.ckpt", "runs/"]
    rules += [f"tmp{i}_*/" for i in range(23)]
    (root / ".gitignore").write_text("\n".join(rules) + "\n")
    for d in range(20):
        pkg = root / f"pkg{d}"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        for f in range(50):
            (pkg / f"m{f}.py").write_text("X = 1\n")
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30)
    a = ap.parse_args()
    root = make_project()
    scan_stamp(root)
    ts = []
    for _ in range(a.n):
        t = time.perf_counter()
        scan_stamp(root)
        ts.append((time.perf_counter() - t) * 1000)
    ts.sort()
    p95 = ts[max(0, int(len(ts) * 0.95) - 1)]
    print(
        f"scan_stamp, 1,020 files, 30-line .gitignore: p50 {statistics.median(ts):.1f} ms, "
        f"p95 {p95:.1f} ms, n={a.n}"
    )


if __name__ == "__main__":
    main()
