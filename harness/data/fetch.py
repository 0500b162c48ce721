"""Download datasets into ``$HARNESS_DATA`` (``python -m harness data fetch NAME``).

Each entry lists its files with mirror URLs and checksums. A download goes to ``DEST/.NAME-FILE.part``
and resumes from there with an HTTP Range request after an interruption. Files are checked
against sha256 where it is published, else against the md5 that torchvision/torchgeo publish
(which catches corruption, not tampering); a file with neither is refused unless
``allow_unverified``. Archives are extracted (zip/tar, rejecting members that would land outside
the destination, links and devices) into a staging folder that is moved into place with
``os.replace`` only when everything succeeded. A checksum mismatch or a bad archive leaves nothing
behind; a network interruption keeps the ``.part`` file so the next run resumes.

PACS and RSSCN7 have no stable direct-download URL (Google Drive / authors' pages); their
entries only say where to get them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from harness.data.paths import data_root
from harness.errors import DataError, DataMissing, UsageError


@dataclass(frozen=True)
class Remote:
    urls: tuple[str, ...]  # mirrors, tried in order
    filename: str
    sha256: str | None = None
    md5: str | None = None
    extract: bool = False
    into: str = ""  # sub-folder of the dataset folder


@dataclass(frozen=True)
class FetchEntry:
    name: str
    target: str  # folder under the destination, as the loader expects it
    files: tuple[Remote, ...] = ()
    note: str = ""  # where to get it by hand when there is no direct URL


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_MNIST = {  # file: (sha256, md5), as published by TensorFlow Datasets and torchvision
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "d53e105ee54ea40749a09fcbcd1e9432",
    ),
    "t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "9fb629c4189551a2d022fa330f9573f3",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
}
_LIBSVM = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"

REGISTRY: dict[str, FetchEntry] = {
    "mnist": FetchEntry(
        "mnist",
        "MNIST",
        tuple(
            Remote(tuple(m + f for m in _MNIST_MIRRORS), f, sha, md5, into="raw") for f, (sha, md5) in _MNIST.items()
        ),
    ),
    "usps": FetchEntry(
        "usps",
        "USPS",
        (  # torchvision's raw files; the usps loader reads them as well as usps.h5
            Remote((_LIBSVM + "usps.bz2",), "usps.bz2", md5="ec16c51db3855ca6c91edd34d0e9b197"),
            Remote((_LIBSVM + "usps.t.bz2",), "usps.t.bz2", md5="8ea070ee2aca1ac39742fdd1ef5ed118"),
        ),
    ),
    "eurosat": FetchEntry(
        "eurosat",
        "EuroSAT",
        (
            Remote(
                (
                    "https://madm.dfki.de/files/sentinel/EuroSAT.zip",
                    "https://huggingface.co/datasets/torchgeo/eurosat/resolve/main/EuroSAT.zip",
                ),
                "EuroSAT.zip",
                md5="c8fa014336c82ac7804f0398fcb19387",
                extract=True,
            ),
        ),
    ),
    "eurosat_ms": FetchEntry(
        "eurosat_ms",
        "EuroSAT_MS",
        (
            Remote(
                (
                    "https://madm.dfki.de/files/sentinel/EuroSATallBands.zip",
                    "https://hf.co/datasets/torchgeo/eurosat/resolve/1ce6f1bfb56db63fd91b6ecc466ea67f2509774c/EuroSATallBands.zip",
                ),
                "EuroSATallBands.zip",
                md5="5ac12b3b2557aa56e1826e981e8e200e",
                extract=True,
            ),
        ),
    ),
    "waterbirds": FetchEntry(
        "waterbirds",
        "waterbirds",
        (
            Remote(  # WILDS publishes no checksum for it
                ("https://worksheets.codalab.org/rest/bundles/0x505056d5cdea4e4eaa0e242cbfe2daa4/contents/blob/",),
                "waterbirds.tar.gz",
                extract=True,
            ),
        ),
    ),
    "pacs": FetchEntry(
        "pacs",
        "PACS",
        note=(
            "PACS is distributed through Google Drive, with no stable direct URL: download it from "
            "https://domaingeneralization.github.io/ (or with DomainBed's domainbed/scripts/download.py) and unpack it "
            "so that $HARNESS_DATA/PACS/<domain>/<class>/*.jpg exists"
        ),
    ),
    "rsscn7": FetchEntry(
        "rsscn7",
        "RSSCN7",
        note=(
            "RSSCN7 (Zou et al., 2015) has no stable direct URL: get it from the authors' release and unpack it "
            "so that "
            "$HARNESS_DATA/RSSCN7/<class>/<letter><NNN>.jpg exists"
        ),
    ),
}

Log = Callable[[str], None]


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download_once(url: str, part: Path) -> None:
    """Append the rest of ``url`` to ``part`` (Range request when part is non-empty)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "harness-fetch/1", **({"Range": f"bytes={have}-"} if have else {})}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part file is complete
            return
        raise
    with resp:
        resumed = have > 0 and resp.status == 206
        if resumed:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                raise OSError(f"server resumed at the wrong offset ({resp.headers.get('Content-Range')})")
        expected = resp.headers.get("Content-Length")
        written = 0
        with open(part, "ab" if resumed else "wb") as f:
            for block in iter(lambda: resp.read(1 << 20), b""):
                f.write(block)
                written += len(block)
        # http.client returns short reads silently when the connection drops, so check the length
        if expected is not None and written != int(expected):
            raise OSError(f"connection closed after {written} of {expected} bytes")


