"""The featurization job end to end on a real local Ray cluster."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import write

from data_pipeline.config import load_config
from data_pipeline.driver import ConfigMismatchError, run_featurize
from fmpretrain.cli import main as cli_main
from fmpretrain.data.format import read_shard
from fmpretrain.data.manifest import Manifest, verify_shards
from fmpretrain.descriptors import get_descriptor
from fmpretrain.generate import generate_structure
from fmpretrain.io import write_structures
from fmpretrain.structures import Structure

pytestmark = pytest.mark.slow
REPO = Path(__file__).parents[2]
DEMO = REPO / "configs" / "featurize" / "demo.yaml"


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


@contextlib.contextmanager
def job_process(args: list[str], **popen) -> Iterator[subprocess.Popen]:
    """Run the job in its own session; afterwards kill whatever of that session is left (the
    local Ray processes of a driver killed by a test)."""
    proc = subprocess.Popen(args, cwd=REPO, start_new_session=True, **popen)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def job_args(out: Path, *overrides: str) -> list[str]:
    """The featurization job's command line (``python -m data_pipeline``) on the demo config."""
    args = [sys.executable, "-m", "data_pipeline", "--config", str(DEMO), "--no-progress"]
    return [*args, *overrides, f"out={out}"]


def wait_for_parts(out: Path, proc: subprocess.Popen, count: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while len(list((out / "parts").glob("shard-*.json"))) < count:
        assert proc.poll() is None, "the job ended before the fault could be injected"
        assert time.monotonic() < deadline, "no shard appeared in time"
        time.sleep(0.2)


def featurize(out: Path, *overrides: str, progress: bool = False):
    cfg = load_config(DEMO, [f"out={out}", *overrides])
    return run_featurize(cfg, progress=progress)


def decoded(out: Path) -> dict[str, dict]:
    """Every sample of a shard directory, by key, as plain arrays."""
    samples = {}
    for path in Manifest.load(out).shard_paths(out):
        for s in read_shard(path):
            assert s.key not in samples, f"duplicate sample {s.key}"
            samples[s.key] = {
                "numbers": s.numbers,
                "positions": s.positions,
                "cell": s.cell,
                "fingerprint": s.fingerprint,
                "id": s.meta["id"],
            }
    return samples


def test_end_to_end_500_structures_two_workers(tmp_path, ray_cluster):
    args = ("descriptor=ead", "source.n=500", "source.max_atoms=24", "chunk_size=50")
    result = featurize(tmp_path / "two", *args, "workers=2")
    m = Manifest.load(tmp_path / "two")
    d = get_descriptor("ead")

    assert m.complete and result.new_shards == 10 and result.reused_shards == 0
    assert m.descriptor == d.config() and m.descriptor_hash == d.hash
    assert m.dim == d.dim and m.feature_names == d.feature_names
    assert m.fingerprint_dtype == "float32" and m.chunk_size == 50 and m.n_chunks == 10
    assert m.source == {
        "sources": [
            {
                "label": "generated",
                "kind": "generated",
                "n": 500,
                "seed": 0,
                "min_atoms": 1,
                "max_atoms": 24,
            }
        ],
        "dedupe": False,
    }
    assert m.source_counts() == {
        "generated": {
            "inputs": 500,
            "accepted": m.n_samples,
            "rejected": m.n_rejected,
            "atoms": sum(s.n_atoms for s in m.shards),
        }
    }
    assert {"python", "fmpretrain", "torch", "ray"} <= set(m.versions)
    assert m.n_inputs == 500 == m.n_samples + m.n_rejected
    assert [s.name for s in sorted(m.shards, key=lambda s: s.index)] == [
        f"shard-{k:06d}.tar" for k in range(10)
    ]
    assert verify_shards(tmp_path / "two") == []

    samples = decoded(tmp_path / "two")
    assert len(samples) == m.n_samples
    for k in (0, 123, 499):  # spot-check against a direct computation
        sample = samples.get(f"s{k:010d}")
        if sample is None:
            continue
        s = generate_structure(k, seed=0, max_atoms=24)
        assert sample["id"] == s.id
        np.testing.assert_array_equal(sample["numbers"], s.numbers)
        np.testing.assert_allclose(sample["fingerprint"], d(s).numpy(), rtol=1e-6, atol=1e-6)
    fps = np.concatenate([v["fingerprint"] for v in samples.values()]).astype(np.float64)
    stats = m.statistics()
    assert stats.count == len(fps) == sum(s.n_atoms for s in m.shards)
    np.testing.assert_allclose(stats.mean, fps.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats.std, fps.std(0), rtol=1e-7, atol=1e-12)
    saved = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert saved["counts"] == {
        "inputs": 500,
        "accepted": m.n_samples,
        "rejected": m.n_rejected,
        "atoms": stats.count,
        "sources": {
            "generated": {
                "inputs": 500,
                "accepted": m.n_samples,
                "rejected": m.n_rejected,
                "atoms": stats.count,
            }
        },
    }
    np.testing.assert_allclose(saved["statistics"]["std"], stats.std)

    featurize(tmp_path / "one", *args, "workers=1")
    one = decoded(tmp_path / "one")
    assert one.keys() == samples.keys()
    for key, value in samples.items():
        for field in ("numbers", "positions", "cell", "fingerprint"):
            np.testing.assert_array_equal(one[key][field], value[field])
    assert Manifest.load(tmp_path / "one").statistics().mean.tolist() == stats.mean.tolist()


def test_rerun_resumes_and_config_change_is_refused(tmp_path, ray_cluster):
    args = ("descriptor=ead", "source.n=60", "source.max_atoms=16", "chunk_size=20")
    featurize(tmp_path, *args)
    again = featurize(tmp_path, *args)
    assert again.reused_shards == 3 and again.new_shards == 0

    (tmp_path / "shard-000001.tar").write_bytes(b"garbage")  # a damaged shard is redone
    again = featurize(tmp_path, *args)
    assert again.reused_shards == 2 and again.new_shards == 1
    assert verify_shards(tmp_path) == []

    with pytest.raises(ConfigMismatchError, match="descriptor"):
        featurize(tmp_path, *args, "descriptor_params={cutoff: 5.0}")
    with pytest.raises(ConfigMismatchError, match="source"):
        featurize(tmp_path, *args[:1], "source.n=80", *args[2:])
    redone = featurize(tmp_path, *args, "descriptor_params={cutoff: 5.0}", "overwrite=true")
    assert redone.reused_shards == 0 and redone.new_shards == 3
    assert Manifest.load(tmp_path).descriptor["params"]["cutoff"] == 5.0


def test_bad_inputs_become_rejects_with_reasons(tmp_path, ray_cluster):
    src = tmp_path / "src"
    src.mkdir()
    good = [Structure.from_ase(bulk("Cu", "fcc", a=3.6), id=f"good-{k}") for k in range(3)]
    write_structures(src / "a_good.extxyz", good)
    nan = Atoms("Cu2", positions=[[0, 0, 0], [np.nan, 1, 1]], cell=np.eye(3) * 4, pbc=True)
    write(src / "b_nan.xyz", nan, format="extxyz")
    overlap = Atoms("Cu2", positions=[[0, 0, 0], [0.1, 0, 0]], cell=np.eye(3) * 4, pbc=True)
    write(src / "c_overlap.cif", overlap)
    (src / "d_empty.xyz").write_text("")
    (src / "e_garbage.cif").write_text("this is not a crystal file\n\x00\x01")
    unknown = [
        {
            "structure_id": "element-zero",
            "atomic_numbers": [0, 29],
            "positions": [[0, 0, 0], [1.8, 1.8, 0]],
            "cell": np.eye(3).tolist(),
            "y": 1.0,
        }
    ]
    (src / "f_unknown.json").write_text(json.dumps(unknown))

    result = featurize(
        tmp_path / "out",
        "descriptor=ead",
        "source.kind=files",
        f"source.paths=[{src}]",
        "chunk_size=4",
    )
    m = result.manifest
    assert m.complete and m.n_inputs == 8 and m.n_samples == 3 and m.n_rejected == 5
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").open()]
    assert len(rejects) == 5
    reasons = {Path(r["id"]).name if "/" in r["id"] else r["id"]: r for r in rejects}
    text = json.dumps(rejects)
    assert "non-finite" in text
    assert "closer than the minimum distance" in text
    assert any(r["stage"] == "read" and "d_empty.xyz" in r["id"] for r in rejects)
    assert any(r["stage"] == "read" and "e_garbage.cif" in r["id"] for r in rejects)
    assert reasons["element-zero"]["stage"] == "validate"
    assert "unknown element" in reasons["element-zero"]["reason"]
    assert all(r["reason"] for r in rejects)
    ids = {v["id"] for v in decoded(tmp_path / "out").values()}
    assert ids == {"good-0", "good-1", "good-2"}


def test_featurization_error_loses_only_that_structure(tmp_path, ray_cluster):
    """A structure the descriptor cannot handle is rejected; the rest of its shard lands."""
    from fmpretrain.descriptors.gmp import GMP

    src = tmp_path / "src"
    src.mkdir()
    structures = [
        Structure.from_ase(bulk("Cu", "fcc", a=3.6), id="cu"),
        Structure.from_ase(bulk("NaCl", "rocksalt", a=5.6), id="nacl"),
        Structure.from_ase(bulk("Al", "fcc", a=4.05), id="al"),
    ]
    write_structures(src / "s.extxyz", structures)
    limited = write_limited_densities(tmp_path / "densities", ["Cu", "Al"])
    result = featurize(
        tmp_path / "out",
        "descriptor=gmp",
        f"descriptor_params={{{limited}}}",
        "source.kind=files",
        f"source.paths=[{src}]",
        "chunk_size=10",
    )
    assert isinstance(get_descriptor("gmp"), GMP)
    m = result.manifest
    assert m.complete and m.n_samples == 2 and m.n_rejected == 1
    [reject] = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").open()]
    assert reject["id"] == "nacl" and reject["stage"] == "featurize"
    assert {v["id"] for v in decoded(tmp_path / "out").values()} == {"cu", "al"}


def write_limited_densities(folder: Path, elements: list[str]) -> str:
    """GMP pseudo-densities for some elements only; returns the descriptor_params entry."""
    from ase.data import atomic_numbers

    from fmpretrain.descriptors.gmp_densities import covalent_densities, write_gpsp

    folder.mkdir(parents=True, exist_ok=True)
    table = covalent_densities().gaussians
    numbers = [atomic_numbers[e] for e in elements]
    write_gpsp(folder / "limited.gpsp", {z: table[z] for z in numbers})
    return f'densities: "{folder}"'


def test_killed_driver_resumes_with_every_input_once(tmp_path):
    out = tmp_path / "out"
    args = job_args(
        out, "descriptor=wacsf", "source.n=300", "source.max_atoms=48", "chunk_size=10", "workers=2"
    )
    with job_process(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        wait_for_parts(out, proc, 3)
        os.kill(proc.pid, signal.SIGKILL)  # the driver, by its pid
        proc.wait()
    assert not Manifest.load(out).complete
    finished_before = len(list((out / "parts").glob("shard-*.json")))
    assert finished_before < 30

    rerun = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming" in rerun.stderr  # a progress log record
    m = Manifest.load(out)
    assert m.complete and m.n_inputs == 300
    keys = list(decoded(out))
    rejected = [json.loads(line)["input"] for line in (out / "rejects.jsonl").open()]
    seen = sorted([int(k[1:]) for k in keys] + rejected)
    assert seen == list(range(300))  # every input exactly once: as a sample or as a reject
    assert verify_shards(out) == []


def test_verify_catches_corruption(tmp_path, ray_cluster, capsys):
    out = tmp_path / "out"
    featurize(out, "descriptor=ead", "source.n=30", "source.max_atoms=8", "chunk_size=10")
    assert cli_main(["shards", "verify", str(out)]) == 0
    shard = out / "shard-000001.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF  # one flipped bit in the payload
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert cli_main(["shards", "verify", str(out)]) == 1
    report = capsys.readouterr().out
    assert "shard-000001.tar: sha256" in report and "FAILED" in report
    (out / "shard-000002.tar").unlink()
    assert any("shard-000002.tar: missing" in p for p in verify_shards(out))


def test_killed_worker_is_replaced_and_its_chunk_redone(tmp_path):
    import psutil

    out = tmp_path / "out"
    args = job_args(
        out, "descriptor=wacsf", "source.n=200", "source.max_atoms=48", "chunk_size=10", "workers=2"
    )
    popen = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with job_process(args, **popen) as proc:
        wait_for_parts(out, proc, 1)
        victim = None
        deadline = time.monotonic() + 60
        while victim is None and time.monotonic() < deadline:
            # a worker in a chunk (Ray titles it ray::ChunkFeaturizer.run); one still in
            # __init__ would just be restarted by Ray, with no chunk of its own to redo
            running = [
                p
                for p in psutil.Process(proc.pid).children(recursive=True)
                if "ChunkFeaturizer.run" in " ".join(p.cmdline())
            ]
            victim = running[0] if running else time.sleep(0.05)
        assert victim is not None, "no worker was seen running a chunk"
        victim.kill()  # a worker dies mid-chunk, as on a lost node
        output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    assert "worker died" in output and "retrying" in output, output[-3000:]
    m = Manifest.load(out)
    assert m.complete and m.n_inputs == 200
    rejected = [json.loads(line)["input"] for line in (out / "rejects.jsonl").open()]
    assert sorted([int(k[1:]) for k in decoded(out)] + rejected) == list(range(200))


def test_mixed_sources_counted_per_source_and_deduped(tmp_path, ray_cluster):
    """Generated + files in one job: per-source counts, globally unique keys, and with
    dedupe=true every repeat (within a file and across sources) is a counted reject."""
    src = tmp_path / "src"
    src.mkdir()
    cu = Structure.from_ase(bulk("Cu", "fcc", a=3.6), id="cu")
    shuffled = Structure.from_ase(bulk("Cu", "fcc", a=3.6, cubic=True), id="cu-cubic")
    reordered = shuffled.copy()
    reordered.id = "cu-cubic-reordered"
    order = [3, 1, 0, 2]
    reordered.numbers = reordered.numbers[order]
    reordered.positions = reordered.positions[order] + reordered.cell[0]  # another image
    generated = generate_structure(4, seed=0, min_atoms=1, max_atoms=12)
    generated.id = "copy-of-generated-4"
    write_structures(src / "a.extxyz", [cu, shuffled, reordered, generated])
    config = tmp_path / "mixed.yaml"
    config.write_text(
        "descriptor: ead\nchunk_size: 4\nworkers: 2\nsources:\n"
        "  - {kind: generated, n: 10, max_atoms: 12}\n"
        f"  - {{kind: files, paths: ['{src}'], label: mine}}\n"
    )

    def run(out: Path, *extra: str):
        cfg = load_config(config, [f"out={out}", *extra])
        return run_featurize(cfg, progress=False).manifest

    m = run(tmp_path / "plain")
    assert m.complete and m.n_inputs == 14 and m.n_rejected == 0
    counts = m.source_counts()
    assert list(counts) == ["generated", "mine"]
    assert counts["generated"]["inputs"] == 10 and counts["mine"]["inputs"] == 4
    samples = decoded(tmp_path / "plain")
    assert sorted(samples) == [f"s{i:010d}" for i in range(14)]
    assert samples["s0000000010"]["id"] == "cu"  # files follow the generated inputs

    m = run(tmp_path / "dedupe", "dedupe=true")
    assert m.n_inputs == 14 and m.n_rejected == 2
    assert m.source_counts()["mine"] == {
        "inputs": 4,
        "accepted": 2,
        "rejected": 2,
        "atoms": 1 + 4,
    }
    rejects = [json.loads(line) for line in (tmp_path / "dedupe" / "rejects.jsonl").open()]
    by_id = {r["id"]: r for r in rejects}
    assert set(by_id) == {"cu-cubic-reordered", "copy-of-generated-4"}
    assert all(r["stage"] == "dedupe" for r in rejects)
    assert "'cu-cubic'" in by_id["cu-cubic-reordered"]["reason"]
    assert "duplicate of 'gen-0-00000004'" in by_id["copy-of-generated-4"]["reason"]

    # Resuming after losing a shard dedupes exactly as the uninterrupted job did.
    (tmp_path / "dedupe" / "parts" / "shard-000003.json").unlink()
    again = run(tmp_path / "dedupe", "dedupe=true")
    assert again.n_rejected == 2 and decoded(tmp_path / "dedupe").keys() == {
        k for k in samples if k not in ("s0000000012", "s0000000013")
    }
