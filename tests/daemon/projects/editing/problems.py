from slipstream import endpoint as ep


@ep(example={"prompt": "😀 cat"}, gpu="H1000")
def typo(prompt: str) -> str:
    return prompt


@ep(gpu="H100", workers=(3, 1), timeout=-5)
def bad_numbers() -> None:
    pass


@ep(gpu="L4")
def too_big(model: str = "Qwen/Qwen3-32B") -> str:
    return model


@ep(gpu="H100", dependencies=["torch>=2.1"])
def undeclared() -> None:
    import os

    import diffusers
    import helpers
    import torch
    from PIL import Image

    return os, diffusers, helpers, torch, Image
