"""fmpretrain.download against a real HTTP server on 127.0.0.1: cache hits, resume, refusals,
trust on first use, and that nothing truncated is ever cached (MatBench files included)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from fmpretrain import download
from fmpretrain.download import DownloadError, IntegrityError, fetch, read_record, record_path
from tests.fileserver import FileServer, alexandria_json_bz2, cdvae_csv, mptrj_json


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _no_proxy_no_wait(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(download, "RETRY_DELAY_S", 0.0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def listing(folder: Path) -> list[str]:
    """Files in a cache folder, lock files aside."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


FORMATS = {
    "/mp_20/train.csv": cdvae_csv,
    "/alexandria_000.json.bz2": alexandria_json_bz2,
    "/MPtrj_2022.9_full.json": mptrj_json,
}


# ------------------------------------------------------------------------------ basics
@pytest.mark.parametrize("path", list(FORMATS))
def test_cache_hit_makes_no_second_request(server, tmp_path, path):
    data = FORMATS[path]()
    server.files[path] = data
    dest = tmp_path / "c" / Path(path).name
    assert fetch(server.url(path), dest, record=True, progress=False) == dest
    assert dest.read_bytes() == data and server.paths() == [path]
    assert read_record(dest)["sha256"] == sha(data) and read_record(dest)["pinned"] is False
    assert fetch(server.url(path), dest, record=True, progress=False) == dest
    assert fetch(server.url(path), dest, sha256=sha(data), record=True) == dest
    assert server.paths() == [path], "a cached file must not be requested again"
    assert listing(dest.parent) == sorted([dest.name, record_path(dest).name])


def test_dropped_connection_resumes_with_range(server, tmp_path):
    data = alexandria_json_bz2(20)
    server.files["/a.json.bz2"] = data
    server.drop_after = 300
    dest = fetch(
        server.url("/a.json.bz2"), tmp_path / "a.json.bz2", sha256=sha(data), size=len(data)
    )
    assert [r["range"] for r in server.requests] == [None, "bytes=300-"]
    assert sha(dest.read_bytes()) == sha(data)
    assert listing(tmp_path) == ["a.json.bz2"]


def test_interrupted_download_resumes_in_a_later_call(server, tmp_path):
    data = mptrj_json(4)
    server.files["/m.json"] = data
    server.drop_after = 500
    dest = tmp_path / "m.json"
    with pytest.raises(DownloadError, match="resume"):
        fetch(server.url("/m.json"), dest, record=True, retries=0, progress=False)
    assert not dest.exists() and (tmp_path / "m.json.part").stat().st_size == 500
    fetch(server.url("/m.json"), dest, record=True, progress=False)
    assert server.requests[-1]["range"] == "bytes=500-"
    assert dest.read_bytes() == data and read_record(dest)["sha256"] == sha(data)
    assert listing(tmp_path) == ["m.json", "m.json.sha256.json"]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    data = cdvae_csv(5)
    server.files["/t.csv"] = data
    server.drop_after, server.ignore_range = 200, True
    dest = fetch(server.url("/t.csv"), tmp_path / "t.csv", sha256=sha(data))
    assert dest.read_bytes() == data
    assert [r["range"] for r in server.requests] == [None, "bytes=200-"]


# ------------------------------------------------------------------------------ refusals
def test_size_mismatch_is_refused_before_the_body(server, tmp_path):
    data = cdvae_csv()
    server.files["/t.csv"] = data
    with pytest.raises(IntegrityError, match=f"expected {len(data) + 1}") as info:
        fetch(server.url("/t.csv"), tmp_path / "t.csv", size=len(data) + 1, progress=False)
    assert info.value.what == "size" and info.value.actual == len(data)
    assert listing(tmp_path) == [] and len(server.requests) == 1, "a size error is not retried"


def test_sha256_mismatch_is_refused_and_deleted(server, tmp_path):
    data = cdvae_csv()
    server.files["/t.csv"] = data
    wrong = sha(data + b"x")
    with pytest.raises(IntegrityError, match=r"sha256 mismatch .* deleted") as info:
        fetch(server.url("/t.csv"), tmp_path / "t.csv", sha256=wrong, record=True)
    assert info.value.expected == wrong and info.value.actual == sha(data)
    assert listing(tmp_path) == []


def test_unpinned_first_download_records_and_a_changed_file_is_refused(server, tmp_path, caplog):
    data = mptrj_json()
    server.files["/m.json"] = data
    dest = tmp_path / "m.json"
    with caplog.at_level(logging.WARNING, logger="fmpretrain.download"):
        fetch(server.url("/m.json"), dest, record=True, progress=False)
    assert "recorded sha256" in caplog.text and sha(data) in caplog.text
    assert json.loads(record_path(dest).read_text())["sha256"] == sha(data)
    dest.unlink()  # gone from the cache; the server now has other bytes
    server.files["/m.json"] = mptrj_json(3)
    with pytest.raises(IntegrityError, match=r"recorded .* on the first download"):
        fetch(server.url("/m.json"), dest, record=True, progress=False)
    assert listing(tmp_path) == ["m.json.sha256.json"]
    server.files["/m.json"] = data  # the original bytes are accepted again
    assert fetch(server.url("/m.json"), dest, record=True).read_bytes() == data


