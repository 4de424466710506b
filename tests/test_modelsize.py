from __future__ import annotations

import pytest

from slipstream.spec.catalog import catalog
from slipstream.spec.modelsize import (
    alternatives,
    estimate,
    fits,
    known_models,
    looks_like_model_id,
    lookup,
    normalize_dtype,
    params_from_id,
)


def choice(label: str):
    request, problems = catalog().parse(label)
    assert not problems
    return request.primary


QWEN3 = {  # id: (params_b, layers, kv_heads, head_dim)
    "Qwen/Qwen3-0.6B": (0.596, 28, 8, 128),
    "Qwen/Qwen3-1.7B": (1.721, 28, 8, 128),
    "Qwen/Qwen3-4B": (4.022, 36, 8, 128),
    "Qwen/Qwen3-8B": (8.191, 36, 8, 128),
    "Qwen/Qwen3-14B": (14.768, 40, 8, 128),
    "Qwen/Qwen3-32B": (32.762, 64, 8, 128),
}


@pytest.mark.parametrize("model_id, facts", QWEN3.items())
def test_qwen3_facts(model_id, facts):
    info = lookup(model_id)
    assert info is not None and info.kind == "llm" and info.dtype == "bf16"
    assert (info.params_b, info.layers, info.kv_heads, info.head_dim) == facts


@pytest.mark.parametrize(
    "model_id, params_b",
    [
        ("Lykon/dreamshaper-8", 1.066),
        ("stable-diffusion-v1-5/stable-diffusion-v1-5", 1.066),
        ("runwayml/stable-diffusion-v1-5", 1.066),
        ("stabilityai/sdxl-turbo", 3.469),
        ("stabilityai/stable-diffusion-xl-base-1.0", 3.469),
        ("black-forest-labs/FLUX.1-dev", 16.87),
        ("black-forest-labs/FLUX.1-schnell", 16.87),
    ],
)
def test_image_model_facts(model_id, params_b):
    info = lookup(model_id)
    assert info is not None and info.kind == "text-to-image"
    assert info.params_b == params_b
    assert info.layers is None


def test_every_known_model_has_a_dated_source():
    assert len(known_models()) == 13
    for info in known_models():
        assert info.source.endswith(", 2026-06"), info.id


def test_lookup_ignores_case_and_accepts_the_repo_name_alone():
    assert lookup("qwen/qwen3-4b").id == "Qwen/Qwen3-4B"
    assert lookup("dreamshaper-8").id == "Lykon/dreamshaper-8"
    assert lookup("someone/Qwen3-8B").id == "Qwen/Qwen3-8B"
    assert lookup("Qwen/Qwen3-4B-Instruct-2507") is None
    assert lookup("") is None


@pytest.mark.parametrize(
    "model_id, params_b",
    [
        ("Qwen3-4B", 4.0),
        ("meta-llama/llama-7b", 7.0),
        ("Qwen/Qwen3-0.6B-Base", 0.6),
        ("deepseek-r1-distill-qwen-1.5b", 1.5),
        ("facebook/opt-350M", 0.35),
        ("Qwen/Qwen3-30B-A3B", 30.0),
        ("Qwen/Qwen2.5-7B-Instruct-1M", 7.0),
        ("mistralai/Mixtral-8x7B-v0.1", 56.0),
        ("TheBloke/Llama-2-13B-4bit", 13.0),
    ],
)
def test_params_from_id(model_id, params_b):
    assert params_from_id(model_id) == pytest.approx(params_b)


@pytest.mark.parametrize(
    "model_id", ["gpt2", "Lykon/dreamshaper-8", "stabilityai/stable-diffusion-xl-base-1.0", "a4bit"]
)
def test_ids_without_a_size(model_id):
    assert params_from_id(model_id) is None


def test_estimate_for_a_known_llm_includes_the_kv_cache():
    est = estimate("Qwen/Qwen3-4B")
    assert (est.basis, est.kind, est.dtype, est.params_b) == ("known", "llm", "bf16", 4.022)
    kv_gb = 2 * 36 * 8 * 128 * 2 * 4096 / 1e9
    assert est.vram_gb == pytest.approx(4.022 * 2 * 1.2 + kv_gb)
    assert est.detail == "4.02 B params x 2 bytes (bf16) x 1.2 + KV cache 0.60 GB for 4096 tokens"


