"""The release hub: publish, registry, resumable verified downloads from a local HTTP server."""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from fmpretrain import hub
from fmpretrain.cli import main

SHIPPED = Path(str(resources.files("fmpretrain").joinpath("releases.json")))


# ------------------------------------------------------------------------------ fixtures
class Server:
    """Files served over HTTP on 127.0.0.1, with knobs to misbehave."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[dict[str, str | None]] = []
        self.drop_after: int | None = None  # close the connection after N body bytes, once
        self.ignore_range = False
        self.corrupt = False  # flip one byte of what is sent
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append({"path": self.path, "range": self.headers.get("Range")})
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                if server.corrupt:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                start, status = 0, 200
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and not server.ignore_range:
                    start, status = int(match.group(1)), 206
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if server.drop_after is not None:
                    cut, server.drop_after = server.drop_after, None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No user registry or cache leaks in; retries do not wait."""
    monkeypatch.delenv(hub.REGISTRY_ENV, raising=False)
    monkeypatch.delenv(hub.OFFLINE_ENV, raising=False)
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(hub, "RETRY_DELAY_S", 0.0)


def make_release(path: Path, seed: int = 0) -> Path:
    """A small but valid release directory, as export_release writes it."""
    path.mkdir(parents=True)
    gen = torch.Generator().manual_seed(seed)
    tensors = {
        "embedding.weight": torch.randn(100, 16, generator=gen),
        "layers.0.weight": torch.randn(16, 16, generator=gen),
        "head.bias": torch.randn(8, generator=gen),
    }
    save_file(tensors, str(path / hub.WEIGHTS), metadata={"format": "fmpretrain", "tag": "s1"})
    config = {
        "format_version": 1,
        "kind": "fingerprint-pretrained",
        "model": {
            "hidden_channels": 16,
            "num_layers": 1,
            "num_heads": 2,
            "num_rbf": 8,
            "cutoff": 6.0,
            "max_z": 100,
            "activation": "silu",
        },
        "descriptor": {
            "name": "ead",
            "params": {"cutoff": 6.0},
            "version": 1,
            "hash": "abc123",
            "dim": 8,
            "feature_names": [f"f{i}" for i in range(8)],
        },
        "normalization": {"mean": [0.0] * 8, "std": [1.0] * 8},
    }
    (path / hub.CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    lines = [
        f"{hashlib.sha256((path / n).read_bytes()).hexdigest()}  {n}"
        for n in (hub.WEIGHTS, hub.CONFIG)
    ]
    (path / hub.CHECKSUMS).write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def release(tmp_path):
    """(release dir, archive bytes, registry entry) of a published release."""
    directory = make_release(tmp_path / "et-tiny")
    archive, entry = hub.publish(directory)
    return directory, archive.read_bytes(), entry


def serve(server: Server, release, path: str = "/et-tiny.tar.gz") -> str:
    server.files[path] = release[1]
    return server.url(path)


def write_registry(path: Path, *entries: hub.RegistryEntry) -> Path:
    doc = {"schema_version": 1, "releases": [e.to_dict() for e in entries]}
    path.write_text(json.dumps(doc))
    return path


def same_files(a: Path, b: Path) -> bool:
    return all(
        (a / n).read_bytes() == (b / n).read_bytes()
        for n in (hub.WEIGHTS, hub.CONFIG, hub.CHECKSUMS)
    )


def leftovers(cache: Path) -> list[str]:
    """Archives or releases left in the cache (locks and empty folders do not count)."""
    found = []
    for sub in ("downloads", "releases"):
        if (cache / sub).exists():
            found += [p.name for p in (cache / sub).iterdir()]
    return found


# ------------------------------------------------------------------------------ tests
def test_constants_match_export():
    from fmpretrain.train import export

    assert (hub.RELEASE_FORMAT, hub.WEIGHTS, hub.CONFIG, hub.CHECKSUMS) == (
        export.RELEASE_FORMAT,
        export.WEIGHTS,
        export.CONFIG,
        export.CHECKSUMS,
    )


def test_download_by_url_and_sha256(server, release, tmp_path):
    url = serve(server, release)
    out = hub.download(url, sha256=release[2].sha256, progress=False)
    assert out == tmp_path / "cache" / "releases" / release[2].sha256[:16]
    assert same_files(out, release[0])
    assert not (tmp_path / "cache" / "downloads" / f"{release[2].sha256}.part").exists()
    marker = json.loads((out / hub.MARKER).read_text())
    assert marker["sha256"] == release[2].sha256 and marker["url"] == url


def test_download_by_name_then_cache_hit_without_network(server, release, tmp_path):
    url = serve(server, release)
    entry = hub.RegistryEntry.from_dict({**release[2].to_dict(), "url": url})
    registry = write_registry(tmp_path / "registry.json", entry)
    first = hub.load_pretrained("et-tiny", registry=registry, progress=False)
    assert same_files(first, release[0]) and len(server.requests) == 1
    server.requests.clear()
    assert hub.load_pretrained("et-tiny", registry=registry) == first
    assert hub.download(url, sha256=entry.sha256) == first
    assert server.requests == []


def test_registry_from_env_and_url(server, release, tmp_path, monkeypatch):
    url = serve(server, release)
    entry = hub.RegistryEntry.from_dict({**release[2].to_dict(), "url": url})
    doc = write_registry(tmp_path / "registry.json", entry).read_bytes()
    server.files["/registry.json"] = doc
    registry_url = server.url("/registry.json")
    assert hub.load_registry(registry_url) == {"et-tiny": entry}
    monkeypatch.setenv(hub.REGISTRY_ENV, registry_url)
    out = hub.download("et-tiny", progress=False)
    assert same_files(out, release[0])
    # the registry URL gone: its cached copy is used, with a warning
    del server.files["/registry.json"]
    server.close()
    with pytest.warns(UserWarning, match="cached"):
        assert hub.load_pretrained("et-tiny") == out


def test_interrupted_download_resumes_with_range(server, release):
    url = serve(server, release)
    server.drop_after = 1000
    out = hub.download(url, sha256=release[2].sha256, progress=False)
    assert same_files(out, release[0])
    assert [r["range"] for r in server.requests] == [None, "bytes=1000-"]


def test_interrupted_download_resumes_in_a_later_call(server, release, tmp_path):
    url = serve(server, release)
    server.drop_after = 777
    with pytest.raises(hub.HubError, match="resume"):
        hub.download(url, sha256=release[2].sha256, progress=False, retries=0)
    part = tmp_path / "cache" / "downloads" / f"{release[2].sha256}.part"
    assert part.stat().st_size == 777
    out = hub.download(url, sha256=release[2].sha256, progress=False)
    assert same_files(out, release[0]) and not part.exists()
    assert server.requests[-1]["range"] == "bytes=777-"


def test_server_ignoring_range_restarts_cleanly(server, release):
    url = serve(server, release)
    server.drop_after = 500
    server.ignore_range = True
    out = hub.download(url, sha256=release[2].sha256, progress=False)
    assert same_files(out, release[0])
    assert [r["range"] for r in server.requests] == [None, "bytes=500-"]


def test_corrupted_download_is_refused_and_deleted(server, release, tmp_path):
    url = serve(server, release)
    server.corrupt = True
    with pytest.raises(hub.ChecksumError, match=r"sha256 mismatch .* deleted"):
        hub.download(url, sha256=release[2].sha256, progress=False)
    assert leftovers(tmp_path / "cache") == []
    # the registry's size catches a file of the wrong length before it is downloaded
    server.corrupt = False
    server.files["/et-tiny.tar.gz"] = release[1] + b"junk"
    entry = hub.RegistryEntry.from_dict({**release[2].to_dict(), "url": url})
    registry = write_registry(tmp_path / "registry.json", entry)
    with pytest.raises(hub.ChecksumError, match="registry says"):
        hub.download("et-tiny", registry=registry, progress=False)
    assert leftovers(tmp_path / "cache") == []


def test_url_without_sha256_is_refused(server, release, capsys):
    url = serve(server, release)
    with pytest.raises(hub.HubError, match="--sha256 HEX"):
        hub.download(url)
    assert main(["download", url]) == 2
    assert "--sha256" in capsys.readouterr().err
    assert server.requests == []


def _evil_archive(kind: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo({"dotdot": "../evil", "absolute": "/tmp/evil"}.get(kind, "evil"))
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_unsafe_archive_is_refused(server, tmp_path, kind):
    data = _evil_archive(kind)
    server.files["/evil.tar.gz"] = data
    sha256 = hashlib.sha256(data).hexdigest()
    with pytest.raises(hub.UnsafeArchiveError):
        hub.download(server.url("/evil.tar.gz"), sha256=sha256, progress=False)
    assert not (tmp_path / "cache" / "evil").exists()
    assert not (tmp_path / "evil").exists()
    assert not list((tmp_path / "cache" / "releases").iterdir())


def test_archive_with_unlisted_file_is_refused(tmp_path):
    directory = make_release(tmp_path / "rel")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in (hub.WEIGHTS, hub.CONFIG, hub.CHECKSUMS):
            tar.add(directory / name, arcname=f"rel/{name}")
        info = tarfile.TarInfo("rel/extra.py")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"#"))
    (tmp_path / "rel.tar.gz").write_bytes(buffer.getvalue())
    with pytest.raises(hub.UnsafeArchiveError, match=r"does not list: extra\.py"):
        hub.load_pretrained(tmp_path / "rel.tar.gz")


