"""Two torchrun agents (two "nodes", one rank each) on one machine with c10d rendezvous."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmpretrain.train.export import export_release
from tests.train.test_pretrain import (
    DEMO,
    REPO,
    TINY,
    assert_every_sample_once_per_epoch,
    assert_same_weights,
    free_port,
)
from tests.train.test_pretrain import released as released_weights

pytestmark = pytest.mark.slow
#: Checkpoints every 3 steps: on these shards the first one falls inside epoch 0 while both
#: ranks still hold batches. Resuming after one rank's share of the epoch is used up (step 4)
#: is test_pretrain.py::test_two_ranks_resume_after_one_rank_used_up_its_epoch_share.
COMMON = ("max_steps=24", "checkpoint_every=3", "eval_every=100", "keep_checkpoints=10")
#: Seconds the surviving agent may take to fail once the other node is gone.
FAIL_WITHIN_S = 180


@contextlib.contextmanager
def two_agents(data: Path, out: Path, *overrides: str) -> Iterator[list[subprocess.Popen]]:
    """Two ``torchrun --nnodes=2`` agents, each in its own process group, logging to
    ``out/../agentN.log``; whatever is left of them is killed afterwards."""
    port, run_id = free_port(), uuid.uuid4().hex[:8]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = []
    for node in (0, 1):
        args = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=2",
            "--nproc_per_node=1",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint=127.0.0.1:{port}",
            f"--rdzv_id={run_id}",
            f"--node_rank={node}",
            "-m",
            "fmpretrain.train",
            "--config",
            str(DEMO),
            "--no-progress",
            f"data={data}",
            f"out={out}",
            "wandb.mode=disabled",
            *TINY,
            *overrides,
        ]
        log = open(out.parent / f"{out.name}-agent{node}.log", "a")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                args,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        log.close()
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                kill_node(proc)
            proc.wait()


def wait_all(procs: list[subprocess.Popen], out: Path, timeout: float = 600) -> None:
    for node, proc in enumerate(procs):
        rc = proc.wait(timeout=timeout)
        assert rc == 0, agent_log(out, node)


def agent_log(out: Path, node: int) -> str:
    return (out.parent / f"{out.name}-agent{node}.log").read_text()[-4000:]


def kill_node(agent: subprocess.Popen) -> None:
    """SIGKILL an agent and every process under it (torchrun starts each worker in a session
    of its own, so killing the agent's process group would leave its rank running)."""
    import psutil

    tree = []
    with contextlib.suppress(psutil.NoSuchProcess):
        agent_proc = psutil.Process(agent.pid)
        tree = [agent_proc, *agent_proc.children(recursive=True)]
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def sealed_checkpoints(out: Path) -> list[Path]:
    return sorted(p.parent for p in (out / "checkpoints").glob("*/SHA256SUMS"))


@pytest.fixture(scope="module")
def straight_run(shards, tmp_path_factory) -> Path:
    """An uninterrupted two-node run with the sample audit."""
    out = tmp_path_factory.mktemp("two-nodes") / "straight"
    with two_agents(shards, out, *COMMON, "audit_samples=true") as procs:
        wait_all(procs, out)
    return out


def test_two_nodes_see_every_sample_exactly_once_per_epoch(shards, straight_run):
    assert_every_sample_once_per_epoch(shards, straight_run)


def test_killed_node_fails_the_job_and_a_relaunch_resumes_exactly(shards, straight_run, tmp_path):
    out = tmp_path / "killed"
    with two_agents(shards, out, *COMMON) as (first, second):
        deadline = time.monotonic() + 600
        while not sealed_checkpoints(out):
            assert first.poll() is None and second.poll() is None, agent_log(out, 0)
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.1)
        kill_node(second)  # node 1 is lost: its agent and its rank, at once
        second.wait()
        try:
            rc = first.wait(timeout=FAIL_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the surviving node hung for {FAIL_WITHIN_S} s after losing its peer")
        assert rc != 0, "the job must fail when a node is lost"
    kept = sealed_checkpoints(out)
    assert kept and not kept[-1].name.endswith(f"{24:08d}"), "the kill came too late"

    with two_agents(shards, out, *COMMON) as procs:  # relaunch: resumes from the checkpoint
        wait_all(procs, out)
    assert "resum" in agent_log(out, 0) + agent_log(out, 1)
    resumed = released_weights(export_release(out, tmp_path / "release-resumed"))
    straight = released_weights(export_release(straight_run, tmp_path / "release-straight"))
    assert_same_weights(resumed, straight)
