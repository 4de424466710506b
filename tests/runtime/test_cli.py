"""The `slipstream` command as a user types it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN")
    }
    env.update(extra)
    return env


def test_run_hello_on_the_embedded_runtime(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "slipstream", "run", str(REPO / "examples/hello/hello.py")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr
    assert "Hello, world!" in p.stdout
    assert (tmp_path / "gradient.png").exists()
    assert "remote call(s)" in p.stderr, "a spend summary at the end"


def test_run_reports_a_missing_script():
    p = subprocess.run(
        [sys.executable, "-m", "slipstream", "run", "nope.py"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "no such script" in p.stderr


def test_status_lists_endpoints_and_spend(runtime, project_factory):
    proj = project_factory(
        runtime,
        {
            "app.py": "from slipstream import endpoint\n\n@endpoint(gpu='H100')\ndef ping():\n    return 'pong'\n\n"
            "@endpoint(gpu='L4')\ndef idle():\n    return 1\n"
        },
    )
    assert proj.module("app").ping() == "pong"
    p = subprocess.run(
        [sys.executable, "-m", "slipstream", "status"],
        env=_env(SLIPSTREAM_RUNTIME_URL=runtime.url, SLIPSTREAM_TOKEN=runtime.token),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert "ping" in p.stdout and "H100" in p.stdout and "calls 1" in p.stdout
    idle = next(line for line in p.stdout.splitlines() if line.strip().startswith("idle "))
    assert "calls 0 errors 0  p50 -  $0.000000" in idle and "None" not in p.stdout, p.stdout
    assert "attached (sdk): workers stay warm" in p.stdout, "this test's SDK session holds it"


def test_status_without_a_runtime_says_how_to_configure_one(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "slipstream", "status"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "SLIPSTREAM_RUNTIME_URL" in p.stderr


def test_serve_prints_its_url_and_a_generated_token():
    env = {k: v for k, v in _env().items() if k != "SLIPSTREAM_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        assert first.startswith("Slipstream runtime http://127.0.0.1:") and "GPUs: none" in first
        assert second.startswith("token (generated): ") and len(second.split(": ")[1].strip()) >= 24
    finally:
        proc.terminate()
        proc.wait(20)


def test_plain_python_script_starts_an_embedded_runtime_by_itself(tmp_path):
    p = subprocess.run(
        [sys.executable, str(REPO / "examples/hello/hello.py")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr
    assert "Hello, world!" in p.stdout and (tmp_path / "gradient.png").exists()


def test_a_runtime_url_with_a_wrong_scheme_is_one_line_for_every_command(tmp_path):
    """A typo in SLIPSTREAM_RUNTIME_URL (or slipstream.toml's [runtime] url): each command says
    which setting and how to write it, in one line, exit code 2; no traceback."""
    (tmp_path / "app.py").write_text("print('ran')\n")
    for argv in (["run", "app.py"], ["status"], ["logs"], ["dev", ".", "--port", "0"]):
        p = subprocess.run(
            [sys.executable, "-m", "slipstream", *argv],
            cwd=tmp_path,
            env=_env(SLIPSTREAM_RUNTIME_URL="htp://gpu-box:8765"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 2, (argv, p.stderr)
        assert p.stderr.strip().splitlines() == [
            "slipstream: runtime URL 'htp://gpu-box:8765' (SLIPSTREAM_RUNTIME_URL): "
            "write http://host:port, https://host[:port] or ssh://[user@]host[:port]"
        ], (argv, p.stderr)
        assert "ran" not in p.stdout
    (tmp_path / "slipstream.toml").write_text('[runtime]\nurl = "gpu-box:8765"\n')
    p = subprocess.run(
        [sys.executable, "-m", "slipstream", "status"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2
    assert (
        "'gpu-box:8765' ([runtime] url in slipstream.toml)" in p.stderr
        and "Traceback" not in p.stderr
    ), p.stderr


def test_a_failing_script_under_run_shows_its_own_lines_not_slipstreams(tmp_path):
    """As `python app.py` shows it: the endpoint's remote traceback, then the user's line that
    called it; neither `slipstream run`'s frames (cli.py, runpy) nor the SDK's (endpoint.py,
    session.py) in between. Exit code 1, the spend line before the traceback."""
    (tmp_path / "app.py").write_text(
        "import sys\nfrom slipstream import endpoint\n\n@endpoint\ndef boom(x: int) -> int:\n    raise ValueError(f'bad x {x}')\n\n"
        "if __name__ == '__main__':\n    if sys.argv[1] == 'raise':\n        boom(3)\n    boom(1, 2)\n"
    )
    for arg, last, line in (
        ("raise", "(raised on the Slipstream runtime; remote traceback above)", 10),
        (
            "args",
            "TypeError: boom(x: int) -> int: takes 1 positional argument but 2 were given",
            11,
        ),
    ):
        p = subprocess.run(
            [sys.executable, "-m", "slipstream", "run", "app.py", arg],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert p.returncode == 1, p.stderr
        lines = p.stderr.strip().splitlines()
        assert lines[-1] == last, p.stderr
        assert f'  File "app.py", line {line}, in <module>' in lines, p.stderr
        for internal in ("cli.py", "runpy", "endpoint.py", "session.py"):
            assert internal not in p.stderr, p.stderr
        assert p.stderr.index("remote call(s)") < p.stderr.index("Traceback"), p.stderr
        if arg == "raise":
            assert "    raise ValueError(f'bad x {x}')\nValueError: bad x 3" in p.stderr, p.stderr


def test_serve_stopped_with_sigterm_shuts_down_and_removes_its_temporary_store(tmp_path):
    """`kill PID` (systemd, docker stop, a pod's shutdown) stops the runtime as Ctrl-C does: its
    workers stop and a --temp-store folder is removed, and it exits 0."""
    import json
    import signal
    import time

    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slipstream",
            "serve",
            "--port",
            "0",
            "--temp-store",
            "--ready-file",
            str(ready),
        ],
        env={**_env(), "SLIPSTREAM_TOKEN": "t" * 32},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        store = Path(json.loads(ready.read_text())["temp_store"])
        assert store.is_dir()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert not store.exists(), "the temporary store is removed at exit"
