"""SSH runtimes: ``ssh://[user@]host[:port]`` as a runtime address.

Everything goes through the system OpenSSH client, so ~/.ssh/config (Host aliases, ProxyJump,
IdentityFile), the agent and known_hosts work as the user has them. One multiplexed master
connection per host (ControlMaster, its socket in ~/.slipstream/ssh, mode 0700) carries every
command and two local port forwards: 127.0.0.1:<local> -> the host's loopback HTTP port and
data-channel port. No port is opened on the host.

On the host, everything lives under ~/.slipstream: venv/ (Slipstream, the same version as
here), wheels/ (what was sent), runtime/ (token 0600, ready.json, serve.log), store/. The token
is written by `slipstream serve --token-file` on the host and read back over SSH's stdout: it
is never on a command line and never in a log.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..protocol import envvars
from ..protocol.errors import RuntimeUnavailable, SlipstreamError

__all__ = [
    "SshTarget",
    "SshLink",
    "SshError",
    "parse_ssh_url",
    "is_ssh_url",
    "link_for",
    "STATE_DIR_ENV",
]

STATE_DIR_ENV = (
    envvars.SSH_DIR
)  # where control sockets and forward state live (default ~/.slipstream/ssh)
CONFIG_ENV = (
    envvars.SSH_CONFIG
)  # an ssh config file passed as -F (default: ssh's own, ~/.ssh/config)
REMOTE_HOME = "$HOME/.slipstream"
MIN_PYTHON = (3, 11)  # the package's requires-python


class SshError(SlipstreamError):
    """Setting up or using the SSH link to a runtime host failed; the message says what to do."""


@dataclass(frozen=True)
class SshTarget:
    host: str
    user: str | None = None
    port: int | None = None

    @property
    def url(self) -> str:
        return (
            "ssh://"
            + (f"{self.user}@" if self.user else "")
            + self.host
            + (f":{self.port}" if self.port else "")
        )

    @property
    def key(self) -> str:
        return hashlib.sha256(self.url.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        return self.url[len("ssh://") :]


def is_ssh_url(url: str | None) -> bool:
    return bool(url) and str(url).lower().startswith("ssh://")


def parse_ssh_url(url: str) -> SshTarget:
    """``ssh://[user@]host[:port]`` (or a bare ``[user@]host[:port]`` / ssh config alias)."""
    raw = url if is_ssh_url(url) else "ssh://" + url
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise SshError(
            f"{url!r} is not an SSH address ({exc}); write ssh://[user@]host[:port]"
        ) from None
    host = parts.hostname
    if not host or parts.path not in ("", "/") or parts.query or parts.password:
        raise SshError(
            f"{url!r} is not an SSH address; write ssh://[user@]host[:port] (a Host alias from ~/.ssh/config works)"
        )
    # keep the alias's case: ssh config Host patterns are matched as written
    netloc = parts.netloc.rsplit("@", 1)[-1]
    name = netloc.rsplit(":", 1)[0] if port else netloc
    return SshTarget(host=name.strip("[]"), user=parts.username, port=port)


def _state_dir() -> Path:
    d = Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".slipstream" / "ssh")
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)  # the control socket gives anyone who can reach it our SSH session
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _say(msg: str) -> None:
    print(f"slipstream: {msg}", file=sys.stderr, flush=True)


# The helper runs alone on the host, without Slipstream: the variable names it uses come along.
_HELPER_PRELUDE = (
    f"class envvars:\n    TOKEN = {envvars.TOKEN!r}\n    RUNTIME_URL = {envvars.RUNTIME_URL!r}\n"
)

