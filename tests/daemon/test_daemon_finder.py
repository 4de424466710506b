"""In-process pieces: the finder and position conversion every lens and diagnostic uses, and
how the runtime's GPU inventory is summarised."""

from __future__ import annotations

import pytest
from lsprotocol import types

from slipstream_daemon.facts import is_model_id
from slipstream_daemon.finder import UNRESOLVED, index_document
from slipstream_daemon.positions import LineIndex, Span, split_lines


def _index(source: str):
    return index_document("file:///m.py", 1, source, is_model_id)


@pytest.mark.parametrize(
    ("imports", "decorator"),
    [
        ("from slipstream import endpoint", "@endpoint"),
        ("from slipstream import keep, endpoint as ep", "@ep"),
        ("from slipstream import (\n    keep,\n    endpoint as remote,\n)", "@remote"),
        ("import slipstream as ss", "@ss.endpoint"),
        ("import os, slipstream", "@slipstream.endpoint"),
        ("from slipstream import *", "@endpoint"),
    ],
)
def test_every_way_of_importing_endpoint(imports: str, decorator: str) -> None:
    index = _index(f'{imports}\n\n\n{decorator}(gpu="H100")\ndef f():\n    pass\n')
    [ep] = index.endpoints
    assert ep.name == "f" and ep.value("gpu") == "H100"


def test_other_libraries_endpoint_is_not_ours() -> None:
    source = 'from fastapi_thing import endpoint\n\n\n@endpoint(gpu="H100")\ndef f():\n    pass\n'
    assert _index(source).endpoints == []


def test_arguments_positional_constant_and_unresolved() -> None:
    source = (
        "from slipstream import endpoint\n"
        'GPU: str = "A100-80GB"\n'
        "N = 4\n"
        "\n"
        '@endpoint("painter", gpu=GPU, workers=(1, N), timeout=some_call(), example=dict(prompt="x"))\n'
        "async def paint(prompt: str) -> str:\n"
        "    return prompt\n"
    )
    [ep] = _index(source).endpoints
    assert ep.name == "painter" and ep.symbol == "paint" and ep.is_async
    assert ep.binding_problems == []
    gpu = ep.args["gpu"]
    assert gpu.value == "A100-80GB" and gpu.constant == "GPU"
    assert gpu.span == Span(4, 25, 4, 28)  # where it is used
    assert gpu.literal_span == Span(1, 11, 1, 22)  # where the literal is written
    assert ep.args["workers"].value == (1, 4)
    assert ep.args["timeout"].value is UNRESOLVED
    assert "timeout" not in ep.kwargs()
    assert ep.value("example") == {"prompt": "x"}


def test_arguments_bound_as_the_decorator_binds_them() -> None:
    """Only the name may come without its keyword (spec.params.POSITIONAL): a second positional
    argument is not read as gpu= (the decorator refuses it at import) but reported at itself."""
    source = 'from slipstream import endpoint\n\n@endpoint("painter", "H100", name="p")\ndef paint():\n    pass\n'
    [ep] = _index(source).endpoints
    assert ep.name == "painter" and "gpu" not in ep.args
    assert [(span, p.code) for span, p in ep.binding_problems] == [
        (Span(2, 21, 2, 27), "positional-argument"),
        (Span(2, 34, 2, 37), "duplicate-argument"),
    ]


def test_model_ids_in_defaults_keep_keys_and_constants() -> None:
    source = (
        "from slipstream import endpoint, keep\n"
        'LLM = "Qwen/Qwen3-0.6B"\n'
        'MIME = "image/png"\n'
        "\n"
        '@endpoint(gpu="H100")\n'
        "class Both:\n"
        "    def setup(self):\n"
        '        self.pipe = keep("Lykon/dreamshaper-8", lambda: None)\n'
        "        self.mime = MIME\n"
        "\n"
        "    def write(self, model=LLM):\n"
        "        return model\n"
    )
    [ep] = _index(source).endpoints
    assert [(m.model_id, m.constant) for m in ep.models] == [
        ("Lykon/dreamshaper-8", None),
        ("Qwen/Qwen3-0.6B", "LLM"),
    ]
    assert ep.models[1].span == Span(1, 6, 1, 23)
    assert [m.name for m in ep.methods] == ["write"]