def test_publish_is_deterministic_and_round_trips(tmp_path, capsys, server):
    directory = make_release(tmp_path / "rel")
    assert (
        main(["publish", str(directory), "--name", "et-tiny", "--url", "https://x.org/a.tar.gz"])
        == 0
    )
    entry = hub.RegistryEntry.from_dict(json.loads(capsys.readouterr().out))
    archive = tmp_path / "rel.tar.gz"
    assert entry.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert entry.size == archive.stat().st_size
    assert entry.name == "et-tiny" and entry.url == "https://x.org/a.tar.gz"
    assert entry.descriptor == {"name": "ead", "hash": "abc123", "dim": 8}
    assert entry.model["hidden_channels"] == 16 and entry.model["parameters"] == 1600 + 256 + 8
    assert entry.format_version == 1
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted([hub.CHECKSUMS, hub.CONFIG, hub.WEIGHTS])
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
    # same bytes when packed again later, from a copy with other mtimes
    copy = tmp_path / "elsewhere" / "rel"
    copy.parent.mkdir()
    copy.mkdir()
    for name in (hub.WEIGHTS, hub.CONFIG, hub.CHECKSUMS):
        (copy / name).write_bytes((directory / name).read_bytes())
    assert hub.publish(copy, name="et-tiny")[1].sha256 == entry.sha256
    # the entry, with the URL where the archive is hosted, downloads the same release
    server.files["/a.tar.gz"] = archive.read_bytes()
    hosted = hub.RegistryEntry.from_dict({**entry.to_dict(), "url": server.url("/a.tar.gz")})
    registry = write_registry(tmp_path / "registry.json", hosted)
    assert hub.load_registry(registry) == {"et-tiny": hosted}
    assert main(["download", "et-tiny", "--registry", str(registry), "--no-progress"]) == 0
    out = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert same_files(out, directory)
    # the default URL is the archive's own file:// URL, which downloads too
    local = hub.publish(directory)[1]
    assert local.url == archive.resolve().as_uri()
    assert hub.download(local.url, sha256=local.sha256, progress=False) == out


