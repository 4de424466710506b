"""The image pipeline's orchestration, run locally: idea -> prompts -> paintings -> composite.

    slipstream run examples/image_pipeline/pipeline.py "a fox in a library" --n 4
    slipstream run examples/image_pipeline/pipeline.py --offline     # tiny models, any CPU

Each stage is an endpoint call on the runtime; this script only moves data between them and
writes the results (prompts.json, image-<i>.png, composite.png, run.json) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loaders import TINY_LLM, TINY_SD, is_offline_model
from painter import DEFAULT_MODEL as DEFAULT_PAINT_MODEL
from painter import Painter
from prompts import DEFAULT_MODEL as DEFAULT_PROMPT_MODEL
from prompts import write_prompts

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["Stage", "Stages", "local_stages", "main", "parse_args", "remote_stages", "run"]

DEFAULT_IDEA = "a lighthouse keeper's cat watching a storm roll in over the sea"


@dataclass
class Stage:
    """What one stage took: wall time measured here; cost, busy GPU-seconds and device as the
    runtime reports them (None when the stage ran in this process)."""

    name: str
    calls: int
    seconds: float
    cost_usd: float | None = None
    busy_s: float | None = None
    device: str = ""


@dataclass
class Stages:
    """The three endpoint calls, remote (through the runtime) or local (in this process)."""

    write_prompts: Callable[..., list[str]]
    paint_all: Callable[..., list[Image.Image]]
    compose: Callable[..., Image.Image]
    endpoints: dict[str, Any] = field(default_factory=dict)


def remote_stages() -> Stages:
    painter = Painter()
    return Stages(
        write_prompts,
        lambda prompts, **kwargs: list(painter.paint.map(prompts, **kwargs)),  # .map is an iterator
        painter.compose,
        endpoints={"prompts": write_prompts, "paint": Painter, "compose": Painter},
    )


def local_stages() -> Stages:
    painter = Painter.local()  # an instance, set up, in this process

    def paint_all(prompts: Sequence[str], **kwargs: Any) -> list[Image.Image]:
        return [painter.paint(p, **kwargs) for p in prompts]

    return Stages(write_prompts.local, paint_all, painter.compose)


def _metered() -> dict[str, float]:
    """The one place where stage cost is read: what this process's runtime calls have cost so
    far, as the runtime metered them (busy GPU-seconds priced from the catalog)."""
    from slipstream import spend

    return spend()


def _device_of(endpoint: Any, results: list[Any]) -> str:
    """Where a stage ran: the runtime's word for its last call, else the image's own note."""
    info = getattr(endpoint, "last_call", None)
    if getattr(info, "device", ""):
        return info.device
    image_info = getattr(results[0], "info", None) if results else None
    return image_info.get("device", "") if isinstance(image_info, dict) else ""


def run(
    idea: str,
    out: Path,
    *,
    n: int = 4,
    prompt_model: str = DEFAULT_PROMPT_MODEL,
    paint_model: str = DEFAULT_PAINT_MODEL,
    steps: int = 25,
    width: int = 1024,
    height: int = 768,
    seed: int | None = None,
    device: str | None = None,
    title: str | None = None,
    stages: Stages | None = None,
    echo: Callable[[str], None] = print,
) -> list[Stage]:
    """Run the three stages once, write the results to `out`, and say what each stage took."""
    stages = stages or remote_stages()
    out.mkdir(parents=True, exist_ok=True)
    report: list[Stage] = []

    def timed(name: str, calls: int, fn: Callable[[], Any]) -> Any:
        before, started = _metered(), time.perf_counter()
        result = fn()
        seconds, after = time.perf_counter() - started, _metered()
        metered = after["calls"] > before["calls"]  # calls run in this process are not
        stage = Stage(
            name,
            calls,
            seconds,
            after["cost_usd"] - before["cost_usd"] if metered else None,
            after["busy_s"] - before["busy_s"] if metered else None,
            _device_of(
                stages.endpoints.get(name), result if isinstance(result, list) else [result]
            ),
        )
        report.append(stage)
        echo(_format(stage))
        return result

    common: dict[str, Any] = {"model": paint_model, "steps": steps, "device": device}
    prompts: list[str] = timed(
        "prompts",
        1,
        lambda: stages.write_prompts(idea, n=n, model=prompt_model, seed=seed, device=device),
    )
    (out / "prompts.json").write_text(
        json.dumps({"idea": idea, "model": prompt_model, "prompts": prompts}, indent=2) + "\n"
    )
    images: list[Image.Image] = timed(
        "paint",
        len(prompts),
        lambda: stages.paint_all(prompts, width=width, height=height, seed=seed, **common),
    )
    for i, image in enumerate(images):
        _save(image, out / f"image-{i}.png")
    composite: Image.Image = timed(
        "compose", 1, lambda: stages.compose(images, title=title or idea, seed=seed, **common)
    )
    _save(composite, out / "composite.png")
    echo(_format(_total(report)))
    settings = {
        "idea": idea,
        "prompt_model": prompt_model,
        "paint_model": paint_model,
        "steps": steps,
        "width": width,
        "height": height,
        "seed": seed,
        "title": title or idea,
    }
    summary = {**settings, "stages": [asdict(s) for s in report]}
    (out / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
    return report


def _total(report: list[Stage]) -> Stage:
    costs = [s.cost_usd for s in report if s.cost_usd is not None]
    busy = [s.busy_s for s in report if s.busy_s is not None]
    return Stage(
        "total",
        sum(s.calls for s in report),
        sum(s.seconds for s in report),
        sum(costs) if costs else None,
        sum(busy) if busy else None,
    )


def _format(stage: Stage) -> str:
    cost = "" if stage.cost_usd is None else f"${stage.cost_usd:.6f}"
    busy = "" if stage.busy_s is None else f"{stage.busy_s:.2f} busy s"
    device = f"on {stage.device}" if stage.device else ""
    return (
        f"{stage.name:<8} {stage.calls:>2} call(s) {stage.seconds:8.2f} s  "
        f"{busy:>13}  {cost:>10}  {device}"
    ).rstrip()


def _save(image: Image.Image, path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    for key, value in image.info.items():
        if isinstance(value, str):
            meta.add_text(key, value)
    image.save(path, pnginfo=meta)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="pipeline.py",
        description="An LLM writes prompts, a diffusion model paints them, "
        "and a collage of the paintings is harmonised into one picture.",
    )
    p.add_argument("idea", nargs="?", default=DEFAULT_IDEA, help="what the pictures are about")
    p.add_argument("--n", type=int, default=4, help="how many prompts and images (default 4)")
    p.add_argument(
        "--offline",
        action="store_true",
        help=f"tiny random models built in-process ({TINY_LLM}, {TINY_SD}), no model hub; "
        "2 steps at 64x64 unless given",
    )
    p.add_argument("--steps", type=int, help="denoising steps (default 25; 2 with --offline)")
    p.add_argument("--width", type=int, help="image width (default 1024; 64 with --offline)")
    p.add_argument("--height", type=int, help="image height (default 768; 64 with --offline)")
    p.add_argument("--prompt-model", help=f"LLM id (default {DEFAULT_PROMPT_MODEL})")
    p.add_argument("--paint-model", help=f"diffusion model id (default {DEFAULT_PAINT_MODEL})")
    p.add_argument("--seed", type=int, help="seed for sampling and painting (default random)")
    p.add_argument("--title", help="caption under the composite (default: the idea)")
    p.add_argument(
        "--device", default="auto", help="auto (GPU if any), cuda (fail without one) or cpu"
    )
    p.add_argument("--repeat", type=int, default=1, help="run N times (later runs: warm workers)")
    p.add_argument("--local", action="store_true", help="run the endpoints in this process")
    p.add_argument("--out", type=Path, default=Path("out/pipeline"), help="output folder")
    args = p.parse_args(argv)
    if args.offline:
        for flag in ("prompt_model", "paint_model"):
            if getattr(args, flag) and not is_offline_model(getattr(args, flag)):
                p.error(
                    f"--offline builds models in process (tiny/..., random-full/..., "
                    f"random-small/...); drop --{flag.replace('_', '-')} or name one of those"
                )
        # No hub at all: a model that slipped through fails at once instead of retrying.
        os.environ["HF_HUB_OFFLINE"] = "1"
    tiny = args.offline
    args.prompt_model = args.prompt_model or (TINY_LLM if tiny else DEFAULT_PROMPT_MODEL)
    args.paint_model = args.paint_model or (TINY_SD if tiny else DEFAULT_PAINT_MODEL)
    args.steps = args.steps or (2 if tiny else 25)
    args.width = args.width or (64 if tiny else 1024)
    args.height = args.height or (64 if tiny else 768)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    where = "in this process" if args.local else "on the runtime"
    print(
        f"prompts: {args.prompt_model}  paint: {args.paint_model}  "
        f"{args.n} x {args.width}x{args.height}, {args.steps} steps, {where}"
    )
    stages = local_stages() if args.local else remote_stages()
    for i in range(args.repeat):
        out = args.out if args.repeat == 1 else args.out / f"run-{i}"
        if args.repeat > 1:
            print(f"-- run {i + 1} of {args.repeat} --")
        run(
            args.idea,
            out,
            n=args.n,
            prompt_model=args.prompt_model,
            paint_model=args.paint_model,
            steps=args.steps,
            width=args.width,
            height=args.height,
            seed=args.seed,
            device=None if args.device == "auto" else args.device,
            title=args.title,
            stages=stages,
        )
        print(f"wrote {out}/composite.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
