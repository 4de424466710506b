"""A real OpenSSH server on a free loopback port, standing in for a GPU machine.

It runs as `/usr/sbin/sshd -D -e -f <config>` with a throwaway host key and user key. The tests
run as root here, so the "remote user" is root with its own home folder: sshd's `SetEnv HOME=...`
(applied after sshd's own HOME) points every session at <tmp>/remote-home, where the host's
~/.slipstream (venv, runtime, token) lands. `SetEnv PIP_INDEX_URL=http://127.0.0.1:9/simple`
makes the package index unreachable from the "host", so the bootstrap must send the wheels over
ssh. The client side gets its own ssh config (SLIPSTREAM_SSH_CONFIG, passed to ssh as -F) with two
aliases: `testhost` (its key in a known_hosts file) and `strangerhost` (an empty known_hosts)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SshHost:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    remote_home: Path
    env: dict[str, str]  # the client side's environment (ssh config, control folder)

    @property
    def runtime_dir(self) -> Path:
        return self.remote_home / ".slipstream" / "runtime"

    def ready(self) -> dict:
        return json.loads((self.runtime_dir / "ready.json").read_text())

    def token(self) -> str:
        return (self.runtime_dir / "token").read_text().strip()

    def kill_runtime(self) -> None:
        try:
            pid = self.ready()["pid"]
            os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass

    def stop(self) -> None:
        for ctl in Path(self.env["SLIPSTREAM_SSH_DIR"]).parent.glob("ctl*/*.sock"):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={ctl}", "-O", "exit", "x"], capture_output=True
            )
        self.kill_runtime()
        # any ssh client of this fixture still running (a master a failed test left behind)
        mark = str(self.root).encode()
        for proc in Path("/proc").iterdir():
            try:
                cmd = (proc / "cmdline").read_bytes()
                if cmd.startswith(b"ssh\0") and mark in cmd:
                    os.kill(int(proc.name), signal.SIGTERM)
            except (OSError, ValueError):
                continue
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def start_ssh_host(tmp: Path, host_env: dict[str, str] | None = None) -> SshHost:
    """host_env: more variables every session on the host sees (sshd's SetEnv), e.g.
    SLIPSTREAM_FAKE_GPUS for a runtime there that reports a GPU (the editor's e2e)."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "user_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(tmp / name)],
            check=True,
        )
    auth = tmp / "authorized_keys"
    auth.write_text((tmp / "user_key.pub").read_text())
    auth.chmod(0o600)
    remote_home = tmp / "remote-home"
    remote_home.mkdir()
    port = _free_port()
    cfg = tmp / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host_key'}\nAuthorizedKeysFile {auth}\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile none\nLogLevel ERROR\n"
        "AllowTcpForwarding yes\nMaxSessions 64\nMaxStartups 64\n"
        f"SetEnv HOME={remote_home} PIP_INDEX_URL=http://127.0.0.1:9/simple PIP_DISABLE_PIP_VERSION_CHECK=1"
        + "".join(f" {k}={v}" for k, v in (host_env or {}).items())
        + "\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "sshd.log").open("wb"),
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while True:  # until sshd accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"sshd did not start: {(tmp / 'sshd.log').read_text()}"
                ) from None
            time.sleep(0.05)
    pub = (tmp / "host_key.pub").read_text().split()
    (tmp / "known_hosts").write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    (tmp / "empty_known_hosts").write_text("")
    client_home = tmp / "client-home"
    (client_home / ".ssh").mkdir(parents=True)
    common = (
        f"  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {tmp / 'user_key'}\n"
        "  IdentitiesOnly yes\n  IdentityAgent none\n"
    )
    ssh_cfg = client_home / ".ssh" / "config"
    ssh_cfg.write_text(
        f"Host testhost\n{common}  UserKnownHostsFile {tmp / 'known_hosts'}\n  StrictHostKeyChecking yes\n\n"
        f"Host strangerhost\n{common}  UserKnownHostsFile {tmp / 'empty_known_hosts'}\n"
    )
    env = {
        "HOME": str(client_home),
        "SLIPSTREAM_SSH_CONFIG": str(ssh_cfg),
        "SLIPSTREAM_SSH_DIR": str(tmp / "ctl"),
    }
    return SshHost(tmp, port, proc, remote_home, env)
