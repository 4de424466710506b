"""An image pipeline — ünïcode in the docstring 😀"""

from __future__ import annotations

import slipstream as ss
from slipstream import endpoint, keep

LLM = "Qwen/Qwen3-0.6B"


# 😀 an astral character (two UTF-16 code units) on the line before the decorator
@endpoint(gpu="H100", workers=(0, 3), example={"prompt": "a cat"})
def write_prompt(prompt: str, model: str = LLM) -> str:
    return prompt.upper()


@ss.endpoint(gpu="A100-80GB", example={"paint": {"prompt": "a cat"}})
class Painter:
    def setup(self) -> None:
        self.pipe = keep("Lykon/dreamshaper-8", lambda: None)

    def paint(self, prompt: str) -> str:
        return prompt

    def _helper(self) -> None:
        pass


@endpoint
def on_cpu(x: int = 1) -> int:
    return x + 1