def test_more_tokens_need_more_memory():
    assert estimate("Qwen/Qwen3-8B", tokens=32768).vram_gb > estimate("Qwen/Qwen3-8B").vram_gb
    assert estimate("Qwen/Qwen3-8B", tokens=0).vram_gb == pytest.approx(8.191 * 2 * 1.2)


def test_smaller_dtypes_need_less_memory():
    bf16 = estimate("Qwen/Qwen3-32B").vram_gb
    int8 = estimate("Qwen/Qwen3-32B", dtype="int8").vram_gb
    int4 = estimate("Qwen/Qwen3-32B", dtype="4bit").vram_gb
    fp32 = estimate("Qwen/Qwen3-32B", dtype="float32").vram_gb
    assert int4 < int8 < bf16 < fp32


def test_image_models_have_no_kv_cache():
    est = estimate("Lykon/dreamshaper-8")
    assert est.vram_gb == pytest.approx(1.066 * 2 * 1.2)
    assert est.detail == "1.07 B params x 2 bytes (fp16) x 1.2"


def test_estimate_from_the_size_in_an_unknown_id():
    est = estimate("meta-llama/Llama-3.1-8B-Instruct")
    assert (est.basis, est.kind, est.params_b, est.dtype) == ("from-id", None, 8.0, "bf16")
    assert est.vram_gb == pytest.approx(8 * 2 * 1.2)
    assert "from the id" in est.detail


def test_no_estimate_without_facts_or_a_size():
    assert estimate("acme/secret-model") is None


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype"):
        estimate("Qwen/Qwen3-4B", dtype="fp8-ish")


@pytest.mark.parametrize(
    "written, canonical",
    [("bfloat16", "bf16"), ("torch.float16", "fp16"), ("FP32", "fp32"), ("half", "fp16")],
)
def test_dtype_spellings(written, canonical):
    assert normalize_dtype(written) == canonical


def test_qwen3_32b_does_not_fit_on_a_l4():
    assert not fits(estimate("Qwen/Qwen3-32B"), choice("L4"))


def test_qwen3_32b_fits_on_an_a100_and_on_two_l40s():
    assert fits(estimate("Qwen/Qwen3-32B"), choice("A100"))
    assert fits(estimate("Qwen/Qwen3-32B"), choice("L40S:2"))
    assert not fits(estimate("Qwen/Qwen3-32B"), choice("L40S"))


def test_dreamshaper_fits_on_a_t4():
    assert fits(estimate("Lykon/dreamshaper-8"), choice("T4"))


def test_flux_needs_more_than_24_gb():
    assert not fits(estimate("black-forest-labs/FLUX.1-dev"), choice("RTX-4090"))
    assert fits(estimate("black-forest-labs/FLUX.1-dev"), choice("L40S"))


def test_swap_alternatives_per_kind():
    llms = alternatives("llm")
    assert [i for i, _ in llms] == list(QWEN3)
    images = dict(alternatives("text-to-image"))
    assert "Lykon/dreamshaper-8" in images and "stabilityai/sdxl-turbo" in images
    assert all(desc for desc in images.values())
    assert alternatives("speech") == []


def test_every_swap_alternative_is_a_known_model_of_that_kind():
    for kind in ("llm", "text-to-image"):
        for model_id, _ in alternatives(kind):
            assert lookup(model_id).kind == kind


@pytest.mark.parametrize(
    "s",
    [
        "Qwen/Qwen3-4B",
        "Lykon/dreamshaper-8",
        "black-forest-labs/FLUX.1-dev",
        "openai/whisper-large-v3",
        "facebook/opt-125m",
    ],
)
def test_model_ids_are_recognised(s):
    assert looks_like_model_id(s)


@pytest.mark.parametrize(
    "s",
    [
        "image/png",
        "application/json",
        "src/main.py",
        "and/or",
        "2024/01",
        "/abs/path",
        "./models/x",
        "https://huggingface.co/Qwen/Qwen3-4B",
        "Qwen3-4B",
        "a/b/c",
        "",
        "org--x/name-1",
    ],
)
def test_other_strings_are_not_model_ids(s):
    assert not looks_like_model_id(s)
