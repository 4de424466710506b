"""The decorator's parameters are defined once (spec/params.PARAMETERS): endpoint()'s signature,
with_options()'s, the spec's defaults and the documented signature all match it; a positional
name works on a real runtime, and what the decorator refuses it refuses saying what to write
(the editor flags the same: tests/daemon/test_daemon_finder.py, test_daemon_editing.py)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from slipstream import endpoint
from slipstream.endpoint import Endpoint
from slipstream.spec.endpoint_spec import DEFAULTS
from slipstream.spec.params import OPTIONS, PARAMETERS, POSITIONAL

DOCS = Path(__file__).resolve().parents[2] / "docs" / "endpoint-api.md"


def test_endpoint_signature_is_the_table():
    params = inspect.signature(endpoint).parameters.values()
    keywords = [(p.name, p.default) for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert keywords == [(p.name, p.default) for p in PARAMETERS]
    assert DEFAULTS == {p.name: p.default for p in PARAMETERS}
    assert POSITIONAL == ("name",)


def test_with_options_signature_is_the_tables_options():
    params = inspect.signature(Endpoint.with_options).parameters
    assert sorted(
        n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
    ) == sorted(OPTIONS)


def test_documented_signature_and_table_list_every_parameter():
    text = DOCS.read_text()
    documented = re.search(r"@endpoint\((.*?)\)\n```", text, re.DOTALL)
    assert documented, "docs/endpoint-api.md opens with the decorator's signature"
    written = " ".join(documented.group(1).split())
    assert written == ", ".join(f"{p.name}={p.default!r}" for p in PARAMETERS)
    for p in PARAMETERS:
        assert f"| `{p.name}` |" in text, f"docs/endpoint-api.md's table lacks {p.name}"


APP = """
from slipstream import endpoint

@endpoint("shout")
def loud(text: str) -> str:
    return text.upper()
"""


def test_a_positional_name_names_the_endpoint_on_the_runtime(runtime, project_factory):
    proj = project_factory(runtime, {"named_app.py": APP})
    app = proj.module("named_app")
    assert app.loud.name == "shout"
    assert app.loud("hi") == "HI"
    assert [e["name"] for e in proj.sync().endpoints] == ["shout"], (
        "the runtime serves it by that name"
    )


@pytest.mark.parametrize(
    ("decorator", "says"),
    [
        (
            '@endpoint("x", "H100")',
            'argument 2 needs one. Write it as keyword=value, e.g. gpu="H100"',
        ),
        ('@endpoint("x", name="y")', "got 'name' twice"),
    ],
)
def test_what_the_decorator_refuses_it_refuses_at_import_saying_what_to_write(
    tmp_path, monkeypatch, decorator, says
):
    (tmp_path / "refused_app.py").write_text(
        f"from slipstream import endpoint\n\n{decorator}\ndef f():\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError) as err:
        __import__("refused_app")
    assert says in str(err.value)


SAMPLES = dict(
    name="p",
    gpu="H100",
    gpu_memory=24,
    workers=(1, 3),
    concurrency=2,
    timeout=120,
    idle_timeout=30,
    dependencies=["diffusers>=0.30"],
    env={"HF_HUB_OFFLINE": "1"},
    example={"prompt": "x"},
    retries=2,
    secrets=["HF_TOKEN"],
    runtime="box",
)


def test_every_parameter_survives_the_trip_to_the_runtime():
    """What the decorator takes reaches the runtime: a spec sent as JSON (to_dict) and rebuilt
    there (from_dict) keeps every parameter of the table, a new one too (add it to SAMPLES)."""
    import json

    from slipstream.spec.endpoint_spec import EndpointSpec, build_spec

    assert set(SAMPLES) == set(DEFAULTS), (
        "give each parameter of the table a value that is not its default"
    )
    spec = build_spec("fn", **SAMPLES)
    back = EndpointSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec
    assert back != build_spec("fn", name="p"), "the samples are not the defaults"