# The program run on the host by its own Python (stdlib only, read from stdin: `python3 - OP`).
# It prints one JSON line. The token it prints travels back over SSH's stdout only.
_HOST_HELPER = r"""
import json, os, signal, subprocess, sys, time
home = os.path.join(os.path.expanduser("~"), ".slipstream")
rt = os.path.join(home, "runtime")
venv_py = os.path.join(home, "venv", "bin", "python")
ready = os.path.join(rt, "ready.json")
tokf = os.path.join(rt, "token")
op = sys.argv[1]

def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True

def running():
    try:
        info = json.load(open(ready))
    except (OSError, ValueError):
        return None
    if not alive(int(info.get("pid", 0))):
        return None
    try:
        info["token"] = open(tokf).read().strip()
    except OSError:
        return None
    return info

def installed():
    if not os.path.exists(venv_py):
        return None
    r = subprocess.run([venv_py, "-P", "-c", "import slipstream; print(slipstream.__version__)"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None

def stop():
    info = running()
    if info:
        pid = int(info["pid"])
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
        end = time.time() + 15
        while alive(pid) and time.time() < end:
            time.sleep(0.05)
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
    for f in (ready,):
        try:
            os.remove(f)
        except OSError:
            pass
    return bool(info)

if op == "status":
    import platform
    print(json.dumps({"running": running(), "installed": installed(), "python": sys.executable,
                      "version": list(sys.version_info[:2]), "machine": platform.machine(), "system": sys.platform}))
elif op == "stop":
    print(json.dumps({"stopped": stop()}))
elif op == "start":
    idle = sys.argv[2] if len(sys.argv) > 2 else ""
    os.makedirs(rt, mode=0o700, exist_ok=True)
    os.chmod(rt, 0o700)
    idle_file = os.path.join(rt, "idle_stop")  # a runtime started again keeps the last --idle-stop
    if idle:
        open(idle_file, "w").write(idle)
    elif os.path.exists(idle_file):
        idle = open(idle_file).read().strip()
    try:
        os.remove(ready)
    except OSError:
        pass
    if not os.path.exists(tokf):
        import secrets
        fd = os.open(tokf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, secrets.token_urlsafe(32).encode())
        os.close(fd)
    cmd = [venv_py, "-P", "-m", "slipstream", "serve", "--host", "127.0.0.1", "--port", "0", "--token-file", tokf,
           "--ready-file", ready, "--store", os.path.join(home, "store")] + (["--idle-stop", idle] if idle else [])
    log = open(os.path.join(rt, "serve.log"), "ab")
    env = dict(os.environ)
    env.pop(envvars.TOKEN, None)
    env.pop(envvars.RUNTIME_URL, None)
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd=home, env=env)
    end = time.time() + 120
    while not os.path.exists(ready):
        if p.poll() is not None:
            tail = open(os.path.join(rt, "serve.log"), "rb").read()[-2000:].decode(errors="replace")
            print(json.dumps({"error": "the runtime exited during start (code %s); serve.log ends with:\n%s" % (p.returncode, tail)}))
            sys.exit(0)
        if time.time() > end:
            print(json.dumps({"error": "the runtime did not start within 120s; see ~/.slipstream/runtime/serve.log"}))
            sys.exit(0)
        time.sleep(0.05)
    print(json.dumps({"running": running()}))
"""


