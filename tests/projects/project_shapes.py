"""Real project shapes in tmp folders, driven as a user drives them (fixtures: conftest.py).

- SHAPES: the files of each shape (a package with relative imports and no config, a src/
  layout with pyproject.toml, a namespace package, data files read at import, a module named
  like a standard-library one); `make_shape(shape, name=...)` writes one to a fresh folder.
- ProjectDir: write/edit files the way an editor saves them, sync to a served runtime, call.
- run_sdk(...): run a script of the project as a real subprocess (embedded runtime).
- DevServer: `slipstream dev` as a subprocess, its output lines awaited one by one.

The `runtime` fixture (a real `slipstream serve --gpu-fallback`) comes from tests/conftest.py.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]

SHAPES: dict[str, dict[str, str]] = {
    # app/ is a package, main.py beside it, no config file (issue 12's first report)
    "package": {
        "app/__init__.py": "",
        "app/shared.py": """
            GREETING = "hello"

            def greet(name):
                return f"{GREETING} {name}"
        """,
        "app/a.py": """
            from slipstream import endpoint

            from .shared import greet

            VERSION = 0

            @endpoint
            def hello(name):
                return f"{greet(name)} v{VERSION}"
        """,
        "app/b.py": """
            from slipstream import endpoint

            from app.sub import deep  # the submodule as an attribute of its package

            @endpoint
            def nested():
                return deep.depth()
        """,
        "app/sub/__init__.py": "",
        "app/sub/deep.py": """
            from ..shared import GREETING

            def depth():
                return f"deep {GREETING}"
        """,
        "main.py": """
            import sys

            from app.a import hello
            from app.b import nested

            if __name__ == "__main__":
                name = sys.argv[1] if len(sys.argv) > 1 else "world"
                print("REMOTE", hello(name), "|", nested())
                print("LOCAL", hello.local(name), "|", nested.local())
        """,
    },
    # src/ layout with pyproject.toml: mypkg is imported from src/, scripts from the root
    "src_layout": {
        "pyproject.toml": """
            [project]
            name = "mypkg"
            version = "0.1.0"

            [tool.setuptools.packages.find]
            where = ["src"]
        """,
        "src/mypkg/__init__.py": "",
        "src/mypkg/util.py": """
            def shout(s):
                return s.upper()
        """,
        "src/mypkg/model.py": """
            from slipstream import endpoint

            from mypkg.util import shout
            from . import util

            @endpoint
            def predict(x):
                return shout(f"predicted {x}") + "/" + util.__name__
        """,
        "run.py": """
            import sys

            from mypkg.model import predict

            if __name__ == "__main__":
                print("REMOTE", predict(sys.argv[1]))
                print("LOCAL", predict.local(sys.argv[1]))
        """,
    },
    # ns/ and ns/tools/ have no __init__.py: a namespace package, imported from the root
    "namespace": {
        "ns/tools/helpers.py": """
            def tag(x):
                return f"<{x}>"
        """,
        "ns/tools/work.py": """
            from slipstream import endpoint

            from ns.tools.helpers import tag
            from . import helpers

            @endpoint
            def wrap(x):
                return tag(x) + " from " + helpers.__name__
        """,
        "main.py": """
            import sys

            from ns.tools.work import wrap

            if __name__ == "__main__":
                print("REMOTE", wrap(sys.argv[1]))
                print("LOCAL", wrap.local(sys.argv[1]))
        """,
    },
    # data files read at import (by the package's module and through __file__ at call time)
    "data_files": {
        "app/__init__.py": "",
        "app/prompts.txt": "a lighthouse at dusk\n",
        "app/style.json": '{"style": "oil"}\n',
        "app/texts.py": """
            from pathlib import Path

            HERE = Path(__file__).parent
            PROMPT = (HERE / "prompts.txt").read_text().strip()
        """,
        "app/paint.py": """
            import json

            from slipstream import endpoint

            from .texts import HERE, PROMPT

            @endpoint
            def paint():
                style = json.loads((HERE / "style.json").read_text())["style"]
                return f"{PROMPT} in {style}"
        """,
        "main.py": """
            from app.paint import paint

            if __name__ == "__main__":
                print("REMOTE", paint())
                print("LOCAL", paint.local())
        """,
    },
    # calendar.py shadows the standard library's calendar
    "stdlib_named": {
        "calendar.py": """
            def month():
                return "the project's calendar"
        """,
        "main.py": """
            from slipstream import endpoint

            import calendar

            @endpoint
            def which():
                return calendar.month()

            if __name__ == "__main__":
                print("REMOTE", which())
        """,
    },
}


def _bump(p: Path) -> None:
    # a save within the same mtime tick must still be seen as a change
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


class ProjectDir:
    """A project on disk, edited as an editor saves it, synced and called through the SDK's client."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, rel: str, text: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"))
        _bump(p)
        return p

    def edit(self, rel: str, old: str, new: str) -> Path:
        p = self.root / rel
        text = p.read_text()
        assert old in text, f"{old!r} is not in {rel}"
        p.write_text(text.replace(old, new))
        _bump(p)
        return p

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text()

    @property
    def key(self) -> str:
        from slipstream.sdk.config import project_key

        return project_key(self.root)

    def client(self, rt: Any):
        from slipstream.sdk.client import RuntimeClient

        return RuntimeClient(rt.url, rt.token, project=self.key)

    def sync(self, rt: Any):
        from slipstream.sdk.sync import sync_project

        client = self.client(rt)
        try:
            return sync_project(client, self.root)
        finally:
            client.close()

    def call(self, rt: Any, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        client = self.client(rt)
        try:
            out = client.call(endpoint, None, args, kwargs, timeout=60)
        finally:
            client.close()
        assert out.error is None, f"{endpoint} failed: {out.error.type}: {out.error.message}"
        return out.value


def make_project(base: Path, shape: str, name: str | None = None) -> ProjectDir:
    root = (base / (name or shape)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    proj = ProjectDir(root)
    for rel, text in SHAPES[shape].items():
        proj.write(rel, text)
    return proj


def sdk_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no runtime configured (the SDK starts an embedded one)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "SLIPSTREAM_RUNTIME_URL",
                "SLIPSTREAM_TOKEN",
                "SLIPSTREAM_PROJECT",
                "SLIPSTREAM_IN_RUNTIME",
            )
        )
    }
    env.pop("PYTHONPATH", None)
    env.update(extra)
    # this checkout's Slipstream, as if installed (a worktree sharing another checkout's venv
    # would otherwise run that checkout's code); the project's own folders are never on it
    own = os.pathsep.join([str(REPO / "runtime"), str(REPO / "daemon")])
    env["PYTHONPATH"] = own + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_sdk(
    root: Path, *argv: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `python <argv>` in the project's folder as a user would (a real process, embedded runtime)."""
    return subprocess.run(
        [sys.executable, *argv],
        cwd=root,
        env=env or sdk_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevServer:
    """`slipstream dev PATH --port N` as a subprocess; its output lines are read as they come."""

    def __init__(
        self, path: Path, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("slipstream")),
                "dev",
                str(path),
                "--port",
                str(self.port),
            ],
            cwd=cwd or path,
            env=env or sdk_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, *needles: str, timeout: float = 60) -> str:
        """The next output line containing every needle (lines before it are kept in .seen)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"`slipstream dev` printed no line with {needles}; it printed:\n"
                    + "\n".join(self.seen)
                )
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            if all(n in line for n in needles):
                return line

    def wait_listening(self, timeout: float = 30) -> None:
        """After "serving": until the HTTP port accepts connections (uvicorn binds just after)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise TimeoutError(
                        f"`slipstream dev` is not listening on {self.port}:\n"
                        + "\n".join(self.seen)
                    ) from None
                time.sleep(0.02)

    def call(self, endpoint: str, body: dict[str, Any] | None = None) -> Any:
        r = httpx.post(f"{self.url}/{endpoint}", json=body or {}, timeout=60, trust_env=False)
        assert r.status_code == 200, f"{r.status_code}: {r.text}"
        data = r.json()
        return data.get("result", data) if isinstance(data, dict) else data

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def lines_with(output: str, prefix: str) -> list[str]:
    return [line[len(prefix) :].strip() for line in output.splitlines() if line.startswith(prefix)]


__all__ = [
    "SHAPES",
    "ProjectDir",
    "make_project",
    "run_sdk",
    "sdk_env",
    "DevServer",
    "lines_with",
    "free_port",
]
