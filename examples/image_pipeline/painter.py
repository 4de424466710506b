"""The painter: a diffusion model that paints prompts and harmonises a collage of its images."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from layout import grid, snap, with_title
from loaders import (
    ModelUnavailableError,
    default_dtype,
    image_to_image,
    is_cached,
    load_image_pipeline,
    log,
    resolve_device,
)
from model_list import find

from slipstream import endpoint, keep

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from PIL import Image

__all__ = ["DEFAULT_MODEL", "Painter"]

DEFAULT_MODEL = "Lykon/dreamshaper-8"
DEFAULT_GUIDANCE = 7.0
HARMONISE_PROMPT = "a cohesive collage, harmonious colours, unified lighting, highly detailed"


# DreamShaper 8 is ~1.07 B params: ~2.6 GB in fp16, plus a few GB of activations at 1024x768.
# A 48 GB L40S paints it at about A100 speed for less per second, and still fits the SDXL swap.
@endpoint(
    gpu="L40S",
    workers=(0, 3),
    dependencies=("torch", "diffusers", "transformers", "pillow"),
    timeout=600,  # a first call may download the weights
    example={
        "paint": {
            "prompt": "a lighthouse on a rocky coast at dusk, warm amber light, teal sea, soft fog",
            "steps": 25,
            "width": 1024,
            "height": 768,
            "seed": 7,
        }
    },
)
class Painter:
    def setup(self) -> None:
        # Warm the default model when its weights are already on this worker's disk; the first
        # call that asks for it downloads it. Never download here: the caller may only want
        # other models (the tiny ones, offline).
        if not is_cached(DEFAULT_MODEL):
            log(f"painter: {DEFAULT_MODEL} is not cached; the first call that asks loads it")
            return
        try:
            self._pipeline(DEFAULT_MODEL, None, local_only=True)
        except ModelUnavailableError as e:
            log(f"painter: not preloading {DEFAULT_MODEL}: {e}")

    def paint(
        self,
        prompt: str,
        steps: int = 25,
        width: int = 1024,
        height: int = 768,
        seed: int | None = None,
        model: str = DEFAULT_MODEL,
        guidance: float | None = None,
        negative_prompt: str | None = None,
        device: str | None = None,
    ) -> Image.Image:
        """Paint one prompt. The image's `info` says which model, device and seed made it."""
        pipe = self._pipeline(model, device)
        seed = _seed(seed)
        image = pipe(
            prompt=prompt,
            negative_prompt=negative_prompt,
            num_inference_steps=steps,
            width=snap(width),
            height=snap(height),
            guidance_scale=_guidance(model, guidance),
            generator=_generator(seed),
        ).images[0]
        image.info.update(_provenance(pipe, model, seed, steps, prompt))
        return image

    def compose(
        self,
        images: Sequence[Image.Image],
        title: str | None = None,
        steps: int = 25,
        strength: float = 0.35,
        width: int | None = None,
        height: int | None = None,
        seed: int | None = None,
        model: str = DEFAULT_MODEL,
        prompt: str | None = None,
        guidance: float | None = None,
        device: str | None = None,
    ) -> Image.Image:
        """Lay the images out in a grid (by default the size of the first) and harmonise the
        collage with an img2img pass of `strength` (prompted by the title unless `prompt` is
        given); the title goes below, crisp."""
        if not images:
            raise ValueError("compose needs at least one image")
        size = (snap(width or images[0].width), snap(height or images[0].height))
        collage = grid(images, size, gutter=max(2, size[0] // 128))
        img2img = image_to_image(self._pipeline(model, device))
        seed = _seed(seed)
        text = prompt or (f"{title}, {HARMONISE_PROMPT}" if title else HARMONISE_PROMPT)
        image = img2img(
            prompt=text,
            image=collage,
            strength=strength,
            # img2img runs int(steps * strength) steps: make that at least one
            num_inference_steps=max(steps, math.ceil(1 / strength)),
            guidance_scale=_guidance(model, guidance),
            generator=_generator(seed),
        ).images[0]
        info = _provenance(img2img, model, seed, steps, text)
        if title:
            image = with_title(image, title)
        image.info.update(info)
        return image

    def _pipeline(
        self, model: str, device: str | None, *, local_only: bool = False
    ) -> DiffusionPipeline:
        # One keep() key per model: img2img wraps the same modules, so it shares the weights.
        dev = resolve_device(device)
        dtype = default_dtype(dev, "diffusion")
        return keep(
            ("diffusion", model, dev, dtype),
            lambda: load_image_pipeline(model, dev, dtype, local_only=local_only),
        )


def _seed(seed: int | None) -> int:
    return random.randrange(2**31) if seed is None else seed


def _generator(seed: int) -> Any:
    import torch

    # A CPU generator gives the same picture for a seed on any device.
    return torch.Generator("cpu").manual_seed(seed)


def _guidance(model: str, guidance: float | None) -> float:
    if guidance is not None:
        return guidance
    choice = find(model)
    return choice.guidance if choice and choice.guidance is not None else DEFAULT_GUIDANCE


def _provenance(
    pipe: DiffusionPipeline, model: str, seed: int, steps: int, prompt: str
) -> dict[str, str]:
    return {
        "model": model,
        "device": pipe.device.type,
        "dtype": str(pipe.dtype).removeprefix("torch."),
        "seed": str(seed),
        "steps": str(steps),
        "prompt": prompt,
    }
