"""What accelerators this machine has (nvidia-smi first, torch if already imported)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass

from ..protocol import envvars

__all__ = ["Device", "inventory", "matches"]


@dataclass(frozen=True)
class Device:
    index: int
    name: str  # as the driver reports it, e.g. "NVIDIA H100 80GB HBM3"
    memory_gb: float
    canonical: str | None  # catalog name, e.g. "H100"

    def to_dict(self) -> dict:
        return asdict(self)


def inventory() -> list[Device]:
    fake = os.environ.get(envvars.FAKE_GPUS)
    if fake:
        return _fake(fake)
    devices = _from_nvidia_smi()
    if not devices and "torch" in sys.modules:
        devices = _from_torch()
    return devices


def _canonical(name: str) -> str | None:
    from ..spec.catalog import catalog

    cat = catalog()
    hit = cat.lookup(name)
    if hit:
        return hit.name
    short = name.replace("NVIDIA", "").strip()
    for token in (short, short.split(" ")[0], " ".join(short.split(" ")[:2])):
        hit = cat.lookup(token)
        if hit:
            return hit.name
    return None


def _fake(spec: str) -> list[Device]:
    """SLIPSTREAM_FAKE_GPUS="H100,H100,A100-80GB": pretend to have these (tests and demos of
    placement on a machine without GPUs; workers still run on the CPU). Each entry may repeat
    and give its memory: "4xH100" is four H100s, "H100@24" one with 24 GB (default: the
    catalog's), "8xH100@80" eight of 80 GB."""
    from ..spec.catalog import catalog

    out: list[Device] = []
    for entry in (n.strip() for n in spec.split(",") if n.strip()):
        times, _, rest = entry.partition("x") if _repeats(entry) else ("1", "", entry)
        name, _, mem = rest.partition("@")
        name = name.strip()
        gpu = catalog().lookup(name)
        memory = float(mem.lower().removesuffix("gb")) if mem else (gpu.vram_gb if gpu else 0.0)
        for _ in range(int(times)):
            out.append(
                Device(
                    len(out),
                    f"FAKE {gpu.name if gpu else name}",
                    memory,
                    gpu.name if gpu else None,
                )
            )
    return out


def _repeats(entry: str) -> bool:
    head, sep, _ = entry.partition("x")
    return bool(sep) and head.isdigit()


def _from_nvidia_smi() -> list[Device]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    devices = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            mem = float(parts[2]) / 1024 if parts[2].replace(".", "").isdigit() else 0.0
            devices.append(Device(int(parts[0]), parts[1], round(mem, 1), _canonical(parts[1])))
    return devices


def _from_torch() -> list[Device]:
    torch = sys.modules["torch"]
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append(Device(i, p.name, round(p.total_memory / 2**30, 1), _canonical(p.name)))
    return out


def matches(devices: list[Device], gpu_name: str) -> list[Device]:
    return [d for d in devices if d.canonical == gpu_name]