class SshLink:
    """The link to one host: its master connection, its forwards, its runtime."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        d = _state_dir()
        self.control = d / f"{target.key}.sock"
        self.state_file = d / f"{target.key}.json"
        self.token = ""
        self.remote: dict[
            str, Any
        ] = {}  # the host runtime's ready.json (url, data_port, pid, runtime_id)
        self.http_port = 0
        self.data_port = 0
        self.remote_http = 0
        self.remote_data = 0
        self._lock = threading.RLock()

    # --- ssh plumbing -----------------------------------------------------------------
    def _ssh(self, *extra: str) -> list[str]:
        cmd = ["ssh"]
        if os.environ.get(CONFIG_ENV):
            cmd += ["-F", os.environ[CONFIG_ENV]]
        cmd += [
            "-o",
            "BatchMode=yes",
            "-o",
            f"ControlPath={self.control}",
            "-o",
            "ServerAliveInterval=10",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "ConnectTimeout=15",
        ]
        if self.target.port:
            cmd += ["-p", str(self.target.port)]
        if self.target.user:
            cmd += ["-l", self.target.user]
        return [*cmd, *extra]

    def master_alive(self) -> bool:
        r = subprocess.run(
            self._ssh("-O", "check", self.target.host),
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
        return r.returncode == 0

    def start_master(self) -> None:
        """One multiplexed connection that outlives this process (ControlPersist); `slipstream
        disconnect` ends it. Its stderr goes to a file: a pipe would be held by the background
        master and never reach end-of-file."""
        self.control.unlink(missing_ok=True)  # a dead master's socket: ssh would not bind over it
        with tempfile.TemporaryFile() as err:
            r = subprocess.run(
                self._ssh(
                    "-M",
                    "-N",
                    "-f",
                    "-o",
                    "ControlMaster=yes",
                    "-o",
                    "ControlPersist=yes",
                    "-o",
                    "ExitOnForwardFailure=yes",
                    self.target.host,
                ),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            err.seek(0)
            msg = err.read().decode(errors="replace").strip()
        if r.returncode != 0:
            raise SshError(self._explain(msg))

    def _explain(self, msg: str) -> str:
        h = self.target.label
        if (
            "Host key verification failed" in msg
            or "host key" in msg.lower()
            and "known" in msg.lower()
        ):
            return (
                f"refused: the host key of {h} is not in your known_hosts (or does not match it), and ssh is "
                f"not allowed to ask. Check the key and add it, e.g. run `ssh {h}` once and answer yes, "
                f"or `ssh-keyscan` it into ~/.ssh/known_hosts. ssh said: {msg}"
            )
        if "Permission denied" in msg:
            return (
                f"ssh to {h} was refused (no key it accepts; slipstream never asks for a password): "
                f"add your key with ssh-copy-id or set IdentityFile in ~/.ssh/config. ssh said: {msg}"
            )
        return f"cannot reach {h} over ssh: {msg or 'ssh failed'}; check that `ssh {h} true` works without a prompt"

    def run(
        self, command: str, input: bytes | None = None, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a shell command on the host over the master connection."""
        r = subprocess.run(
            self._ssh("-o", "ControlMaster=no", self.target.host, "--", command),
            input=input if input is not None else b"",
            capture_output=True,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            if r.returncode == 255:
                raise SshError(self._explain(r.stderr.decode(errors="replace").strip()))
            raise SshError(
                f"on {self.target.label}: `{command[:80]}` failed ({r.returncode}): {r.stderr.decode(errors='replace').strip()[-1500:]}"
            )
        return r

    def helper(self, python: str, *args: str) -> dict[str, Any]:
        r = self.run(
            " ".join([shlex.quote(python), "-", *map(shlex.quote, args)]),
            input=(_HELPER_PRELUDE + _HOST_HELPER).encode(),
        )
        try:
            return json.loads(r.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise SshError(
                f"unexpected answer from {self.target.label}: {r.stdout[-500:]!r} {r.stderr[-500:]!r}"
            ) from None

    def find_python(self) -> str:
        probe = (
            'for p in "$HOME/.slipstream/venv/bin/python" python3.13 python3.12 python3.11 python3.10 python3 python; do '
            'q=$(command -v "$p" 2>/dev/null) && "$q" -c "import sys; print(sys.version_info[0], sys.version_info[1], sys.executable)" 2>/dev/null; '
            "done; true"
        )
        found = []
        for line in self.run(probe).stdout.decode().splitlines():
            try:
                major, minor, exe = line.split(" ", 2)
                found.append(((int(major), int(minor)), exe))
            except ValueError:
                continue
        ok = [exe for v, exe in found if v >= MIN_PYTHON and "/.slipstream/venv/" not in exe]
        if not ok:
            have = ", ".join(f"{exe} ({v[0]}.{v[1]})" for v, exe in found) or "none"
            raise SshError(
                f"{self.target.label} has no Python >= {MIN_PYTHON[0]}.{MIN_PYTHON[1]} on its PATH (found: {have}); "
                "install one (e.g. apt-get install python3 python3-venv) and connect again"
            )
        return ok[0]

    # --- forwards ---------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _forward(self, local: int, remote: int) -> bool:
        r = subprocess.run(
            self._ssh(
                "-O", "forward", "-L", f"127.0.0.1:{local}:127.0.0.1:{remote}", self.target.host
            ),
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
        return r.returncode == 0

    def _health_ok(self) -> bool:
        import httpx

        try:
            h = httpx.get(
                f"http://127.0.0.1:{self.http_port}/health", timeout=5.0, trust_env=False
            ).json()
        except (httpx.HTTPError, ValueError):
            return False
        return h.get("runtime_id") == self.remote.get("runtime_id")

    def setup_forwards(self, fresh_master: bool) -> None:
        rh, rd = int(self.remote["http_port"]), int(self.remote.get("data_port") or 0)
        st = self._load_state()
        if not fresh_master and st.get("remote_http") == rh and st.get("remote_data") == rd:
            self.http_port, self.data_port = int(st["http"]), int(st.get("data") or 0)
            if self._health_ok():
                self.remote_http, self.remote_data = rh, rd
                return
        if not fresh_master:  # forwards to a runtime that is gone: free their local ports first
            for lk, rk in (("http", "remote_http"), ("data", "remote_data")):
                if st.get(lk) and st.get(rk):
                    subprocess.run(
                        self._ssh(
                            "-O",
                            "cancel",
                            "-L",
                            f"127.0.0.1:{st[lk]}:127.0.0.1:{st[rk]}",
                            self.target.host,
                        ),
                        capture_output=True,
                        stdin=subprocess.DEVNULL,
                    )
        wanted = [(int(st.get("http") or 0), rh)] + ([(int(st.get("data") or 0), rd)] if rd else [])
        got = []
        for local, remote in wanted:
            # the same local ports as before when free: a client holding the URL keeps working
            for attempt in range(5):
                port = local if (attempt == 0 and local) else _free_port()
                if self._forward(port, remote):
                    got.append(port)
                    break
            else:
                raise SshError(
                    f"could not forward a local port to {self.target.label}:{remote} over ssh"
                )
        self.http_port, self.data_port = got[0], (got[1] if rd else 0)
        self.remote_http, self.remote_data = rh, rd
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "http": self.http_port,
                    "data": self.data_port,
                    "remote_http": rh,
                    "remote_data": rd,
                }
            )
        )
        os.replace(tmp, self.state_file)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # --- install and start ------------------------------------------------------------
    def connect(
        self, *, upgrade: bool = False, idle_stop: str | None = None, quiet: bool = False
    ) -> dict[str, Any]:
        """Make sure the host runs our version of the runtime and the forwards reach it; return
        the host's status. Bootstraps the host on the first connect."""
        with self._locked():
            return self._connect(upgrade=upgrade, idle_stop=idle_stop, quiet=quiet)

    def _locked(self) -> Any:
        """One process and thread at a time sets up this host's master and forwards."""
        import contextlib
        import fcntl

        @contextlib.contextmanager
        def held() -> Any:
            with self._lock, open(self.state_file.with_suffix(".lock"), "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)

        return held()

    def _connect(self, *, upgrade: bool, idle_stop: str | None, quiet: bool) -> dict[str, Any]:
        from ..protocol.version import __version__

        fresh = False
        if not self.master_alive():
            self.start_master()
            fresh = True
        python = self.find_python()
        st = self.helper(python, "status")
        running = st.get("running")
        if running and running.get("version") != __version__:
            if not upgrade:
                raise SshError(
                    f"{self.target.label} runs Slipstream {running.get('version')}, this machine has {__version__}: "
                    f"connect with --upgrade to replace it (its calls in flight stop), or install {running.get('version')} here"
                )
            if not quiet:
                _say(
                    f"stopping Slipstream {running.get('version')} on {self.target.label} (--upgrade)"
                )
            self.helper(python, "stop")
            running = None
        if not running:
            if st.get("installed") != __version__ or upgrade:
                self.install(python, st, quiet=quiet)
            out = self.helper(python, "start", idle_stop or "")
            if out.get("error"):
                raise SshError(f"on {self.target.label}: {out['error']}")
            running = out["running"]
        self.token = running.pop("token")
        self.remote = running
        self.remote["http_port"] = int(running["url"].rsplit(":", 1)[1])
        self.setup_forwards(fresh)
        return st

    def install(self, python: str, st: dict[str, Any], *, quiet: bool = False) -> None:
        from ..protocol.version import __version__

        say = (lambda m: None) if quiet else _say
        home = REMOTE_HOME
        say(
            f"installing Slipstream {__version__} on {self.target.label} (into ~/.slipstream/venv, with {python})"
        )
        self.run(
            f"mkdir -p {home}/wheels && chmod 700 {home} && "
            f"( [ -x {home}/venv/bin/python ] || {shlex.quote(python)} -m venv {home}/venv )"
        )
        with tempfile.TemporaryDirectory(prefix="slipstream-wheels-") as tmp:
            own = build_own_wheel(Path(tmp))
            self.send([own], f"{home}/wheels", say)
            pip = f"{home}/venv/bin/python -m pip install --disable-pip-version-check -q --find-links {home}/wheels"
            self.run(
                f"{home}/venv/bin/python -m pip uninstall -y -q slipstream >/dev/null 2>&1; true"
            )
            # the host runs `slipstream serve`: the runtime server's extra, not only the SDK
            want = shlex.quote(f"slipstream[server]=={__version__}")
            r = self.run(f"{pip} --timeout 10 --retries 0 {want}", check=False)
            if r.returncode == 0:
                say(f"installed on {self.target.label}")
                return
            say(
                f"{self.target.label} cannot reach the package index; sending the dependencies over ssh"
            )
            deps = dependency_wheels(
                Path(tmp),
                tuple(st.get("version") or ()),
                st.get("machine", ""),
                st.get("system", ""),
            )
            self.send(deps, f"{home}/wheels", say)
            self.run(f"{pip} --no-index {want}")
            say(f"installed on {self.target.label} from the wheels sent")

    def send(self, files: list[Path], dest: str, say: Any) -> None:
        """Send files over the master connection as one tar stream, with progress."""
        total = sum(f.stat().st_size for f in files)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for f in files:
                tar.add(f, arcname=f.name)
        data = buf.getvalue()
        p = subprocess.Popen(
            self._ssh(
                "-o",
                "ControlMaster=no",
                self.target.host,
                "--",
                f"mkdir -p {dest} && tar -x -C {dest}",
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert p.stdin is not None
        step, sent, shown = 1 << 20, 0, -1
        try:
            for i in range(0, len(data), step):
                p.stdin.write(data[i : i + step])
                sent = min(len(data), i + step)
                pct = sent * 100 // max(1, len(data))
                if pct // 10 != shown and len(data) > 4 * step:
                    shown = pct // 10
                    say(f"  sent {sent / 1e6:.1f} / {len(data) / 1e6:.1f} MB ({pct}%)")
            p.stdin.close()
        except BrokenPipeError:
            pass
        err = p.stderr.read().decode(errors="replace") if p.stderr else ""
        if p.wait() != 0:
            raise SshError(
                f"sending {len(files)} file(s) to {self.target.label} failed: {err.strip()}"
            )
        say(f"sent {len(files)} file(s), {total / 1e6:.1f} MB, to {self.target.label}")

    def stop_runtime(self) -> bool:
        return bool(self.helper(self.find_python(), "stop").get("stopped"))

    def close_master(self) -> None:
        subprocess.run(
            self._ssh("-O", "exit", self.target.host), capture_output=True, stdin=subprocess.DEVNULL
        )
        self.state_file.unlink(missing_ok=True)

    def repair(self) -> bool:
        """After a transport error: bring the master connection, the forwards (on the same local
        ports, so clients keep their URL) and the runtime back. False when the host cannot be
        reached now (the caller retries, as after a runtime restart)."""
        try:
            with self._locked():
                if self.http_port and self.master_alive() and self._health_ok():
                    return True
                self._connect(upgrade=False, idle_stop=None, quiet=True)
                return True
        except (SshError, OSError, subprocess.SubprocessError, KeyError, ValueError):
            return False


# --- what is sent -------------------------------------------------------------------------
def build_own_wheel(dest: Path) -> Path:
    """A wheel of this Slipstream: built from the source checkout it runs from (copied to a
    temp folder, so the checkout is not written), else repacked from the installed files."""
    import importlib.metadata as md

    pkg = Path(__file__).resolve().parent.parent  # the slipstream package (this is slipstream/sdk/)
    root = pkg.parent.parent
    if (root / "pyproject.toml").is_file() and 'name = "slipstream"' in (
        root / "pyproject.toml"
    ).read_text():
        import shutil

        src = dest / "src"
        src.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        for name in ("runtime", "daemon"):
            if (root / name).is_dir():
                shutil.copytree(root / name, src / name, ignore=ignore)
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(dest),
                str(src),
            ],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise SshError(
                f"could not build a wheel of the local Slipstream: {r.stderr.strip()[-1500:]}"
            )
        return next(dest.glob("slipstream-*.whl"))
    return repack(md.distribution("slipstream"), dest)


def repack(dist: Any, dest: Path) -> Path:
    """A wheel made from an installed distribution's files (its RECORD), with its own tag."""
    info = dist.read_text("WHEEL") or ""
    tags = [ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("Tag:")]
    if not tags:
        raise SshError(f"{dist.metadata['Name']} was not installed from a wheel; cannot send it")
    tag = tags[0] if len(tags) == 1 else _compress_tags(tags)
    name = dist.metadata["Name"].replace("-", "_").replace(".", "_")
    out = dest / f"{name}-{dist.version}-{tag}.whl"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for f in dist.files or []:
            s = str(f)
            if (
                s.startswith("..")
                or "__pycache__" in s
                or s.endswith(".pyc")
                or s.endswith("direct_url.json")
            ):
                continue
            p = Path(dist.locate_file(f))
            if p.is_file():
                z.write(p, s)
    return out


def _compress_tags(tags: list[str]) -> str:
    parts = [t.split("-") for t in tags]
    return "-".join(".".join(dict.fromkeys(p[i] for p in parts)) for i in range(3))


def dependency_wheels(
    dest: Path, host_version: tuple[int, ...], machine: str, system: str
) -> list[Path]:
    """Wheels of Slipstream's dependencies for the host: repacked from this environment when
    the host has the same Python and platform, else downloaded for the host's."""
    import importlib.metadata as md
    import platform

    names = _closure("slipstream", {"server"})
    same = (
        tuple(host_version) == sys.version_info[:2]
        and machine == platform.machine()
        and system == sys.platform
    )
    if same:
        out = []
        for n in names:
            try:
                out.append(repack(md.distribution(n), dest))
            except SshError:
                break
        else:
            return out
    pins = [f"{n}=={md.version(n)}" for n in names]
    plat = f"manylinux2014_{machine}" if system == "linux" else None
    cmd = (
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--only-binary=:all:",
            "--no-deps",
            "-d",
            str(dest / "deps"),
            "--python-version",
            ".".join(map(str, host_version)),
        ]
        + (["--platform", plat] if plat else [])
        + pins
    )
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SshError(
            f"could not fetch the dependencies for the host's Python {'.'.join(map(str, host_version))} ({machine}): "
            f"{r.stderr.strip()[-1000:]}; give the host access to the package index, or use Python "
            f"{sys.version_info[0]}.{sys.version_info[1]} there"
        )
    return sorted((dest / "deps").glob("*.whl"))


def _closure(top: str, extras: set[str] | None = None) -> list[str]:
    """The installed distributions `top` with `extras` needs here (its requirements, markers
    evaluated)."""
    import importlib.metadata as md

    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors it
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef, assignment]

    seen: dict[str, None] = {}
    done: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, set[str]]] = [(top, set(extras or ()))]
    while todo:
        name, extras = todo.pop()
        if (name.lower(), frozenset(extras)) in done:
            continue
        done.add((name.lower(), frozenset(extras)))
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        for line in dist.requires or []:
            req = Requirement(line)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker and not any(req.marker.evaluate(e) for e in envs):
                continue
            key = req.name.lower().replace("_", "-")
            if key not in seen:
                seen[key] = None
                todo.append((req.name, set(req.extras)))
            elif req.extras:
                todo.append((req.name, set(req.extras)))
    return [n for n in seen if n != top]


_links: dict[str, SshLink] = {}


def link_for(url: str, *, quiet: bool = False) -> SshLink:
    """The process's link to an ssh:// runtime, connected (bootstrapping the host on first use;
    a runtime of another version there is refused: `slipstream connect --upgrade` replaces it)."""
    target = parse_ssh_url(url)
    link = _links.get(target.url)
    if link is None:
        link = SshLink(target)
        try:
            link.connect(quiet=quiet)
        except SshError as exc:
            raise RuntimeUnavailable(str(exc)) from None
        _links[target.url] = link
    return link