def test_docstring_in_column_zero_and_stacked_decorators() -> None:
    source = (
        "import functools\n"
        "from slipstream import endpoint\n"
        "\n"
        "@functools.cache\n"
        "@endpoint(\n"
        '    gpu="L4",\n'
        ")\n"
        "def f():\n"
        '    """A docstring\n'
        "that reaches column zero.\n"
        '"""\n'
        "    import torch\n"
        "    return torch\n"
        "\n"
        "x = 1\n"
    )
    index = _index(source)
    assert index.syntax_errors == []
    [ep] = index.endpoints
    assert ep.statement.line == 3 and ep.decorator == Span(4, 0, 6, 1)
    assert [i.module for i in ep.imports] == ["torch"]
    assert ep.imports[0].span == Span(11, 11, 11, 16)


def test_syntax_error_is_reported_at_its_line() -> None:
    source = (
        "from slipstream import endpoint\n\n"
        "@endpoint(gpu='H100')\ndef ok():\n    pass\n\n"
        "@endpoint(gpu='H100'\ndef bad():\n    pass\n"
    )
    index = _index(source)
    assert [ep.name for ep in index.endpoints] == ["ok"]
    [problem] = index.syntax_errors
    assert problem.span == Span(6, 9, 6, 20)
    assert problem.message == "Syntax error: '(' was never closed"


@pytest.mark.parametrize(
    ("encoding", "character"),
    [
        (types.PositionEncodingKind.Utf16, 4),  # 😀 is two UTF-16 code units
        (types.PositionEncodingKind.Utf8, 7),  # é is 2 bytes, 😀 is 4
        (types.PositionEncodingKind.Utf32, 3),
        ("utf-16", 4),
    ],
)
def test_line_index_converts_code_points(encoding: str, character: int) -> None:
    lines = split_lines("first\r\nxé😀 = 1\rlast")
    assert lines == ["first\r\n", "xé😀 = 1\r", "last"]
    index = LineIndex(lines, encoding)
    assert index.position(1, 3) == types.Position(line=1, character=character)
    assert index.column(1, character) == 3


def test_split_lines_ignores_breaks_lsp_does_not_know() -> None:
    assert split_lines("a\x0cb\u2028c\nd") == ["a\x0cb\u2028c\n", "d"]


def test_gpu_inventory_groups_devices_by_model() -> None:
    from slipstream_daemon.runtime import gpu_inventory

    health = {
        "gpus": [
            {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_gb": 79.6, "canonical": "H100"},
            {"index": 1, "name": "NVIDIA H100 80GB HBM3", "memory_gb": 79.6, "canonical": "H100"},
            {"index": 2, "name": "Mystery Card", "memory_gb": 12.0, "canonical": None},
        ]
    }
    assert gpu_inventory(health) == [
        {"name": "H100", "memoryGb": 79.6, "count": 2},
        {"name": "Mystery Card", "memoryGb": 12.0, "count": 1},
    ]
    assert gpu_inventory({"gpus": [{"name": "L4", "memory_gb": 24, "count": 4}]}) == [
        {"name": "L4", "memoryGb": 24.0, "count": 4}
    ]


def test_a_home_folder_without_slipstream_toml_is_never_synced(tmp_path) -> None:
    from pathlib import Path

    from slipstream_daemon.deploy import ProjectRootError, _check_root

    with pytest.raises(ProjectRootError, match="no slipstream.toml"):
        _check_root(Path.home().resolve())
    _check_root(tmp_path)  # an ordinary folder is the project


def test_a_string_python_refuses_does_not_break_the_index() -> None:
    """libcst parses a literal holding a null byte, but Python refuses it; the file's other
    endpoints are still found and the bad value is simply not resolved."""
    source = (
        'from slipstream import endpoint\n\n\n@endpoint(gpu="H1\x0000")\ndef f():\n    pass\n\n\n'
        '@endpoint(gpu="A100")\ndef g(x="a\x00b"):\n    pass\n'
    )
    index = _index(source)
    assert [ep.name for ep in index.endpoints] == ["f", "g"]
    assert index.endpoints[0].args["gpu"].value is UNRESOLVED
    assert index.endpoints[1].value("gpu") == "A100"
