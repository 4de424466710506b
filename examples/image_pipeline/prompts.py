"""The prompt writer: an LLM turns a short idea into detailed image prompts."""

from __future__ import annotations

import re
from typing import Any

from loaders import default_dtype, load_llm, resolve_device

from slipstream import endpoint, keep

__all__ = ["DEFAULT_MODEL", "finish_prompts", "parse_prompts", "write_prompts"]

DEFAULT_MODEL = "Qwen/Qwen3-0.6B"

SYSTEM = "You write prompts for a text-to-image diffusion model. You answer with prompts only."
ASK = (
    "Write {n} different, detailed image prompts about: {idea}\n"
    "Each prompt is one line of 25 to 50 words that names the subject, the setting and the "
    "composition, concrete visual cues, a colour palette and the lighting. Vary the mood and "
    "the point of view between prompts. Reply with exactly {n} lines, one prompt per line, "
    "with no numbering, no quotes and no other text."
)

# Style cues that fill in prompts when the model's lines fall short (always, for tiny models).
LIGHTING = [
    "golden hour light",
    "soft overcast light",
    "dramatic rim lighting",
    "moonlit blue hour",
    "warm lantern glow",
    "crisp morning sun",
]
PALETTE = [
    "amber and teal palette",
    "muted earth tones",
    "pastel pink and lavender",
    "deep indigo and gold",
    "sage green and cream",
    "crimson and charcoal",
]
STYLE = [
    "cinematic wide shot, highly detailed",
    "painterly illustration, rich texture",
    "35mm photo, shallow depth of field",
    "isometric view, clean shapes",
    "watercolor wash, loose edges",
    "volumetric haze, atmospheric perspective",
]

_LABEL = re.compile(r"^\s*(?:(?:[-*\u2022]+|#+|\d+[.):]|prompt\s*\d*\s*[:.)-])\s*)+", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_STOPWORDS = {"the", "and", "with", "from", "into", "over", "under", "for", "its", "his", "her"}


@endpoint(
    gpu="L4",  # Qwen3 0.6B in bf16 needs ~1.5 GB; 24 GB still fits the 8B swap
    workers=(0, 2),
    dependencies=("torch", "transformers"),
    example={"idea": "a lighthouse keeper's cat watching a storm roll in", "n": 4},
)
def write_prompts(
    idea: str,
    n: int = 4,
    model: str = DEFAULT_MODEL,
    seed: int | None = None,
    device: str | None = None,
    max_new_tokens: int | None = None,
) -> list[str]:
    """n distinct, detailed image prompts for an idea (visual cues, palette, lighting).
    The LLM writes at most max_new_tokens (default 90 per prompt)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
    dev = resolve_device(device)
    dtype = default_dtype(dev, "llm")
    llm, tokenizer = keep(("llm", model, dev, dtype), lambda: load_llm(model, dev, dtype))
    text = _generate(llm, tokenizer, idea, n, seed, max_new_tokens=max_new_tokens or 90 * n)
    return finish_prompts(idea, parse_prompts(text), n, filler=_WORD.findall(text))


def _generate(
    llm: Any, tokenizer: Any, idea: str, n: int, seed: int | None, max_new_tokens: int
) -> str:
    import torch

    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": ASK.format(n=n, idea=idea)},
    ]
    inputs = tokenizer.apply_chat_template(
        messages,
        add_generation_prompt=True,
        enable_thinking=False,  # Qwen3: answer directly, no <think> block
        return_dict=True,
        return_tensors="pt",
    ).to(llm.device)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.inference_mode():
        # Qwen3's recommended sampling for non-thinking mode
        out = llm.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=0.7,
            top_p=0.8,
            top_k=20,
        )
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def parse_prompts(text: str) -> list[str]:
    """The lines of a reply that read like prompts: labels, bullets and quotes stripped."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL)
    found = []
    for line in text.splitlines():
        line = _LABEL.sub("", line).strip().strip("\"'` ").strip()
        if len(_WORD.findall(line)) >= 5 and _mostly_text(line):
            found.append(line)
    return found


def finish_prompts(idea: str, candidates: list[str], n: int, filler: list[str]) -> list[str]:
    """Exactly n distinct, non-empty prompts: the candidates that mention the idea (or are
    prefixed with it), then prompts built from the idea, words of `filler` and style cues."""
    idea = " ".join(idea.split()) or "an image"
    keywords = {w.lower() for w in _WORD.findall(idea) if len(w) > 2} - _STOPWORDS
    prompts: list[str] = []
    seen: set[str] = set()

    def add(prompt: str) -> None:
        if prompt.lower() not in seen and len(prompts) < n:
            seen.add(prompt.lower())
            prompts.append(prompt)

    for line in candidates:
        words = {w.lower() for w in _WORD.findall(line)}
        add(line if not keywords or keywords & words else f"{idea}, {line}")
    extra = [w.lower() for w in filler if len(w) > 2][: 4 * n]
    i = 0
    while len(prompts) < n:
        cues = [LIGHTING[i % len(LIGHTING)], PALETTE[(i // 2) % len(PALETTE)]]
        cues.append(STYLE[(i // 3) % len(STYLE)])
        words = " ".join(extra[2 * i : 2 * i + 2])
        variant = f", variation {i + 1}" if i >= len(LIGHTING) * len(STYLE) else ""
        add(", ".join(p for p in (idea, words, *cues) if p) + variant)
        i += 1
    return prompts


def _mostly_text(line: str) -> bool:
    letters = sum(c.isalpha() or c in " ,.;:'-" for c in line)
    return letters >= 0.85 * len(line)
