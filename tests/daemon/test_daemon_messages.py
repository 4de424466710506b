"""What the editor says about `example=` and spec warnings, through the real language server."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_client import Client
from lsprotocol import types

pytestmark = pytest.mark.asyncio(loop_scope="module")

EXAMPLES = """from slipstream import endpoint


@endpoint(example={"nme": "x"})
def greet(name: str, times: int = 1) -> str:
    return name * times


@endpoint(
    gpu="H100",
    example={"paint": {"prompt": "a cat", "stepz": 3}, "draw": {}},
)
class Painter:
    def setup(self):
        pass

    def paint(self, prompt: str, steps: int = 25):
        return prompt


@endpoint(example={"a": 1, "extra": 2})
def takes_any(a, **options):
    return a


@endpoint(env={"HF_TOKEN": "hf_123", "MODE": "fast"})
def leaky() -> str:
    return "x"
"""


def _of(diagnostics: list[types.Diagnostic], code: str) -> list[types.Diagnostic]:
    return [d for d in diagnostics if d.code == code]


async def test_an_example_that_does_not_fit_the_signature_is_marked_on_its_line(
    daemon: Client, editing_project: Path
) -> None:
    uri = daemon.open(editing_project / "examples_check.py", EXAMPLES)
    diagnostics = await daemon.diagnostics_for(uri, version=1)
    found = _of(diagnostics, "example-mismatch")
    by_line: dict[int, list[str]] = {}
    for d in found:
        assert d.severity == types.DiagnosticSeverity.Error
        by_line.setdefault(d.range.start.line, []).append(d.message)
    assert sorted(by_line) == [3, 10], (
        "on the example= lines of greet and Painter only (**options takes any key)"
    )
    greet = " ".join(by_line[3])
    assert "has no parameter 'nme'" in greet and "needs 'name'" in greet
    painter = " ".join(by_line[10])
    assert (
        "'stepz'" in painter and "method 'draw'" in painter and "public methods: paint" in painter
    )
    line = EXAMPLES.splitlines()[3]
    assert found[0].range.start.character == line.index("{")

    fixed = EXAMPLES.replace('{"nme": "x"}', '{"name": "x"}').replace(
        '{"paint": {"prompt": "a cat", "stepz": 3}, "draw": {}}',
        '{"paint": {"prompt": "a cat", "steps": 3}}',
    )
    version = daemon.replace(uri, fixed)
    assert _of(await daemon.diagnostics_for(uri, version=version), "example-mismatch") == []


async def test_a_secret_looking_env_value_is_a_warning(
    daemon: Client, editing_project: Path
) -> None:
    uri = daemon.open(editing_project / "env_check.py", EXAMPLES)
    diagnostics = await daemon.diagnostics_for(uri, version=1)
    [warning] = [d for d in diagnostics if "looks like a secret" in d.message]
    assert warning.severity == types.DiagnosticSeverity.Warning
    assert "HF_TOKEN" in warning.message and "MODE" not in warning.message
    assert warning.range.start.line == EXAMPLES.splitlines().index(
        '@endpoint(env={"HF_TOKEN": "hf_123", "MODE": "fast"})'
    )
