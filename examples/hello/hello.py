"""The smallest Slipstream endpoints: a greeting, and a picture for the outputs panel.

Run it with `slipstream run examples/hello/hello.py`, or press Run above an endpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slipstream import endpoint

if TYPE_CHECKING:
    from PIL import Image


@endpoint(example={"name": "world"})
def greet(name: str) -> str:
    return f"Hello, {name}!"


@endpoint(dependencies=("pillow",), example={"width": 256, "height": 128})
def gradient(width: int = 256, height: int = 128) -> Image.Image:
    """A colour gradient: red grows to the right, green downwards, blue fades out."""
    from PIL import Image

    ramp = Image.linear_gradient("L")  # 256x256, black at the top to white at the bottom
    down = ramp.resize((width, height))
    right = ramp.rotate(90).resize((width, height))  # black on the left, white on the right
    fade = Image.eval(right, lambda v: 255 - v)
    return Image.merge("RGB", (right, down, fade))


def main() -> None:
    print(greet("world"))
    image = gradient(width=256, height=128)
    image.save("gradient.png")
    print(f"gradient: {image.width}x{image.height} {image.mode}, saved to gradient.png")


if __name__ == "__main__":
    main()
