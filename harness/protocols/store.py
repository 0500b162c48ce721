"""Models trained once and shared: closed-set models for every open-set score,
original and retrained models for every unlearning method, SSL encoders for
the remote-sensing probes.

A model is stored under ``$HARNESS_CACHE/models/<namespace>/<key>`` as a
safetensors file (no pickle: loading runs no code) plus a JSON sidecar with
what produced it (training seconds, device, metrics). Both are written to a
temp file and renamed, and a file lock keeps two processes (pytest-xdist
workers) from training the same model twice. The key must cover everything
that shapes the weights: the task fingerprint, the role, the seed, the trainer
and its hparams, and the code that trains it (:func:`source_digest`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file
from torch import nn

from harness.data.paths import cache_root


def source_digest(*parts: ModuleType | type | Callable | str | Path) -> str:
    """sha256 (16 hex) of the source files behind modules, classes or functions (or given paths), each read as
    :func:`harness.provenance.file_digest` does (comments and docstrings do not count)."""
    from harness.provenance import file_digest

    h = hashlib.sha256()
    for part in parts:
        path = Path(part) if isinstance(part, (str, Path)) else Path(inspect.getsourcefile(part) or "")
        h.update(path.name.encode())
        h.update(file_digest(path).encode())
    return h.hexdigest()[:16]


def store_key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


class ModelStore:
    """Get-or-train for shared models (see module docstring). ``trainings`` counts trainings per key."""

    trainings: Counter[str] = Counter()  # class-wide, so tests can check reuse across store instances

    def __init__(self, namespace: str, root: Path | None = None) -> None:
        self.folder = (root or cache_root() / "models") / namespace

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.safetensors", self.folder / f"{key}.json"

    def get(self, key: str, factory: Callable[[], nn.Module], train: Callable[[nn.Module], dict[str, Any]],
            device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
        """The stored model for ``key`` on ``device``, training it with ``train(model) -> info`` if absent."""
        weights, meta = self._paths(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.folder / f"{key}.lock")):
            model = factory().to(device)
            if weights.is_file() and meta.is_file():
                try:
                    model.load_state_dict(load_file(str(weights), device=str(device)))
                    return model, {**json.loads(meta.read_text()), "reused": True}
                except Exception:  # an unreadable entry is retrained, never fatal
                    weights.unlink(missing_ok=True)
            t0 = time.perf_counter()
            info = dict(train(model))
            info.setdefault("train_seconds", time.perf_counter() - t0)
            info["device"] = str(device)
            type(self).trainings[key] += 1
            self._write(weights, meta, model, info)
            return model, {**info, "reused": False}

    @staticmethod
    def _write(weights: Path, meta: Path, model: nn.Module, info: dict[str, Any]) -> None:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        tmp_w, tmp_m = (p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in (weights, meta))
        save_file(state, str(tmp_w))
        tmp_m.write_text(json.dumps(info, sort_keys=True, default=str))
        os.replace(tmp_w, weights)
        os.replace(tmp_m, meta)
