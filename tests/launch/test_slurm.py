"""The sbatch scripts, submitted to a real Slurm (CI starts a one-node cluster for them)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fmpretrain.data.manifest import Manifest, verify_shards

REPO = Path(__file__).parents[2]
SLURM = REPO / "launch" / "slurm"
TINY_MODEL = "model.hidden_channels=32 model.num_layers=2 model.num_rbf=16 model.num_heads=4"


def _slurm_reason() -> str | None:
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH (start a cluster with launch/slurm/local_cluster.sh start)"
    probe = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.strip():
        return f"sbatch cannot reach a Slurm controller ({probe.stderr.strip()[:200]})"
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_slurm_reason() is not None, reason=str(_slurm_reason())),
]


def submit(script: str, env: dict[str, str], log: Path, *options: str) -> str:
    environment = {**os.environ, "FMP_PYTHON": sys.executable, **env}
    done = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--output={log}",
            f"--chdir={REPO}",
            *options,
            str(SLURM / script),
        ],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().split(";")[0]


def job_field(job: str, field: str) -> str:
    info = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True)
    match = re.search(rf"\b{field}=(\S+)", info.stdout)
    return match.group(1) if match else ""


def wait_for(job: str, states=("COMPLETED",), timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = job_field(job, "JobState")
        if state in states or state in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
            return state
        time.sleep(2)
    raise AssertionError(f"job {job} still {job_field(job, 'JobState')} after {timeout} s")


@pytest.fixture(scope="module")
def sbatch_shards(tmp_path_factory) -> Path:
    """Shards made by featurize.sbatch (itself under test in the next test)."""
    work = tmp_path_factory.mktemp("slurm-featurize")
    out = work / "shards"
    job = submit(
        "featurize.sbatch",
        {
            "FMP_OUT": str(out),
            "FMP_OVERRIDES": "descriptor=ead source.n=120 source.max_atoms=12 chunk_size=10",
        },
        work / "featurize.log",
        "--cpus-per-task=2",
    )
    state = wait_for(job)
    log = (work / "featurize.log").read_text()
    assert state == "COMPLETED", log[-3000:]
    return out


def test_featurize_sbatch(sbatch_shards):
    manifest = Manifest.load(sbatch_shards)
    assert manifest.complete and manifest.n_inputs == 120 and len(manifest.shards) == 12
    assert manifest.descriptor["name"] == "ead"
    assert verify_shards(sbatch_shards) == []


def test_pretrain_sbatch_two_processes(sbatch_shards, tmp_path):
    out = tmp_path / "run"
    job = submit(
        "pretrain.sbatch",
        {
            "FMP_OUT": str(out),
            "FMP_PROCS_PER_NODE": "2",
            "FMP_OVERRIDES": f"data={sbatch_shards} wandb.mode=disabled {TINY_MODEL} "
            "max_steps=12 eval_every=6 checkpoint_every=6 max_atoms_per_batch=96",
        },
        tmp_path / "pretrain.log",
        "--cpus-per-task=2",
    )
    state = wait_for(job)
    log = (tmp_path / "pretrain.log").read_text()
    assert state == "COMPLETED", log[-4000:]
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "finished" and status["step"] == 12
    assert (out / "checkpoints" / "step00000012").is_dir()
    assert "2 process(es)" in log


def test_preempted_pretrain_checkpoints_requeues_and_resumes(sbatch_shards, tmp_path):
    out = tmp_path / "run"
    log = tmp_path / "pretrain.log"
    job = submit(
        "pretrain.sbatch",
        {
            "FMP_OUT": str(out),
            "FMP_PROCS_PER_NODE": "2",
            "FMP_OVERRIDES": f"data={sbatch_shards} wandb.mode=disabled {TINY_MODEL} "
            "max_steps=600 eval_every=1000 checkpoint_every=1000 log_every=10 "
            "max_atoms_per_batch=96",
        },
        log,
        "--cpus-per-task=2",
    )
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert job_field(job, "JobState") in ("PENDING", "RUNNING"), log.read_text()[-3000:]
        assert time.monotonic() < deadline, "training did not start in time"
        time.sleep(1)
    subprocess.run(["scancel", "--signal=USR1", job], check=True)

    deadline = time.monotonic() + 300
    while job_field(job, "Restarts") in ("", "0"):
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(1)
    preempted = json.loads((out / "status.json").read_text())
    assert preempted["status"] == "preempted", preempted
    step = preempted["step"]
    assert 0 < step < 600
    assert (out / "checkpoints" / f"step{step:08d}").is_dir()

    state = wait_for(job)  # the requeued job starts after Slurm's requeue delay
    text = log.read_text()
    assert state == "COMPLETED", text[-4000:]
    final = json.loads((out / "status.json").read_text())
    assert final == {**final, "status": "finished", "step": 600, "resumed_from": step}
    assert f"resuming from step {step}" in text
    assert "requeueing job" in text and "restart 1" in text


def test_finetune_sbatch_array_runs_one_fold_per_task(tmp_path):
    out = tmp_path / "bench"
    job = submit(
        "finetune.sbatch",
        {
            "FMP_OUT": str(out),
            "FMP_TASKS": "emt_energy",
            "FMP_FOLDS": "5",
            "FMP_OVERRIDES": f"emt.n=40 max_epochs=1 cache_dir={tmp_path / 'cache'} "
            f"{TINY_MODEL} wandb.mode=disabled",
        },
        tmp_path / "finetune-%a.log",
        "--array=0-1",
        "--cpus-per-task=1",
    )
    for index in (0, 1):
        state = wait_for(f"{job}_{index}")
        log = (tmp_path / f"finetune-{index}.log").read_text()
        assert state == "COMPLETED", log[-3000:]
        assert f"emt_energy fold {index}" in log
    folds = sorted(p.name for p in (out / "emt_energy").glob("fold_*.json"))
    assert folds == ["fold_0.json", "fold_1.json"]