def _download(remote: Remote, part: Path, log: Log) -> None:
    errors = []
    for url in remote.urls:
        try:
            log(f"downloading {url}" + (f" (resuming at {part.stat().st_size} bytes)" if part.exists() else ""))
            _download_once(url, part)
            return
        except (OSError, urllib.error.URLError, ValueError) as e:
            errors.append(f"{url}: {e}")
    kept = ""
    if part.exists():
        kept = f"; {part.stat().st_size} bytes kept in {part}, run the same command again to resume"
    raise DataError(f"download of {remote.filename} failed ({'; '.join(errors)}){kept}")


def _verify(remote: Remote, part: Path) -> None:
    algo, want = ("sha256", remote.sha256) if remote.sha256 else ("md5", remote.md5)
    if want is None:
        return
    got = _digest(part, algo)
    if got != want.lower():
        part.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {remote.filename} (from {remote.urls[0]}): expected {algo} {want}, got {got}. "
            "The download is corrupt or the file changed upstream; it has been deleted"
        )


def _safe_member(name: str, archive: Path) -> None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", name):
        raise DataError(f"refusing to extract {archive}: member {name!r} would land outside the destination")


def _extract(archive: Path, kind: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    try:
        if kind.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    _safe_member(info.filename, archive)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise DataError(f"refusing to extract {archive}: member {info.filename!r} is a symbolic link")
                z.extractall(out)
        elif kind.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
            with tarfile.open(archive) as t:
                for m in t.getmembers():
                    _safe_member(m.name, archive)
                    if not (m.isfile() or m.isdir()):
                        raise DataError(f"refusing to extract {archive}: member {m.name!r} is a link or device")
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second line of defence
                    t.extractall(out, filter="data")
                else:
                    t.extractall(out)
        else:
            raise DataError(f"don't know how to extract {archive} (expected .zip or .tar[.gz|.bz2|.xz])")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise DataError(f"cannot extract {archive}: {e}") from e


def fetch(
    name: str,
    dest: str | os.PathLike[str] | None = None,
    registry: dict[str, FetchEntry] | None = None,
    allow_unverified: bool = False,
    log: Log | None = None,
) -> Path:
    """Download, verify and unpack dataset ``name`` into ``dest`` (default ``$HARNESS_DATA``); returns its folder."""
    log = log or (lambda _msg: None)
    registry = REGISTRY if registry is None else registry
    if name not in registry:
        raise UsageError(f"no download is registered for {name!r}; fetchable: {', '.join(sorted(registry))}")
    entry = registry[name]
    base = Path(dest) if dest is not None else data_root()
    if base is None:
        raise UsageError("no destination: pass --dest DIR or set HARNESS_DATA")
    final = base / entry.target
    if not entry.files:
        raise DataMissing(name, str(final), entry.note)
    if final.exists():
        log(f"{name} already present at {final}")
        return final
    unverified = [r.filename for r in entry.files if not (r.sha256 or r.md5)]
    if unverified and not allow_unverified:
        raise DataError(
            f"{name}: no published checksum for {', '.join(unverified)}, so the download cannot be verified; "
            "re-run with --allow-unverified to accept it anyway"
        )
    created = [d for d in (base, *base.parents) if not d.exists()]
    base.mkdir(parents=True, exist_ok=True)
    parts = [base / f".{name}-{r.filename}.part" for r in entry.files]
    try:
        for remote, part in zip(entry.files, parts):  # a network error keeps non-empty parts for a resume
            _download(remote, part, log)
    except BaseException:
        for part in parts:
            if part.is_file() and part.stat().st_size == 0:
                part.unlink()
        for d in created:  # folders this call made and left empty go again (innermost first)
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    staging = Path(tempfile.mkdtemp(prefix=f".fetch-{name}-", dir=base))
    try:
        for remote, part in zip(entry.files, parts):
            _verify(remote, part)
            out = staging / entry.target / remote.into
            if remote.extract:
                log(f"extracting {remote.filename}")
                _extract(part, remote.filename.lower(), out)
                part.unlink()
            else:
                out.mkdir(parents=True, exist_ok=True)
                os.replace(part, out / remote.filename)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / entry.target, final)
    except BaseException:
        for part in parts:  # corrupt or unsafe: nothing of this fetch may stay behind
            part.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"{name} ready at {final}")
    return final
