"""Tiny models with random weights, built in-process through the real library classes.

They exercise exactly the code paths the real models use (diffusers pipelines, a transformers
causal LM with a chat template) but need no model hub and run in well under a second on a CPU.
Their outputs are noise and gibberish: they are for tests, offline demos and smoke checks.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["build_tiny_qwen3", "build_tiny_sd"]

MAX_PROMPT_TOKENS = 256

# ChatML, as Qwen uses, minus the thinking markup: enough for apply_chat_template.
_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Text the tiny LM's tokenizer is trained on: the words its gibberish is made of.
_CORPUS = [
    "a lighthouse on a rocky coast at dusk, warm amber light, teal sea, soft fog",
    "a quiet forest clearing, golden hour, moss green and ochre palette, volumetric rays",
    "a neon city street in the rain, magenta and cyan reflections, cinematic lighting",
    "a cozy reading nook, wooden shelves, candle glow, muted earth tones, film grain",
    "a desert caravan under a violet sky, long shadows, dusty orange dunes, wide angle",
    "an alpine lake at dawn, mirror reflections, pastel pink clouds, crisp detail",
    "a paper lantern festival, glowing red and gold, bokeh, shallow depth of field",
    "a watercolor harbor, sailboats, pale blue and cream, gentle morning haze",
]


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _write_clip_vocab(folder: Path, bos: str, eos: str) -> None:
    """vocab.json and merges.txt for a CLIPTokenizer: single letters and a few merges."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = [bos, eos]
    tokens += list(letters) + [c + "</w>" for c in letters]
    merges = ["t h", "th e</w>", "i n", "a n", "e r</w>", "o n</w>", "in g</w>"]
    tokens += ["th", "the</w>", "in", "an", "er</w>", "on</w>", "ing</w>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def _sd_pipeline(
    vae: Any, text_encoder: Any, tokenizer: Any, unet: Any, scheduler: Any
) -> StableDiffusionPipeline:
    """A StableDiffusionPipeline of these parts: no safety checker, no progress bar."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _clip_tokenizer(folder: Path) -> Any:
    """A CLIPTokenizer over a vocabulary of single letters and a few merges."""
    from transformers import CLIPTokenizer

    _write_clip_vocab(folder, "<|startoftext|>", "<|endoftext|>")
    # The pipeline pads prompts to model_max_length. With a vocabulary this small most words
    # split into letters, so allow more than CLIP's 77 positions to keep prompts whole.
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_PROMPT_TOKENS)


def build_tiny_sd(seed: int = 0) -> StableDiffusionPipeline:
    """A tiny text-to-image StableDiffusionPipeline (fp32, CPU); any size divisible by 4 works."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    with tempfile.TemporaryDirectory(prefix="tiny-clip-") as tmp:
        tokenizer = _clip_tokenizer(Path(tmp))
    _seeded(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=5,
            num_attention_heads=4,
            max_position_embeddings=MAX_PROMPT_TOKENS,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return _sd_pipeline(vae, text_encoder, tokenizer, unet, scheduler)


def _bpe_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerBase:
    """A byte-level BPE tokenizer trained on a few sentences, with Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=specials[1:],
    )
    wrapped.chat_template = _CHAT_TEMPLATE
    return wrapped


def build_tiny_qwen3(seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A tiny Qwen3ForCausalLM (hidden 32, 2 layers) and its tokenizer; it can `.generate`."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = _bpe_tokenizer()
    _seeded(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen3ForCausalLM(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
