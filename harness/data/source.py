"""Data sources: how a protocol gets batches onto the training device.

Two paths behind one interface (:class:`DataSource`):

* :class:`DeviceSource` (``"memory"``): the whole sample tensor lives on the
  device as stored (uint8 images stay uint8) and batches are gathered by
  index. No per-sample Python, no host-device copies in the loop.
* :class:`StreamSource` (``"stream"``): a torch ``DataLoader`` gathers each
  batch on the host in worker processes (or decodes it from files, for
  :class:`FileImages`), in pinned memory, and copies it with
  ``non_blocking=True``.

Either way the batch arrives on the device in its stored dtype and is turned
into the model's input there, by :meth:`DataSource.prepare`: ``uint8 / 255``,
then the augmentation policy (training batches only), then per-channel
normalisation. :func:`choose_source` picks the path by size; ``--data-path``
overrides it, and the record says which one ran.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from harness.data.dataset import ArrayDataset, to_float
from harness.data.decode import decode_images
from harness.errors import UsageError

DATA_PATHS = ("auto", "memory", "stream")
# "auto" keeps a set on the device while it takes at most this share of the device's free memory
DEVICE_SHARE = 0.25
HOST_LIMIT_BYTES = 8 << 30  # on a CPU device: in-memory sets above this stream instead


class FileImages:
    """Images left on disk: decoded (and resized) on access, for sets too large to hold decoded.

    Quacks enough like a uint8 ``N x C x H x W`` tensor for :class:`ArrayDataset`
    (``len``, ``shape``, ``dtype``, indexing by an index tensor).
    """

    dtype = torch.uint8

    def __init__(self, files: Sequence[str | os.PathLike[str]], size: int | tuple[int, int], mode: str = "RGB"):
        self.files, self.size, self.mode = [Path(f) for f in files], size, mode
        first = decode_images(self.files[:1], size, mode)
        self.shape = (len(self.files), *first.shape[1:])

    def __len__(self) -> int:
        return len(self.files)

    @property
    def ndim(self) -> int:
        return 4

    def element_size(self) -> int:
        return 1

    def numel(self) -> int:
        return int(np.prod(self.shape))

    def __getitem__(self, idx: Tensor | Sequence[int]) -> Tensor:
        picks = torch.as_tensor(idx).reshape(-1).tolist()
        return decode_images([self.files[i] for i in picks], self.size, self.mode)

    def digest(self) -> str:
        """Content stand-in for fingerprints: the file listing (path, size, mtime) and the decode settings."""
        import hashlib

        h = hashlib.sha256(f"{self.size}{self.mode}".encode())
        for f in self.files:
            st = f.stat()
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()


@dataclass
class Normalizer:
    """Per-channel ``(x - mean) / std`` on the device (dim 1; images or tables)."""

    mean: Tensor
    std: Tensor

    @classmethod
    def of(cls, stats: tuple[Sequence[float], Sequence[float]] | None, device: torch.device) -> Normalizer | None:
        if stats is None:
            return None
        mean, std = (torch.tensor(v, dtype=torch.float32, device=device) for v in stats)
        return cls(mean, std)

    def __call__(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)


@dataclass
class RawBatch:
    """A batch as stored, already on the device: ``x`` in its stored dtype, labels as int64."""

    x: Tensor
    y: Tensor
    domain: Tensor | None
    group: Tensor | None
    index: Tensor


class DataSource:
    """Batches of one :class:`ArrayDataset` on one device (see module docstring)."""

    kind = ""

    def __init__(self, data: ArrayDataset, device: torch.device,
                 normalize: tuple[Sequence[float], Sequence[float]] | None = None) -> None:
        self.data, self.device = data, torch.device(device)
        self.normalizer = Normalizer.of(normalize, self.device)

    def raw_batches(self, index_batches: Iterable[Tensor]) -> Iterator[RawBatch]:
        raise NotImplementedError

    def prepare(self, x: Tensor, augment: Any = None, generator: torch.Generator | None = None) -> Tensor:
        """Stored batch -> model input: float in [0, 1], augmented (if a policy is given), normalised."""
        x = to_float(x)
        if augment is not None:
            x = augment(x, generator)
        return x if self.normalizer is None else self.normalizer(x)

    def inputs(self, indices: Tensor, batch_size: int) -> Iterator[tuple[Tensor, RawBatch]]:
        """Evaluation batches in order: (prepared input, raw batch), no augmentation."""
        chunks = [indices[s:s + batch_size] for s in range(0, len(indices), batch_size)]
        for raw in self.raw_batches(chunks):
            yield self.prepare(raw.x), raw

    def describe(self) -> dict[str, Any]:
        return {"data_path": self.kind, "stored_dtype": str(self.data.x.dtype).replace("torch.", ""),
                "stored_bytes": int(self.data.nbytes)}


def _labels(data: ArrayDataset) -> tuple[Tensor, Tensor | None, Tensor | None]:
    return data.y, data.domain, data.group


class DeviceSource(DataSource):
    """The whole set on the device as stored; batches are index gathers."""

    kind = "memory"

    def __init__(self, data: ArrayDataset, device: torch.device,
                 normalize: tuple[Sequence[float], Sequence[float]] | None = None) -> None:
        super().__init__(data, device, normalize)
        if isinstance(data.x, FileImages):
            raise UsageError(f"{data.name}: file-backed images can only stream; use --data-path stream (or auto)")

        def put(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(self.device)

        self.x = put(data.x)
        self.y, self.domain, self.group = (put(t) for t in _labels(data))
        self._on_host = self.device.type == "cpu"

    def raw_batches(self, index_batches: Iterable[Tensor]) -> Iterator[RawBatch]:
        for idx in index_batches:
            dev_idx = idx if self._on_host else idx.to(self.device, non_blocking=True)
            yield RawBatch(self.x[dev_idx], self.y[dev_idx],
                           None if self.domain is None else self.domain[dev_idx],
                           None if self.group is None else self.group[dev_idx], dev_idx)

    def gather_x(self, idx: Tensor) -> Tensor:
        return self.x[idx if self._on_host else idx.to(self.device)]


class _Rows(torch.utils.data.Dataset):
    """Batched row access for the DataLoader (``__getitems__``: one gather per batch, not per sample)."""

    def __init__(self, data: ArrayDataset) -> None:
        self.x, (self.y, self.domain, self.group) = data.x, _labels(data)

    def __len__(self) -> int:
        return len(self.y)

    def __getitems__(self, idx: list[int]) -> tuple[Tensor, ...]:
        t = torch.as_tensor(idx, dtype=torch.long)
        empty = torch.empty(0, dtype=torch.long)
        return (self.x[t], self.y[t], empty if self.domain is None else self.domain[t],
                empty if self.group is None else self.group[t], t)

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:  # pragma: no cover - the loader uses __getitems__
        return self.__getitems__([i])


def _identity(batch: Any) -> Any:
    return batch


class StreamSource(DataSource):
    """Batches gathered (or decoded from files) by DataLoader workers, pinned, copied without blocking."""

    kind = "stream"

    def __init__(self, data: ArrayDataset, device: torch.device,
                 normalize: tuple[Sequence[float], Sequence[float]] | None = None, workers: int | None = None) -> None:
        super().__init__(data, device, normalize)
        self.rows = _Rows(data)
        if workers is None:
            workers = min(4, max(1, (os.cpu_count() or 2) - 1))
        self.workers = workers
        self.pin = self.device.type == "cuda"

    def raw_batches(self, index_batches: Iterable[Tensor]) -> Iterator[RawBatch]:
        sampler = [b.tolist() for b in index_batches]
        if not sampler:
            return
        loader = torch.utils.data.DataLoader(
            self.rows, batch_sampler=sampler, num_workers=self.workers, pin_memory=self.pin,
            collate_fn=_identity, persistent_workers=False, prefetch_factor=4 if self.workers else None,
        )
        nb = self.pin
        for x, y, domain, group, index in loader:
            yield RawBatch(x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb),
                           domain.to(self.device, non_blocking=nb) if domain.numel() else None,
                           group.to(self.device, non_blocking=nb) if group.numel() else None,
                           index)

    def gather_x(self, idx: Tensor) -> Tensor:
        return torch.as_tensor(self.rows.x[idx]).to(self.device)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "workers": self.workers, "pin_memory": self.pin}


def choose_source(data: ArrayDataset, device: torch.device, path: str = "auto",
                  normalize: tuple[Sequence[float], Sequence[float]] | None = None) -> DataSource:
    """``memory`` when the stored set fits a share of the device's free memory, else ``stream``."""
    if path not in DATA_PATHS:
        raise UsageError(f"--data-path {path!r}: choose one of {', '.join(DATA_PATHS)}")
    if path == "auto":
        limit = DEVICE_SHARE * torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else HOST_LIMIT_BYTES
        path = "memory" if not isinstance(data.x, FileImages) and data.nbytes <= limit else "stream"
    return DeviceSource(data, device, normalize) if path == "memory" else StreamSource(data, device, normalize)
