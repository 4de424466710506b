"""Endpoints the daemon's runtime tests deploy and run."""

from __future__ import annotations

from slipstream import endpoint


@endpoint(example={"name": "world"})
def greet(name: str) -> str:
    print(f"greeting {name}")
    return f"Hello, {name}!"


@endpoint(dependencies=["pillow"], example={"width": 300})
def picture(width: int = 300):
    from PIL import Image

    return Image.new("RGB", (width, width // 2), (200, 30, 60))


@endpoint(example={"x": 0})
def divide(x: int = 0) -> float:
    return _invert(x)


def _invert(x: int) -> float:
    return 1 / x


@endpoint(gpu="L4", example={"n": 3})
def squares(n: int = 3) -> dict[str, list[int]]:
    return {"squares": [i * i for i in range(n)]}


@endpoint(example={"n": 3})
def countdown(n: int = 3, pause: float = 0.8) -> str:
    import time

    for i in range(n, 0, -1):
        print(f"T-{i}", flush=True)
        time.sleep(pause)
    return "liftoff"
