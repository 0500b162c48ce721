"""The fetcher against a local HTTP server (127.0.0.1 only): verify, resume, extract safely, clean up."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

import harness.data as data
import harness.data.fetch as fetch_mod
from harness.data.cli import main as data_cli
from harness.data.fetch import FetchEntry, Remote, fetch
from harness.errors import DataError, DataMissing, UsageError


class Server:
    """Serves ``files`` (path -> bytes) with HTTP Range support; can drop a response midway."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut: dict[str, int] = {}  # path -> bytes sent before the connection drops (once)
        self.ranges = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = int(re.match(r"bytes=(\d+)-", rng).group(1)) if rng and server.ranges else 0
                if start >= len(body) and start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = server.cut.pop(self.path, None)
                self.wfile.write(body[start:] if cut is None else body[start : start + cut])
                if cut is not None:
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def add(self, path: str, body: bytes) -> str:
        self.files[path] = body
        return self.url + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    s = Server()
    yield s
    s.close()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def tar_bytes(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            t.addfile(info)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, body in members.items():
            z.writestr(name, body)
    return buf.getvalue()


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


TOY = {"toy/a/1.txt": b"one", "toy/b/2.txt": b"two" * 100}


def test_fetch_verifies_and_extracts(server: Server, tmp_path: Path) -> None:
    archive = tar_bytes(TOY)
    url = server.add("/toy.tar.gz", archive)
    reg = {"toy": FetchEntry("toy", "Toy", (Remote((url,), "toy.tar.gz", sha256=sha(archive), extract=True),))}
    messages: list[str] = []
    out = fetch("toy", tmp_path / "data", registry=reg, log=messages.append)
    assert out == tmp_path / "data" / "Toy"
    assert (out / "toy" / "b" / "2.txt").read_bytes() == b"two" * 100
    assert leftovers(tmp_path / "data") == ["Toy"]  # no .part, no staging folder
    n = len(server.requests)
    assert fetch("toy", tmp_path / "data", registry=reg, log=messages.append) == out
    assert len(server.requests) == n and "already present" in messages[-1]


def test_fetch_plain_files_then_load(server: Server, tmp_path: Path, cache_dir: Path) -> None:
    """An MNIST-shaped entry: gz files into MNIST/raw, one checked by sha256, one by md5; then load it."""
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), np.arange(5, dtype=np.uint8)
    img = gzip.compress(bytes([0, 0, 8, 3]) + np.array([5, 28, 28], ">u4").tobytes() + images.tobytes())
    lbl = gzip.compress(bytes([0, 0, 8, 1]) + np.array([5], ">u4").tobytes() + labels.tobytes())
    files = (
        Remote((server.add("/i.gz", img),), "t10k-images-idx3-ubyte.gz", sha256=sha(img), into="raw"),
        Remote((server.add("/l.gz", lbl),), "t10k-labels-idx1-ubyte.gz", md5=hashlib.md5(lbl).hexdigest(), into="raw"),
    )
    fetch("mnist", tmp_path, registry={"mnist": FetchEntry("mnist", "MNIST", files)})
    ds = data.load("mnist", root=tmp_path)
    assert torch.equal(ds.y, torch.arange(5)) and np.array_equal(ds.x[:, 0].numpy(), images)


def test_fetch_resumes_after_interruption(server: Server, tmp_path: Path) -> None:
    body = np.random.default_rng(1).bytes(50_000)
    url = server.add("/big.bin", body)
    server.cut["/big.bin"] = 12_345
    reg = {"big": FetchEntry("big", "Big", (Remote((url,), "big.bin", sha256=sha(body)),))}
    with pytest.raises(DataError, match="run the same command again to resume"):
        fetch("big", tmp_path, registry=reg)
    part = tmp_path / ".big-big.bin.part"
    assert part.stat().st_size == 12_345 and not (tmp_path / "Big").exists()
    out = fetch("big", tmp_path, registry=reg)
    assert server.requests == [("/big.bin", None), ("/big.bin", "bytes=12345-")]  # only the rest was sent
    assert (out / "big.bin").read_bytes() == body and not part.exists()


def test_fetch_complete_part_and_server_without_ranges(server: Server, tmp_path: Path) -> None:
    body = b"x" * 3000
    reg = {"f": FetchEntry("f", "F", (Remote((server.add("/f", body),), "f.bin", sha256=sha(body)),))}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".f-f.bin.part").write_bytes(body)  # finished before an interruption: 416, then verified
    assert (fetch("f", tmp_path / "a", registry=reg) / "f.bin").read_bytes() == body
    assert server.requests[-1] == ("/f", "bytes=3000-")
    server.ranges = False  # server answers 200 with the whole file: the part is rewritten, not appended to
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / ".f-f.bin.part").write_bytes(b"x" * 1000)
    assert (fetch("f", tmp_path / "b", registry=reg) / "f.bin").read_bytes() == body


