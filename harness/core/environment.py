"""What ran a record: device, library versions, code version, date."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
from functools import lru_cache

import torch

import harness
from harness.core.digest import REPO
from harness.cpu_numerics import settings
from harness.errors import UsageError


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


@lru_cache(maxsize=1)
def cuda_driver_version() -> str | None:
    """The NVIDIA driver version (pynvml, else ``nvidia-smi``); None when neither answers."""
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # not installed, or no NVML on this machine
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def cpu_numerics() -> dict[str, str | None]:
    """The instruction set torch's CPU kernels run with and the pins behind it (:mod:`harness.cpu_numerics`)."""
    return {"capability": torch.backends.cpu.get_cpu_capability(), **settings()}


def environment(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return {
        "device": device_name(device),
        "cpu_numerics": None if cuda else cpu_numerics(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cuda_driver": cuda_driver_version() if cuda else None,
        "python": platform.python_version(),
        "harness_version": harness.__version__,
        "git_commit": git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; anything unavailable or unknown is a one-line usage error."""
    fix = "use --device cpu, cuda, cuda:N or auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"--device {name!r} is not a device name; {fix}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name!r}: CUDA is not available on this machine; {fix.replace('cuda, ', '')}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s); {fix}")
        return device
    if device.type == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return device
    raise UsageError(f"--device {name!r}: {device.type} is not available here (the harness runs on cpu and cuda); "
                     f"{fix}")
