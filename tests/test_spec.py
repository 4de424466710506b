from __future__ import annotations

import json
import pickle

import pytest

from slipstream.spec.endpoint_spec import (
    DEFAULTS,
    EndpointSpec,
    Problem,
    SpecError,
    build_spec,
    model_problems,
    validate,
)


def codes(name: str = "fn", **kwargs) -> list[str]:
    _, problems = validate(name, **kwargs)
    return [p.code for p in problems]


def test_defaults_make_a_cpu_endpoint_named_after_the_function():
    spec = build_spec("generate")
    assert spec.name == "generate"
    assert spec.gpu == () and spec.is_cpu
    assert spec.gpu_label == "CPU"
    assert spec.gpu_request.is_cpu
    assert spec.price_per_second() == 0.0
    assert (spec.workers_min, spec.workers_max) == (0, 1)
    assert (spec.concurrency, spec.timeout, spec.idle_timeout) == (1, 300.0, 60.0)
    assert spec.dependencies == () and spec.env == () and spec.example is None


def test_defaults_are_the_documented_decorator_defaults():
    assert DEFAULTS == dict(
        name=None,
        gpu=None,
        gpu_memory=None,
        workers=1,
        concurrency=1,
        timeout=300,
        idle_timeout=60,
        dependencies=(),
        env=None,
        example=None,
        retries=0,
        secrets=(),
        runtime=None,
    )
    assert validate("fn", **DEFAULTS) == (build_spec("fn"), [])


def test_name_parameter_overrides_the_function_name():
    assert build_spec("paint_v2", name="paint").name == "paint"
    assert build_spec("paint_v2", name=None).name == "paint_v2"


def test_gpu_names_become_canonical_labels():
    spec = build_spec("paint", gpu="h100")
    assert spec.gpu == ("H100",)
    assert spec.gpu_label == "H100"
    assert spec.price_per_second() == 0.00116
    assert spec.price_per_second("active") == 0.00093


def test_h100_2_doubles_the_endpoint_price():
    spec = build_spec("paint", gpu="H100:2")
    assert spec.gpu_label == "H100:2"
    assert spec.price_per_second() == pytest.approx(2 * 0.00116)
    assert spec.gpu_request.primary.vram_gb == 160


def test_fallback_list_keeps_order():
    spec = build_spec("paint", gpu=["H100:2", "a100"])
    assert spec.gpu == ("H100:2", "A100-80GB")
    assert spec.gpu_request.label == "H100:2|A100-80GB"
    assert spec.gpu_label == "H100:2"  # what a worker tries first


def test_unknown_gpu_suggests_nearest():
    spec, problems = validate("paint", gpu="H1000")
    assert spec is None
    [p] = problems
    assert (p.code, p.field, p.hint) == ("unknown-gpu", "gpu", "Did you mean 'H100'?")


def test_spec_error_lists_every_problem_with_its_hint():
    with pytest.raises(SpecError) as info:
        build_spec("paint", gpu="H1000", workers=(3, 1))
    err = info.value
    assert isinstance(err, ValueError)
    assert [p.code for p in err.problems] == ["unknown-gpu", "workers-min-gt-max"]
    lines = str(err).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("endpoint 'paint': unknown GPU 'H1000'")
    assert lines[0].endswith("(gpu). Did you mean 'H100'?")
    assert "workers" in lines[1] and "Swap them: workers=(1, 3)." in lines[1]


def test_spec_error_survives_pickling_to_the_client():
    with pytest.raises(SpecError) as info:
        build_spec("paint", gpu="H1000")
    again = pickle.loads(pickle.dumps(info.value))
    assert again.problems == info.value.problems
    assert str(again) == str(info.value)


def test_unknown_parameter_suggests_the_nearest_name():
    spec, problems = validate("paint", gpus="H100")
    assert spec is None
    [p] = problems
    assert (p.code, p.field, p.hint) == ("unknown-parameter", "gpus", "Did you mean 'gpu'?")
    assert validate("paint", wokers=2)[1][0].hint == "Did you mean 'workers'?"
    assert validate("paint", min_containers=1)[1][0].hint == "Did you mean 'workers'?"
    assert validate("paint", deps=["torch"])[1][0].hint == "Did you mean 'dependencies'?"


def test_workers_number_means_scale_from_zero():
    spec = build_spec("paint", workers=3)
    assert (spec.workers_min, spec.workers_max) == (0, 3)


