"""SSH runtimes against a real OpenSSH server on loopback (tests/remote/sshhost.py): the host is
bootstrapped once per module (the package index unreachable from it, so the wheels go over ssh),
then re-attached, upgraded, cut mid-call, and a stranger's host key is refused."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.remote.sshhost import SSHD, SshHost, start_ssh_host

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(SSHD).exists(),
        reason="needs openssh-server (scripts/install-test-hosts installs it)",
    ),
]
PY = sys.executable


def slipstream(
    host: SshHost, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **host.env, **(env or {})}
    full.pop("SLIPSTREAM_RUNTIME_URL", None)
    return subprocess.run(
        [PY, "-m", "slipstream", *args], env=full, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory):
    h = start_ssh_host(tmp_path_factory.mktemp("ssh"))
    t0 = time.monotonic()
    r = slipstream(h, "connect", "testhost")
    h.first_connect = r  # type: ignore[attr-defined]
    h.first_connect_s = time.monotonic() - t0  # type: ignore[attr-defined]
    try:
        yield h
    finally:
        slipstream(h, "disconnect", "testhost", "--stop", timeout=60)
        h.stop()


def test_first_connect_bootstraps_the_host_without_its_package_index(host: SshHost) -> None:
    r = host.first_connect  # type: ignore[attr-defined]
    assert r.returncode == 0, r.stderr
    from slipstream import __version__

    assert "cannot reach the package index; sending the dependencies over ssh" in r.stderr
    assert re.search(r"sent \d+ file\(s\), [\d.]+ MB, to testhost", r.stderr)
    assert "(100%)" in r.stderr  # progress while sending
    assert f"Slipstream {__version__}" in r.stdout and "GPUs: none" in r.stdout
    assert re.search(r"round trip: [\d.]+ ms", r.stdout)
    venv_py = host.remote_home / ".slipstream" / "venv" / "bin" / "python"
    assert venv_py.exists()
    # the runtime listens on the host's loopback only
    assert host.ready()["url"].startswith("http://127.0.0.1:")
    print(f"first connect (bootstrap, wheels sent): {host.first_connect_s:.1f} s")  # type: ignore[attr-defined]


PROJECT = """
import os, sys, time
from pathlib import Path
from slipstream import endpoint

@endpoint(gpu=None, timeout=60)
def where(x: int) -> str:
    return f"{os.environ['HOME']}|{x * 2}"

@endpoint(gpu=None, timeout=60)
def slow(tag: str) -> str:
    ledger = Path(os.environ["HOME"]) / f"ledger-{tag}"
    with ledger.open("a") as f:
        f.write("run\\n")
    (Path(os.environ["HOME"]) / f"started-{tag}").touch()
    time.sleep(3)
    return "done-" + tag

if __name__ == "__main__":
    print("RESULT", globals()[sys.argv[1]](*(int(a) if a.isdigit() else a for a in sys.argv[2:])))
