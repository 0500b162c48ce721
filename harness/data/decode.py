"""File decoders: images through PIL (threaded), GeoTIFF stacks, MNIST idx files.

Every failure becomes a :class:`DataError` that names the file, so a user with
one bad JPEG among ten thousand learns which one (:func:`decode_images_skipping`
drops such files instead). Greyscale deeper than 8 bits is scaled by its bit depth.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from harness.errors import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
Size = int | tuple[int, int] | None


def _hw(size: Size) -> tuple[int, int] | None:
    if size is None:
        return None
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _workers() -> int:
    # PIL and tifffile release the GIL while decoding, so threads give real parallelism
    return min(8, os.cpu_count() or 1)


def _high_bit_grey(im: Image.Image, path: Path) -> Image.Image:
    """A greyscale image of more than 8 bits ("I;16*", "I", "F") as float mode "F" on the 0-255 scale.

    PIL's own ``convert("L")`` clips such images at 255, so a 16-bit scan came out all white;
    integers are scaled by the file's declared bit depth instead, floats must lie in [0, 1].
    """
    a = np.asarray(im)
    if im.mode == "F":
        lo, hi = float(np.min(a)), float(np.max(a))
        if not (0.0 <= lo and hi <= 1.0):  # also catches NaN
            raise DataError(
                f"cannot decode image {path}: float pixels span [{lo:g}, {hi:g}] but only [0, 1] has a known "
                "scale; save it as 8- or 16-bit integers"
            )
        return Image.fromarray(a.astype(np.float32) * 255.0)
    if im.mode.startswith("I;16"):
        bits = 16
    elif im.format == "TIFF":
        tag = im.tag_v2.get(258, 0)  # BitsPerSample, one value per channel
        bits = int(tag[0] if isinstance(tag, tuple) else tag)
    else:
        bits = 16 if im.format in ("PNG", "PPM") else 0  # older Pillow opens their 16-bit grey as "I"
    if bits != 16:
        depth = f"{bits}-bit" if bits else "unknown-depth"
        raise DataError(f"cannot decode image {path}: {depth} integer greyscale ({im.mode}); save it as 8 or 16 bits")
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise DataError(f"cannot decode image {path}: values [{a.min()}, {a.max()}] do not fit 16 unsigned bits")
    return Image.fromarray(a.astype(np.float32) / 257.0)  # 65535 / 257 = 255


def _decode_one(path: Path, hw: tuple[int, int] | None, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode == "F" or im.mode.startswith("I"):
                grey = _high_bit_grey(im, path)
                if hw is not None and grey.size != (hw[1], hw[0]):
                    grey = grey.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)  # at full precision, then round
                eight = np.clip(np.rint(np.asarray(grey)), 0, 255).astype(np.uint8)
                return np.asarray(Image.fromarray(eight).convert(mode), dtype=np.uint8)
            if hw is not None and im.format == "JPEG":
                im.draft(mode, (hw[1], hw[0]))  # DCT-domain downscale: much faster, never below the target
            im = im.convert(mode)
            if hw is not None and im.size != (hw[1], hw[0]):
                im = im.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)  # PIL's resize is antialiased
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {path}: {e}") from e


def _parallel_stack(
    files: Sequence[Path], read: Callable[[Path], np.ndarray], what: str, skip: bool = False
) -> tuple[np.ndarray, list[int]]:
    """Stack ``read(f)`` over ``files`` in threads; with ``skip``, files whose read raises DataError are left
    out and their indices returned (a shape mismatch still raises: the file decoded, the call was wrong)."""
    failed: list[int] = []
    errors: list[DataError] = []

    def attempt(i: int) -> np.ndarray | None:
        try:
            return read(files[i])
        except DataError as e:
            if not skip:
                raise
            failed.append(i)  # list.append is atomic under the GIL
            errors.append(e)
            return None

    start, first = 0, attempt(0)
    while first is None and start + 1 < len(files):
        start += 1
        first = attempt(start)
    if first is None:
        raise DataError(f"none of the {len(files)} {what} files could be decoded; the first: {errors[0]}")
    out = np.empty((len(files), *first.shape), dtype=first.dtype)
    out[start] = first

    def work(i: int) -> None:
        a = attempt(i)
        if a is None:
            return
        if a.shape != first.shape:
            raise DataError(
                f"{what} {files[i]} has shape {a.shape} but {files[start]} has {first.shape}; "
                "pass size=N to resize every sample to N x N at decode time"
            )
        out[i] = a

    with ThreadPoolExecutor(_workers()) as ex:
        list(ex.map(work, range(start + 1, len(files))))
    failed.sort()
    if failed:
        out = np.delete(out, failed, axis=0)
    return out, failed


def _to_nchw(out: np.ndarray) -> Tensor:
    t = torch.from_numpy(out)
    return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


def decode_images(files: Sequence[str | os.PathLike[str]], size: Size = None, mode: str = "RGB") -> Tensor:
    """Decode images to a uint8 tensor ``N x C x H x W`` (C = 1 for mode "L"), resized to ``size`` if given.

    Greyscale deeper than 8 bits is scaled by its bit depth (16-bit: divided by 257).
    The first undecodable file raises a :class:`DataError` that names it.
    """
    files = [Path(f) for f in files]
    if not files:
        raise DataError("no image files to decode")
    hw = _hw(size)
    out, _ = _parallel_stack(files, lambda p: _decode_one(p, hw, mode), "image")
    return _to_nchw(out)


def decode_images_skipping(
    files: Sequence[str | os.PathLike[str]], size: Size = None, mode: str = "RGB"
) -> tuple[Tensor, list[int]]:
    """:func:`decode_images` that drops undecodable files: returns the images of the others, in order,
    and the indices (into ``files``) of the files dropped. Raises only when none decodes."""
    files = [Path(f) for f in files]
    if not files:
        raise DataError("no image files to decode")
    hw = _hw(size)
    out, failed = _parallel_stack(files, lambda p: _decode_one(p, hw, mode), "image", skip=True)
    return _to_nchw(out), failed


def resize(x: Tensor, size: Size) -> Tensor:
    """Bilinear, antialiased resize of a float ``N x C x H x W`` tensor (no-op when already that size)."""
    hw = _hw(size)
    if hw is None or tuple(x.shape[-2:]) == hw:
        return x
    return F.interpolate(x, size=hw, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)


def read_tiffs(files: Sequence[str | os.PathLike[str]], bands: int, scale: float, size: Size = None) -> Tensor:
    """Multi-band GeoTIFFs -> float32 ``N x bands x H x W``, divided by ``scale`` and clipped to [0, 1]."""
    import tifffile

    files = [Path(f) for f in files]
    if not files:
        raise DataError("no tif files to decode")

    def read(path: Path) -> np.ndarray:
        try:
            a = tifffile.imread(path)
        except Exception as e:  # tifffile raises many types for bad files
            raise DataError(f"cannot decode GeoTIFF {path}: {e}") from e
        if a.ndim == 3 and a.shape[-1] == bands:  # EuroSAT stores H x W x bands
            a = np.moveaxis(a, -1, 0)
        if a.ndim != 3 or a.shape[0] != bands:
            raise DataError(f"GeoTIFF {path} has shape {a.shape}; expected {bands} bands")
        return a.astype(np.float32)

    x = torch.from_numpy(_parallel_stack(files, read, "GeoTIFF")[0]).div_(scale).clamp_(0, 1)
    return resize(x, size)


def read_idx(path: str | os.PathLike[str], ndim: int) -> np.ndarray:
    """Parse an (optionally gzipped) MNIST idx file of unsigned bytes, validating magic number and size."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {e} (the file is corrupt or truncated; download it again)") from e
    head = 4 + 4 * ndim
    if len(data) < head or data[:3] != b"\x00\x00\x08" or data[3] != ndim:
        raise DataError(f"{path} is not an idx file of {ndim}-d unsigned bytes (bad magic number {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4:head])
    expected = int(np.prod(dims))
    if len(data) - head != expected:
        found = len(data) - head
        raise DataError(f"{path} is truncated or padded: header says {dims} ({expected} bytes), found {found}")
    return np.frombuffer(data, dtype=np.uint8, offset=head).reshape(dims)