def test_workers_pair_keeps_some_warm():
    spec = build_spec("paint", workers=(1, 3))
    assert (spec.workers_min, spec.workers_max) == (1, 3)
    assert build_spec("paint", workers=[2, 2]).workers_min == 2


def test_workers_min_greater_than_max_is_reported():
    assert codes(workers=(3, 1)) == ["workers-min-gt-max"]


@pytest.mark.parametrize(
    "workers", [0, -1, (0, 0), (-1, 2), (1, 2, 3), (1,), "3", 2.5, True, (True, 2), None]
)
def test_bad_workers_are_reported(workers):
    assert codes(workers=workers) == ["bad-workers"]


@pytest.mark.parametrize("concurrency", [0, -2, 1.5, "4", True, None])
def test_bad_concurrency_is_reported(concurrency):
    assert codes(concurrency=concurrency) == ["bad-concurrency"]


@pytest.mark.parametrize("timeout", [0, -5, 86401, float("inf"), float("nan")])
def test_bad_timeouts_are_reported(timeout):
    assert codes(timeout=timeout) == ["bad-timeout"]


@pytest.mark.parametrize("idle_timeout", [-1, float("nan"), float("inf")])
def test_bad_idle_timeouts_are_reported(idle_timeout):
    assert codes(idle_timeout=idle_timeout) == ["bad-idle-timeout"]


@pytest.mark.parametrize("field", ["timeout", "idle_timeout"])
@pytest.mark.parametrize("value", [True, "300", None, [300]])
def test_timeouts_of_the_wrong_type_are_reported(field, value):
    _, problems = validate("fn", **{field: value})
    assert [(p.code, p.field) for p in problems] == [("timeout-type", field)]


def test_timeout_limits_are_inclusive_where_sensible():
    assert build_spec("fn", timeout=86400).timeout == 86400.0
    assert build_spec("fn", timeout=0.5).timeout == 0.5
    assert build_spec("fn", idle_timeout=0).idle_timeout == 0.0


@pytest.mark.parametrize(
    "dep",
    [
        "torch",
        "torch>=2.1",
        "torch==2.13.0",
        "diffusers[torch]>=0.30,<1",
        "transformers ~= 4.45",
        "numpy (>=1.26)",
        "pillow; python_version >= '3.10'",
        "my-pkg @ https://example.com/my_pkg-1.0-py3-none-any.whl",
        "zope.interface",
    ],
)
def test_valid_requirements_are_accepted(dep):
    assert build_spec("fn", dependencies=[dep]).dependencies == (dep,)


@pytest.mark.parametrize("dep", ["torch>>2", "", "   ", "torch 2.1", "-e .", "==1.0", 3, None])
def test_bad_requirements_are_reported(dep):
    assert codes(dependencies=["numpy", dep]) == ["bad-dependencies"]


def test_a_single_requirement_string_must_be_wrapped_in_a_list():
    _, [p] = validate("fn", dependencies="torch")
    assert p.code == "bad-dependencies"
    assert p.hint == "Wrap it in a list: dependencies=['torch']."


def test_env_is_stored_sorted_as_pairs():
    spec = build_spec("fn", env={"B": "2", "A": "1"})
    assert spec.env == (("A", "1"), ("B", "2"))


@pytest.mark.parametrize("env", [["A=1"], {"A": 1}, {"1A": "x"}, {"A B": "x"}, {3: "x"}])
def test_bad_env_is_reported(env):
    assert codes(env=env) == ["bad-env"]


def test_secret_looking_env_is_a_warning_not_an_error():
    spec, problems = validate("fn", env={"HF_TOKEN": "hf_abc", "OPENAI_API_KEY": "sk"})
    assert spec is not None
    assert [(p.code, p.severity) for p in problems] == [("bad-env", "warning")] * 2
    assert "use secrets=['HF_TOKEN'] instead" in problems[0].hint


def test_ordinary_env_names_are_not_mistaken_for_secrets():
    env = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "MONKEY": "x"}
    assert validate("fn", env=env)[1] == []


def test_example_must_be_json_keyword_arguments():
    assert build_spec("fn", example={"prompt": "a cat", "steps": 2}).example == {
        "prompt": "a cat",
        "steps": 2,
    }
    assert codes(example=["a cat"]) == ["bad-example"]
    assert codes(example={1: "x"}) == ["bad-example"]
    assert codes(example={"image": object()}) == ["bad-example"]
    assert codes(example={"x": float("nan")}) == ["bad-example"]