"""


def run_script(
    host: SshHost, tmp_path: Path, *args: str, via: str = "env"
) -> subprocess.Popen[str]:
    (tmp_path / "app.py").write_text(textwrap.dedent(PROJECT))
    env = {**os.environ, **host.env, "SLIPSTREAM_RUNTIME_URL": "ssh://testhost"}
    if via == "toml":  # the project's slipstream.toml names the runtime instead
        (tmp_path / "slipstream.toml").write_text('[runtime]\nurl = "ssh://testhost"\n')
        del env["SLIPSTREAM_RUNTIME_URL"]
    env.pop("SLIPSTREAM_TOKEN", None)
    return subprocess.Popen(
        [PY, "app.py", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("via", ["env", "toml"])
def test_an_ssh_url_runs_calls_on_the_host(host: SshHost, tmp_path: Path, via: str) -> None:
    p = run_script(host, tmp_path, "where", "21", via=via)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert f"RESULT {host.remote_home}|42" in out  # ran in the host's runtime (its HOME), not here


def test_a_later_connect_reattaches_also_from_another_machine(host: SshHost) -> None:
    pid = host.ready()["pid"]
    r = slipstream(host, "connect", "testhost")
    assert r.returncode == 0, r.stderr
    assert f"(pid {pid})" in r.stdout and "installing" not in r.stderr
    # another machine: no control socket, no forward state of its own
    other = {"SLIPSTREAM_SSH_DIR": str(host.root / "ctl-other")}
    r = slipstream(host, "connect", "testhost", env=other)
    try:
        assert r.returncode == 0, r.stderr
        assert f"(pid {pid})" in r.stdout and "installing" not in r.stderr
        assert host.ready()["pid"] == pid  # one runtime, not a second
    finally:
        slipstream(host, "disconnect", "testhost", env=other)


def test_the_token_is_never_on_a_command_line_or_in_a_log(host: SshHost, tmp_path: Path) -> None:
    token = host.token()
    assert len(token) >= 32
    assert oct((host.runtime_dir / "token").stat().st_mode & 0o777) == "0o600"
    p = run_script(host, tmp_path, "where", "1")
    try:
        seen = []
        for proc in Path("/proc").iterdir():
            try:
                seen.append((proc / "cmdline").read_bytes())
            except OSError:
                continue
        assert seen and not any(token.encode() in c for c in seen)
    finally:
        p.communicate(timeout=120)
    assert token not in (host.runtime_dir / "serve.log").read_text()
    for f in Path(host.env["SLIPSTREAM_SSH_DIR"]).glob("*.json"):
        assert token not in f.read_text()


def test_an_unknown_host_key_is_refused_with_a_clear_message(host: SshHost) -> None:
    r = slipstream(host, "connect", "strangerhost", timeout=60)
    assert r.returncode == 1
    assert "host key of strangerhost is not in your known_hosts" in r.stderr
    assert "ssh-keyscan" in r.stderr or "answer yes" in r.stderr


def test_the_tunnel_killed_mid_call_is_reestablished_and_the_call_answers(
    host: SshHost, tmp_path: Path
) -> None:
    from slipstream.sdk.sshlink import SshLink, parse_ssh_url

    os.environ.update(host.env)  # this process reads the same control folder
    link = SshLink(parse_ssh_url("testhost"))
    check = subprocess.run(link._ssh("-O", "check", "testhost"), capture_output=True, text=True)
    master = int(re.search(r"pid=(\d+)", check.stderr).group(1))
    started = host.remote_home / "started-cut"
    p = run_script(host, tmp_path, "slow", "cut")
    deadline = time.monotonic() + 120
    while not started.exists():  # the call is running on the host
        assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.stderr else ""
        time.sleep(0.05)
    os.kill(master, 9)  # the ssh connection drops: its forwards go with it
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "RESULT done-cut" in out
    # as after a runtime restart: run once more at most (at-least-once)
    assert 1 <= (host.remote_home / "ledger-cut").read_text().count("run") <= 2
    check = subprocess.run(link._ssh("-O", "check", "testhost"), capture_output=True, text=True)
    assert check.returncode == 0 and f"pid={master})" not in check.stderr  # a new master connection


def test_another_version_is_refused_then_replaced_with_upgrade(host: SshHost) -> None:
    from slipstream import __version__

    # the host runs an older Slipstream: its installed version module says so, and its runtime is restarted
    init = next(
        (host.remote_home / ".slipstream" / "venv").glob(
            "lib/python3*/site-packages/slipstream/protocol/version.py"
        )
    )
    init.write_text(
        init.read_text().replace(f'__version__ = "{__version__}"', '__version__ = "0.0.9"')
    )
    assert slipstream(host, "disconnect", "testhost", "--stop").returncode == 0
    from slipstream.sdk.sshlink import SshLink, parse_ssh_url

    os.environ.update(host.env)
    link = SshLink(parse_ssh_url("testhost"))
    link.start_master()
    try:
        out = link.helper(link.find_python(), "start", "")
        assert out["running"]["version"] == "0.0.9"
    finally:
        link.close_master()
    old_pid = host.ready()["pid"]
    r = slipstream(host, "connect", "testhost")
    assert r.returncode == 1
    assert (
        f"testhost runs Slipstream 0.0.9, this machine has {__version__}: connect with --upgrade"
        in r.stderr
    )
    assert host.ready()["pid"] == old_pid  # left alone
    r = slipstream(host, "connect", "testhost", "--upgrade")
    assert r.returncode == 0, r.stderr
    assert f"Slipstream {__version__}" in r.stdout and host.ready()["pid"] != old_pid
    assert f'__version__ = "{__version__}"' in init.read_text()
