"""Fixtures for the daemon's tests: one real daemon per test module (module-scoped loop)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from daemon_client import Client, start_daemon

PROJECTS = Path(__file__).parent / "projects"


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Copy tests/daemon/projects/<name> to a fresh folder (each has a slipstream.toml)."""

    def copy(name: str) -> Path:
        dest = tmp_path_factory.mktemp(name) / name
        shutil.copytree(PROJECTS / name, dest)
        return dest.resolve()

    return copy


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def editing_project(project_copy: Callable[[str], Path]) -> Path:
    return project_copy("editing")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def daemon(editing_project: Path) -> AsyncIterator[Client]:
    client = await start_daemon(editing_project)
    yield client
    await client.shutdown_session()
    await client.stop()
