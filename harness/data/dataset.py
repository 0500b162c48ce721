"""The one in-memory dataset type every suite uses.

An :class:`ArrayDataset` holds decoded samples as tensors, integer labels and
optional domain and group labels with their names. Images decoded from files
stay ``uint8`` (``N×C×H×W``, 0..255): 4× smaller in memory and on the device,
converted to float per batch by the protocol (:func:`to_float`). Generated or
resampled images (rotated digits, USPS) and tables (``N×D``) are float32.

A :class:`Split` is a view on it: a base dataset plus an index tensor. Splits
share the base's storage, so carving train/val/test or per-domain subsets
copies nothing; the protocol moves the base to the device once and gathers
batches by index.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


def to_float(x: Tensor) -> Tensor:
    """Images as float32 in [0, 1]: ``uint8 / 255``; float tensors pass through unchanged (no copy)."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def tensor_digest(*tensors: Tensor | None) -> str:
    """sha256 over the raw bytes, dtypes and shapes of the given tensors."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none")
            continue
        if hasattr(t, "digest"):  # file-backed images: their listing stands in for the pixels
            h.update(t.digest().encode())
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy() if t.numel() else b"")  # buffer protocol: hashes without a copy
    return h.hexdigest()


@dataclass(eq=False)
class ArrayDataset:
    x: Tensor
    y: Tensor
    classes: list[str]
    name: str = ""
    domain: Tensor | None = None
    domain_names: list[str] | None = None
    group: Tensor | None = None
    group_names: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # source path, synthetic flag, resolution...
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n = len(self.y)
        for attr in ("x", "domain", "group"):
            t = getattr(self, attr)
            if t is not None and len(t) != n:
                raise ValueError(f"{self.name}: {attr} has {len(t)} rows but y has {n}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def nbytes(self) -> int:
        """Bytes of the sample tensor as stored (uint8 images count one byte per value)."""
        return self.x.element_size() * self.x.numel()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def fingerprint(self) -> str:
        """Content hash of samples and labels (cached)."""
        if self._fingerprint is None:
            self._fingerprint = tensor_digest(self.x, self.y, self.domain, self.group)
        return self._fingerprint

    @property
    def synthetic(self) -> bool:
        return bool(self.meta.get("synthetic", False))

    def all(self) -> Split:
        return Split(self, torch.arange(len(self)))

    def subset(self, indices: Tensor | list[int]) -> Split:
        return Split(self, torch.as_tensor(indices, dtype=torch.long))

    def where(self, mask: Tensor) -> Split:
        return Split(self, torch.nonzero(mask, as_tuple=False).flatten())

    def splits(self) -> dict[str, Split]:
        """The dataset's own splits, from ``meta["split"]`` (a code per sample) and ``meta["split_names"]``.

        USPS (train/test) and WILDS layouts (train/val/test) carry them; other sets return ``{}``.
        """
        codes = self.meta.get("split")
        if codes is None:
            return {}
        codes = torch.as_tensor(codes)
        return {name: self.where(codes == i) for i, name in enumerate(self.meta["split_names"])}


@dataclass(eq=False)
class Split:
    """A subset of an :class:`ArrayDataset` by index; materialises only on access."""

    base: ArrayDataset
    indices: Tensor

    def __len__(self) -> int:
        return len(self.indices)

    def _take(self, t: Tensor | None) -> Tensor | None:
        return None if t is None else t[self.indices]

    @property
    def x(self) -> Tensor:
        return self.base.x[self.indices]

    @property
    def y(self) -> Tensor:
        return self.base.y[self.indices]

    @property
    def domain(self) -> Tensor | None:
        return self._take(self.base.domain)

    @property
    def group(self) -> Tensor | None:
        return self._take(self.base.group)

    @property
    def classes(self) -> list[str]:
        return self.base.classes

    def subset(self, positions: Tensor | list[int]) -> Split:
        """A subset of this split, by position within it."""
        return Split(self.base, self.indices[torch.as_tensor(positions, dtype=torch.long)])

    def where(self, mask: Tensor) -> Split:
        return Split(self.base, self.indices[mask])