def test_damaged_cached_file_is_fetched_again(server, tmp_path, caplog):
    data = cdvae_csv()
    server.files["/t.csv"] = data
    dest = fetch(server.url("/t.csv"), tmp_path / "t.csv", record=True)
    dest.write_bytes(data[:-10])  # truncated behind our back
    with caplog.at_level(logging.WARNING, logger="fmpretrain.download"):
        assert fetch(server.url("/t.csv"), dest, record=True).read_bytes() == data
    assert "damaged" in caplog.text and len(server.requests) == 2


def test_http_error_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server.url("/missing.csv"), tmp_path / "x.csv", progress=False)
    assert len(server.requests) == 1 and listing(tmp_path) == []


@pytest.mark.parametrize("how", ["short", "unsized"])
def test_truncated_compressed_body_is_never_cached(server, tmp_path, how):
    """A body cut short that HTTP cannot see (a short but self-consistent response, or one
    without Content-Length) is caught by reading the bzip2 stream to its end."""
    data = alexandria_json_bz2(10)
    server.files["/a.json.bz2"] = data
    setattr(server, f"{how}_once", len(data) // 2)
    dest = tmp_path / "a.json.bz2"
    with pytest.raises(DownloadError, match="not a usable file"):
        fetch(server.url("/a.json.bz2"), dest, record=True, progress=False)
    assert listing(tmp_path) == []
    assert fetch(server.url("/a.json.bz2"), dest, record=True).read_bytes() == data


def test_offline_never_touches_the_network(server, tmp_path):
    server.files["/t.csv"] = cdvae_csv()
    with pytest.raises(DownloadError, match="offline"):
        fetch(server.url("/t.csv"), tmp_path / "t.csv", offline=True)
    assert server.requests == []


# ------------------------------------------------------------------------------ local sources
def test_file_urls_and_plain_paths(tmp_path):
    source = tmp_path / "src" / "train.csv"
    source.parent.mkdir()
    data = cdvae_csv()
    source.write_bytes(data)
    a = fetch(source.as_uri(), tmp_path / "a" / "train.csv", sha256=sha(data), progress=False)
    b = fetch(str(source), tmp_path / "b" / "train.csv", size=len(data), progress=False)
    assert a.read_bytes() == b.read_bytes() == data
    with pytest.raises(IntegrityError):
        fetch(str(source), tmp_path / "c" / "train.csv", sha256=sha(b"other"), progress=False)
    with pytest.raises(DownloadError, match="no such file"):
        fetch(str(tmp_path / "nope.csv"), tmp_path / "d" / "x.csv", progress=False)
    assert not (tmp_path / "c" / "train.csv").exists()


# ------------------------------------------------------------------------------ MatBench
def _matbench_bytes(tmp_path: Path) -> bytes:
    from fmpretrain.io import write_structures
    from fmpretrain.structures import Structure

    structures = [
        Structure(
            [29], [[0, 0, 0]], np.eye(3) * (2.5 + 0.05 * i), True, f"mb-{i}", {"gap": 0.1 * i}
        )
        for i in range(40)
    ]
    path = tmp_path / "served.json.gz"
    write_structures(path, structures)
    return path.read_bytes()


@pytest.mark.parametrize("how", ["short", "unsized", "drop"])
def test_matbench_download_never_caches_a_truncated_file(server, tmp_path, monkeypatch, how):
    from fmpretrain.finetune.tasks import DatasetUnavailableError, load_task, matbench_file

    data = _matbench_bytes(tmp_path)
    server.files["/matbench_tiny.json.gz"] = data
    cache, base = tmp_path / "cache", server.url("")
    folder = cache / "matbench"
    if how == "drop":  # the connection drops mid-body: resumed within the call
        server.drop_after = len(data) // 3
        file = matbench_file("matbench_tiny", cache=cache, url_base=base)
        assert [r["range"] for r in server.requests] == [None, f"bytes={len(data) // 3}-"]
    else:  # the server sends a cut-off file once: refused, nothing cached, the retry works
        setattr(server, f"{how}_once", len(data) // 2)
        with pytest.raises(DatasetUnavailableError, match="--data"):
            matbench_file("matbench_tiny", cache=cache, url_base=base)
        assert listing(folder) == []
        file = matbench_file("matbench_tiny", cache=cache, url_base=base)
    assert file.read_bytes() == data
    assert listing(folder) == ["matbench_tiny.json.gz", "matbench_tiny.json.gz.sha256.json"]
    n = len(server.requests)
    dataset, spec = load_task("matbench_tiny", cache=cache, url_base=base)
    assert len(server.requests) == n and len(dataset) == 40 and spec.target == "gap"


def test_matbench_truncated_file_from_an_older_cache_is_replaced(server, tmp_path):
    from fmpretrain.finetune.tasks import matbench_file

    data = _matbench_bytes(tmp_path)
    server.files["/matbench_tiny.json.gz"] = data
    folder = tmp_path / "cache" / "matbench"
    folder.mkdir(parents=True)
    (folder / "matbench_tiny.json.gz").write_bytes(data[: len(data) // 2])  # no record
    file = matbench_file("matbench_tiny", cache=tmp_path / "cache", url_base=server.url(""))
    assert file.read_bytes() == data and len(server.requests) == 1