@pytest.mark.parametrize("name", ["", "1paint", "paint me", "a" * 65, "x/y", 7])
def test_bad_names_are_reported(name):
    assert codes(name=name) == ["bad-name"]


def test_names_may_use_dots_and_dashes():
    assert build_spec("fn", name="Painter.paint-v2").name == "Painter.paint-v2"


def test_every_problem_is_reported_at_once():
    _, problems = validate(
        "fn", gpu="H100:0", workers="many", concurrency=0, timeout=-1, idle_timeout=-1
    )
    assert [p.code for p in problems] == [
        "bad-gpu-count",
        "bad-workers",
        "bad-concurrency",
        "bad-timeout",
        "bad-idle-timeout",
    ]
    assert all(p.message and p.hint for p in problems)


def test_spec_round_trips_through_json():
    spec = build_spec(
        "paint",
        gpu=["H100:2", "A100"],
        workers=(1, 3),
        concurrency=2,
        timeout=120,
        idle_timeout=30,
        dependencies=["diffusers>=0.30"],
        env={"HF_HUB_OFFLINE": "1"},
        example={"prompt": "a cat"},
    )
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["gpu"] == ["H100:2", "A100-80GB"]
    assert EndpointSpec.from_dict(data) == spec
    assert EndpointSpec.from_dict(build_spec("cpu_fn").to_dict()).is_cpu


def test_from_dict_revalidates_what_a_client_sent():
    data = build_spec("paint", gpu="H100").to_dict()
    data["gpu"] = ["H1000"]
    with pytest.raises(SpecError, match="Did you mean 'H100'"):
        EndpointSpec.from_dict(data)
    with pytest.raises(SpecError):
        EndpointSpec.from_dict({"gpu": ["H100"]})


def test_from_dict_ignores_keys_from_newer_versions():
    data = build_spec("paint").to_dict() | {"region": "eu"}
    assert EndpointSpec.from_dict(data) == build_spec("paint")


def test_specs_are_hashable_and_compare_by_value():
    assert build_spec("f", gpu="h100") == build_spec("f", gpu="H100")
    with_example = build_spec("f", example={"a": 1})
    assert len({with_example, build_spec("f", example={"a": 1}), build_spec("f")}) == 2


def test_problem_round_trips_through_a_dict():
    p = Problem("unknown-gpu", "unknown GPU 'X'", "gpu", "Did you mean 'H100'?")
    assert Problem.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert Problem.from_dict({"code": "c", "message": "m"}).severity == "error"


def test_qwen3_32b_does_not_fit_on_a_l4():
    spec = build_spec("write", gpu="L4")
    [p] = model_problems(spec, ["Qwen/Qwen3-32B"])
    assert (p.code, p.field, p.severity) == ("model-too-large", "gpu", "error")
    assert p.message == "Qwen/Qwen3-32B needs ~79.7 GB (bf16) but L4 has 24 GB"
    assert "A100-80GB" in p.hint and "cheapest" in p.hint


def test_small_and_unknown_models_raise_no_problem():
    spec = build_spec("paint", gpu="L4")
    assert model_problems(spec, ["Lykon/dreamshaper-8", "Qwen/Qwen3-4B", "acme/secret"]) == []


def test_a_count_adds_up_the_memory():
    assert model_problems(build_spec("w", gpu="L4:4"), ["Qwen/Qwen3-32B"]) == []
    assert len(model_problems(build_spec("w", gpu="L4:2"), ["Qwen/Qwen3-32B"])) == 1


def test_only_the_primary_choice_is_checked():
    spec = build_spec("w", gpu=["L4", "H100"])
    assert len(model_problems(spec, ["Qwen/Qwen3-32B"])) == 1


def test_cpu_endpoints_skip_the_model_check():
    assert model_problems(build_spec("w"), ["Qwen/Qwen3-32B"]) == []


def test_a_model_no_single_gpu_holds_suggests_several():
    [p] = model_problems(build_spec("w", gpu="H100"), ["meta-llama/Llama-3.1-405B"])
    assert "No single GPU fits" in p.hint
    assert ":8'" in p.hint or ":4'" in p.hint