def test_local_directory_is_verified_in_place(tmp_path):
    directory = make_release(tmp_path / "rel")
    assert hub.load_pretrained(directory) == directory.resolve()
    weights = bytearray((directory / hub.WEIGHTS).read_bytes())
    weights[-1] ^= 1
    (directory / hub.WEIGHTS).write_bytes(bytes(weights))
    with pytest.raises(hub.ChecksumError, match=r"model\.safetensors has sha256"):
        hub.load_pretrained(directory)


def test_damaged_cache_is_fetched_again(server, release):
    url = serve(server, release)
    out = hub.download(url, sha256=release[2].sha256, progress=False)
    (out / hub.CONFIG).write_text("tampered: true\n")
    with pytest.warns(UserWarning, match="damaged"):
        again = hub.download(url, sha256=release[2].sha256, progress=False)
    assert again == out and same_files(out, release[0]) and len(server.requests) == 2


def test_bad_registries_are_rejected(tmp_path, release):
    good = release[2].to_dict()
    cases = {
        "not json": "{",
        "no list": json.dumps({"schema_version": 1}),
        "future": json.dumps({"schema_version": 99, "releases": []}),
        "short sha": json.dumps({"schema_version": 1, "releases": [{**good, "sha256": "ab"}]}),
        "ftp": json.dumps({"schema_version": 1, "releases": [{**good, "url": "ftp://x/y"}]}),
        "slash": json.dumps({"schema_version": 1, "releases": [{**good, "name": "a/b"}]}),
        "twice": json.dumps({"schema_version": 1, "releases": [good, good]}),
    }
    for label, text in cases.items():
        with pytest.raises(hub.HubError):
            hub.parse_registry(text, label)
    with pytest.raises(hub.HubError, match="not a release in the registry"):
        hub.download("no-such-release")


