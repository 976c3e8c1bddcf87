"""The corpus registry: well-formed real entries, shipped copies offline, and downloads of
each real format from a real HTTP server on 127.0.0.1 (pinned, unpinned, resumed, cached)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import re
import tarfile
import urllib.parse

import pytest

from fmpretrain import corpora, download
from fmpretrain.cli import main
from fmpretrain.corpora import (
    CORPORA,
    FORMATS,
    Corpus,
    CorpusError,
    CorpusFile,
    corpus_files,
    corpus_read_options,
)
from fmpretrain.download import DownloadError, IntegrityError, read_record
from tests.fileserver import FileServer, alexandria_json_bz2, cdvae_csv, mptrj_json


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv(corpora.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(corpora.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(download, "RETRY_DELAY_S", 0.0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


MAKERS = {
    "cdvae-csv": ("train.csv", cdvae_csv),
    "alexandria-json": ("alexandria_000.json.bz2", alexandria_json_bz2),
    "mptrj-json": ("MPtrj_2022.9_full.json", mptrj_json),
}


def served_corpus(server: FileServer, fmt: str, *, pinned: bool = False) -> tuple[Corpus, bytes]:
    """A one-file corpus of format ``fmt`` hosted on the local server."""
    filename, make = MAKERS[fmt]
    data = make()
    server.files[f"/{fmt}/{filename}"] = data
    file = CorpusFile(
        server.url(f"/{fmt}/{filename}"),
        filename,
        sha(data) if pinned else None,
        len(data) if pinned else None,
    )
    entry = Corpus(f"local-{fmt}", fmt, (file,), "CC-BY-4.0", "test data", "served locally")
    return entry, data


# ------------------------------------------------------------------------------ registry
def test_registry_entries_are_well_formed():
    assert {"mp_20", "perov_5", "carbon_24", "mpts_52", "mptrj", "perov_5-test"} <= set(CORPORA)
    assert any(e.format == "alexandria-json" and len(e.files) >= 3 for e in CORPORA.values())
    assert any(e.format == "aselmdb-tar" for e in CORPORA.values())
    for name, entry in CORPORA.items():
        assert entry.name == name and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name)
        assert entry.format in FORMATS, entry
        assert entry.licence and entry.citation and entry.description, entry
        assert entry.files and len({f.filename for f in entry.files}) == len(entry.files)
        for file in entry.files:
            parts = urllib.parse.urlsplit(file.url)
            assert parts.scheme == "https" and parts.netloc, file
            assert not re.search(r"example\.(com|org)|placeholder|todo|xxx", file.url, re.I)
            assert "/" not in file.filename and file.filename
            if file.sha256 is not None:
                assert re.fullmatch(r"[0-9a-f]{64}", file.sha256) and file.size > 0
        assert entry.pinned == all(f.sha256 for f in entry.files)
        if entry.n_structures is not None:
            assert entry.n_structures > 0
    cdvae = CORPORA["mp_20"].urls
    assert cdvae == tuple(
        f"https://raw.githubusercontent.com/txie-93/cdvae/main/data/mp_20/{s}.csv"
        for s in ("train", "val", "test")
    )
    assert CORPORA["mpts_52"].urls[0].startswith("https://raw.githubusercontent.com/jiaor17/")
    assert CORPORA["mptrj"].urls == ("https://figshare.com/ndownloader/files/41619375",)
    assert CORPORA["alexandria-pbe"].urls[0].startswith("https://alexandria.icams.rub.de/")


def test_read_options_follow_the_format():
    assert corpus_read_options("mp_20") == {"format": "cdvae"}
    assert corpus_read_options("mptrj") == {"format": "json", "frames": "all"}
    assert corpus_read_options("omat24-val") == {"format": "aselmdb"}
    odd = dataclasses.replace(CORPORA["mp_20"], format="weird")
    with pytest.raises(CorpusError, match="unknown format 'weird'"):
        corpus_read_options(odd)
    with pytest.raises(CorpusError, match="unknown corpus 'nope'"):
        corpus_files("nope")


@pytest.mark.parametrize("name", ["perov_5-test", "carbon_24-test"])
def test_shipped_corpora_work_offline(name, monkeypatch, server):
    from fmpretrain.io import read_structures

    entry = CORPORA[name]
    shipped = corpora.PACKAGE_DIR / entry.shipped
    if not shipped.is_file():
        pytest.skip(f"{shipped} is not in this checkout")
    monkeypatch.setenv(corpora.OFFLINE_ENV, "1")
    (path,) = corpus_files(name)
    assert path == shipped and entry.pinned
    first = next(read_structures(path, **corpus_read_options(name)))
    assert len(first) > 0 and first.properties


def test_missing_shipped_copy_falls_back_to_the_pinned_download(server, tmp_path):
    data = cdvae_csv()
    server.files["/perov_5/test.csv"] = data
    file = CorpusFile(server.url("/perov_5/test.csv"), "test.csv", sha(data), len(data))
    entry = dataclasses.replace(
        CORPORA["perov_5-test"], files=(file,), shipped="finetune/datasets/absent.csv.gz"
    )
    (path,) = corpus_files(entry, tmp_path / "c")
    assert path == tmp_path / "c" / "corpora" / "perov_5-test" / "test.csv"
    assert path.read_bytes() == data


# ------------------------------------------------------------------------------ downloads
@pytest.mark.parametrize("fmt", list(MAKERS))
def test_each_real_format_downloads_once_then_hits_the_cache(server, tmp_path, fmt):
    entry, data = served_corpus(server, fmt)
    (path,) = corpus_files(entry, progress=False)
    assert path == tmp_path / "cache" / "corpora" / entry.name / MAKERS[fmt][0]
    assert path.read_bytes() == data and read_record(path)["sha256"] == sha(data)
    assert corpus_files(entry) == [path]
    assert len(server.requests) == 1, "the second call must not ask the server"
    assert corpus_read_options(entry)["format"] in ("cdvae", "json")


def test_cdvae_corpus_reads_as_structures(server):
    from fmpretrain.io import read_structures

    entry, _ = served_corpus(server, "cdvae-csv")
    (path,) = corpus_files(entry, progress=False)
    structures = list(read_structures(path, **corpus_read_options(entry)))
    assert [s.id for s in structures] == ["mp-1000", "mp-1001", "mp-1002"]
    assert sorted(structures[0].numbers.tolist()) == [8, 8, 8, 22, 38]


def test_files_come_back_in_registry_order(server, tmp_path):
    files = []
    for k in (2, 0, 1):
        data = alexandria_json_bz2(k + 1)
        server.files[f"/alexandria_{k:03d}.json.bz2"] = data
        files.append(
            CorpusFile(server.url(f"/alexandria_{k:03d}.json.bz2"), f"alexandria_{k:03d}.json.bz2")
        )
    entry = Corpus("shards", "alexandria-json", tuple(files), "CC-BY-4.0", "c", "d")
    paths = corpus_files(entry, tmp_path / "c", progress=False)
    assert [p.name for p in paths] == [f.filename for f in files]


def test_pinned_corpus_refuses_a_changed_file(server, tmp_path):
    entry, _ = served_corpus(server, "alexandria-json", pinned=True)
    (file,) = entry.files
    changed = alexandria_json_bz2(4)
    server.files[urllib.parse.urlsplit(file.url).path] = changed
    bad = dataclasses.replace(entry, files=(dataclasses.replace(file, size=len(changed)),))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        corpus_files(bad, progress=False)
    with pytest.raises(IntegrityError, match="expected"):  # the size catches it first
        corpus_files(entry, progress=False)
    folder = tmp_path / "cache" / "corpora" / entry.name
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".lock")] == []


def test_unpinned_corpus_records_its_sha256_then_refuses_a_change(server, tmp_path, caplog):
    entry, data = served_corpus(server, "mptrj-json")
    with caplog.at_level(logging.WARNING, logger="fmpretrain.download"):
        (path,) = corpus_files(entry, progress=False)
    assert "no published sha256; recorded sha256 " + sha(data) in caplog.text
    record = json.loads(path.with_name(path.name + ".sha256.json").read_text())
    assert record["sha256"] == sha(data) and record["size"] == len(data) and not record["pinned"]
    path.unlink()
    server.files[urllib.parse.urlsplit(entry.files[0].url).path] = mptrj_json(5)
    with pytest.raises(IntegrityError, match="first download"):
        corpus_files(entry, progress=False)
    assert not path.exists()


def test_corpus_download_resumes_after_a_dropped_connection(server):
    entry, data = served_corpus(server, "mptrj-json", pinned=True)
    server.drop_after = 400
    (path,) = corpus_files(entry, progress=False)
    assert [r["range"] for r in server.requests] == [None, "bytes=400-"]
    assert sha(path.read_bytes()) == sha(data)


def test_offline_mode_uses_the_cache_only(server, monkeypatch):
    entry, _ = served_corpus(server, "cdvae-csv")
    monkeypatch.setenv(corpora.OFFLINE_ENV, "1")
    with pytest.raises(DownloadError, match="offline"):
        corpus_files(entry)
    assert server.requests == []
    monkeypatch.delenv(corpora.OFFLINE_ENV)
    paths = corpus_files(entry, progress=False)
    monkeypatch.setenv(corpora.OFFLINE_ENV, "1")
    assert corpus_files(entry) == paths and len(server.requests) == 1


# ------------------------------------------------------------------------------ CLI
def test_cli_lists_and_downloads(capsys, server, monkeypatch, tmp_path):
    assert main(["corpora", "list"]) == 0
    out = [re.split(r"\s{2,}", line.strip()) for line in capsys.readouterr().out.splitlines()]
    assert out[0] == ["NAME", "FORMAT", "FILES", "SIZE", "PINNED", "LICENCE"]
    rows = {row[0]: dict(zip(out[0], row, strict=True)) for row in out[1:]}
    assert set(rows) == set(CORPORA)
    assert rows["perov_5-test"]["PINNED"] == "yes" and rows["mp_20"]["PINNED"] == "no"
    assert rows["perov_5"]["PINNED"] == "2/3" and rows["perov_5-test"]["SIZE"] == "3.7 MB"
    assert rows["mptrj"]["SIZE"] == "~11.3 GB" and rows["mp_20"]["SIZE"] == "?"
    assert rows["alexandria-pbe"]["LICENCE"] == "CC-BY-4.0"

    entry, data = served_corpus(server, "cdvae-csv")
    monkeypatch.setitem(CORPORA, entry.name, entry)
    assert main(["corpora", "download", entry.name, "--cache", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "cli" / "corpora" / entry.name / "train.csv")]
    assert (tmp_path / "cli" / "corpora" / entry.name / "train.csv").read_bytes() == data
    assert main(["corpora", "download", "no-such-corpus"]) == 2
    assert "unknown corpus" in capsys.readouterr().err


# ------------------------------------------------------------------------------ archives
def _tar_gz(members: dict[str, bytes], kind: str = "file") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _omat_like(server: FileServer, members: dict[str, bytes], kind: str = "file") -> Corpus:
    server.files["/val/rattled-relax.tar.gz"] = _tar_gz(members, kind)
    file = CorpusFile(server.url("/val/rattled-relax.tar.gz"), "rattled-relax.tar.gz")
    return dataclasses.replace(CORPORA["omat24-val"], name="omat-local", files=(file,))


def test_aselmdb_archives_are_extracted_once(server, tmp_path):
    members = {
        "rattled-relax/data.0001.aselmdb": b"db1",
        "rattled-relax/data.0000.aselmdb": b"db0",
        "rattled-relax/data.0000.aselmdb-lock": b"",
    }
    entry = _omat_like(server, members)
    paths = corpus_files(entry, progress=False)
    folder = tmp_path / "cache" / "corpora" / "omat-local" / "rattled-relax.tar.gz.d"
    assert paths == [folder / "rattled-relax" / f"data.000{k}.aselmdb" for k in (0, 1)]
    assert [p.read_bytes() for p in paths] == [b"db0", b"db1"]
    paths[0].write_bytes(b"kept")  # extracted once: a second call neither fetches nor extracts
    assert corpus_files(entry) == paths and paths[0].read_bytes() == b"kept"
    assert len(server.requests) == 1
    assert corpus_read_options(entry) == {"format": "aselmdb"}


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_unsafe_archive_members_are_refused(server, tmp_path, kind):
    name = {"dotdot": "../evil.aselmdb", "absolute": "/tmp/evil.aselmdb"}.get(kind, "x.aselmdb")
    entry = _omat_like(server, {name: b"evil"}, kind)
    with pytest.raises(CorpusError, match="refused"):
        corpus_files(entry, progress=False)
    folder = tmp_path / "cache" / "corpora" / "omat-local"
    assert not (folder / "rattled-relax.tar.gz.d").exists()
    assert not list(folder.glob(".*.tmp")) and not (tmp_path / "evil.aselmdb").exists()
