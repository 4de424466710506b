"""Laying images out on one canvas (plain PIL, no model)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["grid", "grid_shape", "snap", "with_title"]

BACKGROUND = (24, 24, 28)


def snap(n: int, multiple: int = 8) -> int:
    """Round down to a multiple (diffusion models want sides divisible by 8), at least one."""
    return max(multiple, n - n % multiple)


def grid_shape(count: int) -> tuple[int, int]:
    """(columns, rows) of the most square grid that holds count cells, wider than tall."""
    if count < 1:
        raise ValueError("nothing to lay out: give at least one image")
    cols = math.ceil(math.sqrt(count))
    return cols, math.ceil(count / cols)


def grid(images: Sequence[Image.Image], size: tuple[int, int], gutter: int = 0) -> Image.Image:
    """The images in a grid on a canvas of `size`, each cropped to fill its cell."""
    from PIL import Image, ImageOps

    cols, rows = grid_shape(len(images))
    width, height = size
    cell_w = (width - gutter * (cols + 1)) // cols
    cell_h = (height - gutter * (rows + 1)) // rows
    if cell_w < 1 or cell_h < 1:
        raise ValueError(f"a {width}x{height} canvas is too small for {len(images)} images")
    canvas = Image.new("RGB", size, BACKGROUND)
    for i, image in enumerate(images):
        col, row = i % cols, i // cols
        tile = ImageOps.fit(image.convert("RGB"), (cell_w, cell_h))
        canvas.paste(tile, (gutter + col * (cell_w + gutter), gutter + row * (cell_h + gutter)))
    return canvas


def with_title(image: Image.Image, title: str) -> Image.Image:
    """The image with a band below it holding the title, centred."""
    from PIL import Image, ImageDraw, ImageFont

    band = max(16, image.height // 12)
    out = Image.new("RGB", (image.width, image.height + band), BACKGROUND)
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    room = image.width * 0.94
    size = max(8, band * 3 // 5)
    font = ImageFont.load_default(size=size)
    while size > 8 and draw.textlength(title, font=font) > room:
        size -= 1
        font = ImageFont.load_default(size=size)
    text = title
    while len(text) > 1 and draw.textlength(text, font=font) > room:
        text = text[:-2].rstrip() + "\u2026"
    draw.text(
        (image.width / 2, image.height + band / 2),
        text,
        fill=(236, 236, 240),
        font=font,
        anchor="mm",
    )
    return out