def test_corrupted_download_leaves_nothing(server: Server, tmp_path: Path) -> None:
    good, bad = b"good file", zip_bytes(TOY)
    files = (
        Remote((server.add("/good", good),), "good.bin", sha256=sha(good)),
        Remote((server.add("/bad.zip", bad),), "bad.zip", sha256=sha(b"something else"), extract=True),
    )
    reg = {"c": FetchEntry("c", "C", files)}
    with pytest.raises(DataError, match=r"checksum mismatch for bad\.zip .*expected sha256 .*got .*deleted") as info:
        fetch("c", tmp_path, registry=reg)
    assert sha(bad) in str(info.value)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "name, archive",
    [
        ("t.tar.gz", tar_bytes({"../evil.txt": b"x"})),
        ("t.tar.gz", tar_bytes({"/tmp/evil.txt": b"x"})),
        ("t.tar.gz", tar_bytes({"ok.txt": b"x"}, links={"link": "/etc/passwd"})),
        ("t.zip", zip_bytes({"../../evil.txt": b"x"})),
        ("t.zip", zip_bytes({"/abs/evil.txt": b"x"})),
    ],
)
def test_unsafe_archive_is_rejected(server: Server, tmp_path: Path, name: str, archive: bytes) -> None:
    dest = tmp_path / "deep" / "dest"
    reg = {"u": FetchEntry("u", "U", (Remote((server.add("/a", archive),), name, sha256=sha(archive), extract=True),))}
    with pytest.raises(DataError, match="refusing to extract"):
        fetch("u", dest, registry=reg)
    assert leftovers(dest) == [] and not list(tmp_path.rglob("evil.txt"))


def test_unverified_needs_permission(server: Server, tmp_path: Path) -> None:
    url = server.add("/w.zip", zip_bytes(TOY))
    reg = {"w": FetchEntry("w", "W", (Remote((url,), "w.zip", extract=True),))}
    with pytest.raises(DataError, match="--allow-unverified"):
        fetch("w", tmp_path, registry=reg)
    assert server.requests == [] and leftovers(tmp_path) == []
    assert (fetch("w", tmp_path, registry=reg, allow_unverified=True) / "toy" / "a" / "1.txt").read_bytes() == b"one"


def test_mirrors_and_network_errors(server: Server, tmp_path: Path) -> None:
    body = b"payload"
    dead = "http://127.0.0.1:9/nothing"  # discard port: connection refused
    reg = {"m": FetchEntry("m", "M", (Remote((dead, server.add("/p", body)), "p.bin", sha256=sha(body)),))}
    assert (fetch("m", tmp_path, registry=reg) / "p.bin").read_bytes() == body
    reg = {"d": FetchEntry("d", "D", (Remote((dead, server.url + "/missing"), "p.bin", sha256=sha(body)),))}
    with pytest.raises(DataError, match=r"download of p\.bin failed .*404"):
        fetch("d", tmp_path, registry=reg)


def test_manual_unknown_and_no_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataMissing, match="Google Drive"):
        fetch("pacs", tmp_path)
    with pytest.raises(UsageError, match="fetchable"):
        fetch("nope", tmp_path)
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    with pytest.raises(UsageError, match="--dest"):
        fetch("mnist")


def test_cli_fetch(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = zip_bytes(TOY)
    entry = FetchEntry(
        "toy", "Toy", (Remote((server.add("/t.zip", archive),), "t.zip", sha256=sha(archive), extract=True),)
    )
    monkeypatch.setitem(fetch_mod.REGISTRY, "toy", entry)
    assert data_cli(["fetch", "toy", "--dest", str(tmp_path)]) == 0
    assert (tmp_path / "Toy" / "toy" / "a" / "1.txt").exists() and "ready at" in capsys.readouterr().err
    assert data_cli(["data", "fetch", "nope", "--dest", str(tmp_path)]) == 1
    assert "error: no download is registered for 'nope'" in capsys.readouterr().err


def test_default_registry_is_well_formed() -> None:
    names = set(data.dataset_names())
    for name, entry in fetch_mod.REGISTRY.items():
        assert name == entry.name and name in names
        assert entry.files or entry.note
        for r in entry.files:
            assert r.urls and all(u.startswith("https://") for u in r.urls)
            assert r.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", r.sha256)
            assert r.md5 is None or re.fullmatch(r"[0-9a-f]{32}", r.md5)
