"""Models trained once and shared: closed-set models for every open-set score,
original and retrained models for every unlearning method, SSL encoders for
the remote-sensing probes.

A model is stored under ``$HARNESS_CACHE/models/<namespace>/<key>`` as a
safetensors file (no pickle: loading runs no code) plus a JSON sidecar with
what produced it (training seconds, device, metrics), through
:func:`get_or_compute`, the get-or-compute every cache of the protocols uses
(models, stored outputs, probe features). The key must cover everything
that shapes the weights: the task fingerprint, the role, the seed, the trainer
and its hparams, and the code that trains it (:func:`harness.core.digest.code_digest`, the one code digest).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from harness.data.paths import cache_root


def get_or_compute(path: Path, compute: Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]], *,
                   sidecar: bool = False, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any], bool]:
    """``(tensors, meta, reused)`` stored at ``path`` (safetensors), running ``compute()`` only when no readable
    entry exists: the one get-or-compute of the caches (models, outputs, features).

    A file lock beside ``path`` keeps two processes (xdist workers) from computing the same entry; the entry is
    written to a temp file and renamed, so a crash leaves nothing half-written; an unreadable entry is recomputed,
    never fatal. ``meta`` (JSON) lives in the file's metadata, or in a ``.json`` sidecar when ``sidecar`` (the
    model store's layout, which ``cached_encoders`` lists without opening the weights).
    """
    meta_path = path.with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_suffix(".lock"))):
        if path.is_file() and (meta_path.is_file() or not sidecar):
            try:
                with safe_open(str(path), framework="pt", device=device) as f:
                    tensors = {k: f.get_tensor(k) for k in f.keys()}
                    meta = json.loads(meta_path.read_text() if sidecar else (f.metadata() or {}).get("meta", "{}"))
                return tensors, meta, True
            except Exception:  # an unreadable entry is recomputed, never fatal
                path.unlink(missing_ok=True)
        tensors, meta = compute()
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        text = json.dumps(meta, sort_keys=True, default=str)
        save_file(tensors, str(tmp), metadata=None if sidecar else {"meta": text})
        if sidecar:
            tmp_meta = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
            tmp_meta.write_text(text)
            os.replace(tmp, path)
            os.replace(tmp_meta, meta_path)
        else:
            os.replace(tmp, path)
        return tensors, json.loads(text), False


def store_key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


class ModelStore:
    """Get-or-train for shared models (see module docstring). ``trainings`` counts trainings per key."""

    trainings: Counter[str] = Counter()  # class-wide, so tests can check reuse across store instances

    def __init__(self, namespace: str, root: Path | None = None) -> None:
        self.folder = (root or cache_root() / "models") / namespace

    def get(self, key: str, factory: Callable[[], nn.Module], train: Callable[[nn.Module], dict[str, Any]],
            device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
        """The stored model for ``key`` on ``device``, training it with ``train(model) -> info`` if absent."""
        model = factory().to(device)

        def compute() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
            t0 = time.perf_counter()
            info = dict(train(model))
            info.setdefault("train_seconds", time.perf_counter() - t0)
            info["device"] = str(device)
            type(self).trainings[key] += 1
            return model.state_dict(), info

        state, info, reused = get_or_compute(self.folder / f"{key}.safetensors", compute, sidecar=True,
                                             device=str(device))
        if reused:
            model.load_state_dict(state)
        return model, {**info, "reused": reused}
