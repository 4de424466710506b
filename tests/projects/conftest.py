"""Fixtures for real project shapes (see project_shapes.py for the shapes and helpers).

Shared by every test in tests/projects/ (B's test_two_projects.py included):
- make_shape(shape, name=None): a fresh copy of one of project_shapes.SHAPES in this test's
  tmp folder, as a ProjectDir (write/edit like an editor save, sync, call).
- dev_server(path): `slipstream dev` started on a free port and serving; stopped after the test.
The `runtime` fixture (a real `slipstream serve --gpu-fallback`) comes from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from project_shapes import DevServer, ProjectDir, make_project


@pytest.fixture()
def make_shape(tmp_path: Path) -> Callable[..., ProjectDir]:
    """make_shape("package") -> a fresh copy of that shape in this test's tmp folder."""
    return lambda shape, name=None: make_project(tmp_path, shape, name)


@pytest.fixture()
def dev_server() -> Iterator[Callable[..., DevServer]]:
    started: list[DevServer] = []

    def start(path: Path, **kw: Any) -> DevServer:
        d = DevServer(path, **kw)
        started.append(d)
        d.wait_for("serving", timeout=90)
        d.wait_listening()
        return d

    yield start
    for d in started:
        d.stop()