def test_relative_url_in_a_local_registry_resolves_beside_it(release, tmp_path):
    """A release shipped next to its registry (as the package ships et-small-ead)."""
    folder = tmp_path / "pkg"
    (folder / "releases").mkdir(parents=True)
    (folder / "releases" / "et-tiny.tar.gz").write_bytes(release[1])
    doc = {
        "schema_version": 1,
        "releases": [{**release[2].to_dict(), "url": "releases/et-tiny.tar.gz"}],
    }
    (folder / "registry.json").write_text(json.dumps(doc))
    entries = hub.load_registry(folder / "registry.json")
    assert entries["et-tiny"].url == (folder / "releases" / "et-tiny.tar.gz").as_uri()
    out = hub.load_pretrained("et-tiny", registry=folder / "registry.json", progress=False)
    assert same_files(out, release[0])
    with pytest.raises(hub.HubError, match="absolute"):
        hub.parse_registry(json.dumps(doc), "a registry from a URL")  # no folder to resolve in


def test_shipped_registry_has_only_real_releases(tmp_path):
    """Every shipped entry is a real, verifiable release: hosted (https) or shipped in the
    package beside the registry (a relative url), and the shipped foundation loads and embeds."""
    doc = json.loads(SHIPPED.read_text())
    assert doc["schema_version"] == hub.REGISTRY_SCHEMA and isinstance(doc["comment"], str)
    entries = hub.load_registry()
    assert len(entries) == len(doc["releases"]) and "et-small-ead" in entries
    for raw, entry in zip(doc["releases"], entries.values(), strict=True):
        if raw["url"].startswith("https://"):
            assert not re.search(r"example\.(com|org)|placeholder|todo|xxx", entry.url, re.I)
        else:  # shipped in the package
            shipped = SHIPPED.parent / raw["url"]
            assert entry.url == shipped.resolve().as_uri() and shipped.is_file()
            assert shipped.stat().st_size == entry.size
            assert hashlib.sha256(shipped.read_bytes()).hexdigest() == entry.sha256
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256) and len(set(entry.sha256)) > 4
        assert entry.size > 0 and {"name", "hash", "dim"} <= set(entry.descriptor)
    path = hub.load_pretrained("et-small-ead", progress=False)  # offline: from the package
    config = yaml.safe_load((path / hub.CONFIG).read_text())
    assert config["descriptor"]["hash"] == entries["et-small-ead"].descriptor["hash"]
    assert config["training"]["steps"] == 1500 and config["training"]["heldout_r2_median"] > 0.9
    from ase.build import bulk

    import fmpretrain

    model = fmpretrain.load("et-small-ead")
    embedding = model.embed([bulk("Cu", "fcc", a=3.6), bulk("NaCl", "rocksalt", a=5.64)])
    assert embedding.shape == (2, 128) and np.isfinite(embedding).all()
    assert not np.allclose(embedding[0], embedding[1])


def test_offline_mode_uses_the_cache_only(server, release, monkeypatch):
    url = serve(server, release)
    monkeypatch.setenv(hub.OFFLINE_ENV, "1")
    with pytest.raises(hub.HubError, match="not in the cache"):
        hub.download(url, sha256=release[2].sha256)
    assert server.requests == []
    monkeypatch.delenv(hub.OFFLINE_ENV)
    out = hub.download(url, sha256=release[2].sha256, progress=False)
    monkeypatch.setenv(hub.OFFLINE_ENV, "1")
    assert hub.download(url, sha256=release[2].sha256) == out
