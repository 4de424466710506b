from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

import slipstream.spec.catalog
from slipstream.spec.catalog import GPU, Catalog, GPUChoice, GPURequest, catalog, cost, normalize

CANONICAL = [
    "B200", "H200", "H100", "RTX-PRO-6000", "A100-80GB", "A100-40GB", "L40S", "L40",
    "RTX-6000-ADA", "A6000", "A40", "RTX-4090", "L4", "A5000", "RTX-3090", "A4000", "A4500",
    "RTX-4000-ADA", "A10", "T4",
]  # fmt: skip


def gpu(name: str) -> GPU:
    found = catalog().lookup(name)
    assert found is not None, name
    return found


def test_catalog_has_every_canonical_gpu_in_order():
    assert list(catalog().names) == CANONICAL


def test_catalog_is_loaded_once():
    assert catalog() is catalog()


@pytest.mark.parametrize(
    "written, canonical",
    [
        ("h100", "H100"),
        ("H100 80GB", "H100"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("h100_80gb", "H100"),
        ("a100-80gb", "A100-80GB"),
        ("A100 80GB", "A100-80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("rtx 4090", "RTX-4090"),
        ("NVIDIA GeForce RTX 4090", "RTX-4090"),
        ("RTX 6000 Ada", "RTX-6000-ADA"),
        ("rtx pro 6000", "RTX-PRO-6000"),
        ("Tesla T4", "T4"),
        ("A10G", "A10"),
        ("l40s", "L40S"),
    ],
)
def test_names_match_case_and_separator_insensitively(written, canonical):
    assert gpu(written).name == canonical


@pytest.mark.parametrize(
    "device_name, canonical",
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA B200", "B200"),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
        ("NVIDIA A100 80GB PCIe", "A100-80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA A100-PCIE-40GB", "A100-40GB"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA A10G", "A10"),
        ("NVIDIA RTX A6000", "A6000"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX-6000-ADA"),
        ("NVIDIA GeForce RTX 3090", "RTX-3090"),
        ("Tesla T4", "T4"),
    ],
)
def test_names_the_driver_reports_resolve(device_name, canonical):
    # nvidia-smi / torch.cuda.get_device_name spellings, used by the runtime's inventory
    assert gpu(device_name).name == canonical


def test_l4_never_matches_l40s():
    assert gpu("L4").name == "L4"
    assert gpu("l4").vram_gb == 24
    assert gpu("L40S").name == "L40S"
    assert gpu("L40").name == "L40"
    assert catalog().lookup("L4S") is None


def test_matching_is_exact_never_by_prefix():
    assert catalog().lookup("H1") is None
    assert catalog().lookup("A100-8") is None
    assert catalog().lookup("A1") is None
    assert catalog().lookup("") is None


def test_plain_a100_means_the_80gb_card():
    assert gpu("A100").name == "A100-80GB"
    assert gpu("A100").vram_gb == 80


def test_a100_40gb_is_its_own_entry_priced_by_modal_only():
    a100_40 = gpu("A100-40GB")
    assert a100_40.vram_gb == 40
    assert a100_40.modal == 0.000583
    assert a100_40.runpod_flex is None and a100_40.runpod_active is None


def test_runpod_pool_name_resolves_to_h100():
    assert gpu("ADA_80_PRO").name == "H100"
    assert gpu("Ada 80 Pro").name == "H100"
    assert gpu("H100").runpod_pool == "ADA_80_PRO"


@pytest.mark.parametrize(
    "pool, canonical",
    [
        ("AMPERE_80", "A100-80GB"),
        ("ADA_24", "RTX-4090"),
        ("AMPERE_48", "A6000"),
        ("ADA_48_PRO", "L40S"),
        ("AMPERE_24", "A5000"),
        ("AMPERE_16", "A4000"),
        ("HOPPER_141", "H200"),
        ("BLACKWELL_180", "B200"),
    ],
)
def test_runpod_pool_names_resolve(pool, canonical):
    assert gpu(pool).name == canonical


def test_gpus_sharing_a_pool_record_it():
    assert {g.name for g in catalog().gpus if g.runpod_pool == "ADA_48_PRO"} == {
        "L40",
        "L40S",
        "RTX-6000-ADA",
    }
    assert {g.name for g in catalog().gpus if g.runpod_pool == "AMPERE_24"} == {
        "L4",
        "A5000",
        "RTX-3090",
    }


def test_no_two_gpus_share_an_alias():
    seen: dict[str, str] = {}
    for g in catalog().gpus:
        for alias in (g.name, *g.aliases):
            key = normalize(alias)
            assert seen.setdefault(key, g.name) == g.name, f"{alias} is on {seen[key]} and {g.name}"


def test_a_clashing_alias_is_refused():
    with pytest.raises(ValueError, match="clashes"):
        Catalog([GPU("X1", 10, aliases=("shared",)), GPU("X2", 10, aliases=("Shared",))])


def test_prices_match_the_design_facts():
    h100 = gpu("H100")
    assert (h100.runpod_flex, h100.runpod_active, h100.modal) == (0.00116, 0.00093, 0.001097)
    b200 = gpu("B200")
    assert (b200.vram_gb, b200.runpod_flex, b200.runpod_active, b200.modal) == (
        180,
        0.00240,
        0.00190,
        0.001736,
    )
    assert gpu("L4").modal == 0.000222
    assert gpu("L40S").modal == 0.000542
    assert gpu("RTX-PRO-6000").runpod_active is None


def test_every_catalog_price_has_a_source():
    for g in catalog().gpus:
        for fld in ("vram_gb", "runpod_flex", "runpod_active", "modal"):
            if fld == "vram_gb" or getattr(g, fld) is not None:
                assert fld in g.sources, f"{g.name}.{fld} has no source"
                assert g.sources[fld].endswith(", 2026-06"), g.sources[fld]
        assert g.price_per_second() > 0


def test_price_falls_back_when_a_tier_is_missing():
    assert gpu("T4").price_per_second("flex") == 0.000164  # Modal only
    assert gpu("RTX-PRO-6000").price_per_second("active") == 0.00111  # no active price
    assert gpu("L40").price_per_second("modal") == 0.00053  # not on Modal
    assert gpu("H100").price_per_second("active") == 0.00093
    with pytest.raises(ValueError, match="tier"):
        gpu("H100").price_per_second("spot")


def test_h100_2_doubles_price():
    request, problems = catalog().parse("H100:2")
    assert problems == []
    assert request.primary.label == "H100:2"
    assert request.primary.vram_gb == 160
    assert request.price_per_second() == pytest.approx(2 * 0.00116)
    assert cost("H100:2", 10) == pytest.approx(2 * cost("H100", 10))


def test_count_of_one_is_written_without_suffix():
    request, _ = catalog().parse("h100:1")
    assert request.label == "H100"


def test_fallback_list_keeps_order():
    request, problems = catalog().parse(["A100", "h100:2", "L40S"])
    assert problems == []
    assert request.label == "A100-80GB|H100:2|L40S"
    assert request.primary == GPUChoice(gpu("A100-80GB"), 1)
    request, _ = catalog().parse(("H100:2",))
    assert request.labels == ("H100:2",)


def test_none_is_the_cpu():
    request, problems = catalog().parse(None)
    assert problems == [] and request.is_cpu
    assert request.label == "CPU" and request.primary is None
    assert request.price_per_second() == 0.0
    assert GPURequest().is_cpu


def test_unknown_gpu_suggests_nearest():
    assert catalog().nearest("H1000")[0] == "H100"
    assert catalog().nearest("a100 80")[0] == "A100-80GB"
    request, problems = catalog().parse("H1000")
    assert request is None
    [p] = problems
    assert p.code == "unknown-gpu" and p.field == "gpu"
    assert p.hint == "Did you mean 'H100'?"
    assert "H100" in p.message and "A100-80GB" in p.message


def test_nearest_returns_canonical_names_only_once():
    near = catalog().nearest("ADA_80", n=5)
    assert len(near) == len(set(near))
    assert all(n in CANONICAL for n in near)
    assert catalog().nearest("zzzzzz") == []


@pytest.mark.parametrize("value", ["H100:0", "H100:x", "H100:", "H100:-1", "H100:9", "H100:1.5"])
def test_bad_gpu_counts_are_reported(value):
    request, problems = catalog().parse(value)
    assert request is None
    assert [p.code for p in problems] == ["bad-gpu-count"]


@pytest.mark.parametrize(
    "value", [[], (), 100, {"gpu": "H100"}, ["H100", 2], [""], ":2", "cpu", ["H100", "CPU"]]
)
def test_bad_gpu_values_are_reported(value):
    request, problems = catalog().parse(value)
    assert request is None
    assert [p.code for p in problems] == ["bad-gpu"]


def test_every_bad_entry_in_a_list_is_reported():
    _, problems = catalog().parse(["H1000", "A100:0", "L4"])
    assert [p.code for p in problems] == ["unknown-gpu", "bad-gpu-count"]


def test_a_repeated_fallback_is_a_warning_and_dropped():
    request, problems = catalog().parse(["H100", "h100"])
    assert request.labels == ("H100",)
    assert [(p.code, p.severity) for p in problems] == [("bad-gpu", "warning")]


def test_cheaper_that_fit_for_an_h100_and_a_20gb_model():
    cheaper = catalog().cheaper_that_fit(20, than=gpu("H100"))
    names = [g.name for g in cheaper]
    assert "H100" not in names and "B200" not in names
    assert all(g.vram_gb >= 20 for g in cheaper)
    assert "T4" not in names  # 16 GB
    prices = [g.price_per_second() for g in cheaper]
    assert prices == sorted(prices)
    assert names[0] in {"L4", "A5000", "RTX-3090"}  # 24 GB at $0.00019/s


def test_nothing_is_cheaper_than_the_cheapest_fit():
    assert catalog().cheaper_that_fit(150, than=gpu("B200")) == []


def test_cost_of_a_call():
    assert cost("H100", 2.5) == pytest.approx(2.5 * 0.00116)
    assert cost("h100", 2.5, tier="active") == pytest.approx(2.5 * 0.00093)
    assert cost("H100", 2.5, tier="modal") == pytest.approx(2.5 * 0.001097)


def test_cpu_calls_are_free():
    assert cost(None, 100) == 0.0
    assert cost("CPU", 100) == 0.0


def test_billing_rounds_up_only_when_asked():
    assert cost("L4", 0.2) == pytest.approx(0.2 * 0.00019)
    assert cost("L4", 0.2, billed=True) == pytest.approx(0.00019)
    assert cost("L4", 3.0, billed=True) == pytest.approx(3 * 0.00019)


def test_a_fallback_label_costs_its_first_choice():
    assert cost("H100|A100-80GB", 1) == pytest.approx(0.00116)


def test_cost_refuses_unknown_gpus_and_bad_durations():
    with pytest.raises(ValueError, match="unknown GPU"):
        cost("H1000", 1)
    with pytest.raises(ValueError):
        cost("H100", -1)
    with pytest.raises(ValueError):
        cost("H100", math.nan)


def test_gpus_are_hashable_values():
    assert len({gpu("H100"), gpu("h100"), gpu("A100")}) == 2


def test_import_is_light():
    # Load our modules without running slipstream/__init__.py (the SDK's, which may import
    # more), then check that they pulled in nothing heavy and that the data files load.
    root = Path(slipstream.spec.catalog.__file__).parent
    code = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location(
    "slipstream", {str(root / "__init__.py")!r}, submodule_search_locations=[{str(root)!r}])
sys.modules["slipstream"] = importlib.util.module_from_spec(spec)
import slipstream.spec.catalog, slipstream.spec.endpoint_spec, slipstream.spec.modelsize
slipstream.spec.catalog.catalog(); slipstream.spec.modelsize.known_models()
heavy = {{"numpy", "torch", "httpx"}} & set(sys.modules)
assert not heavy, heavy
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_letter_o_typed_for_zero_still_finds_the_gpu():
    from slipstream.spec.catalog import catalog

    assert catalog().nearest("H1OO")[0] == "H100"
    assert catalog().nearest("a1oo")[0] == "A100-80GB"
