"""A featurize driver killed with SIGKILL leaves no Ray processes of its local cluster behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from fmpretrain.data.manifest import Manifest
from tests.data_pipeline.test_pipeline import REPO, job_args, job_process, wait_for_parts

pytestmark = pytest.mark.slow


def session_processes(session_dir: str) -> list[str]:
    """Live processes whose command line names ``session_dir`` (raylet, GCS, workers...)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if session_dir in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(f"{proc.info['pid']}: {cmdline[:160]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def driver_session(pid: int) -> str:
    """The Ray session directory of the local cluster that driver ``pid`` started."""
    import psutil

    for child in psutil.Process(pid).children(recursive=True):
        match = re.search(r"(/\S*/session_[0-9_-]+)", " ".join(child.cmdline()))
        if match:
            return match.group(1)
    raise AssertionError("the driver started no Ray processes")


def test_killed_driver_leaves_no_ray_processes_and_the_rerun_finishes(tmp_path):
    out = tmp_path / "out"
    args = job_args(
        out, "descriptor=ead", "source.n=200", "source.max_atoms=24", "chunk_size=5", "workers=1"
    )
    with job_process(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        wait_for_parts(out, proc, 2, timeout=600)  # a busy machine starts Ray slowly
        session = driver_session(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone, by its pid
        proc.wait()
        time.sleep(5)  # what fate-sharing kills dies now; the rest would be orphans
        orphans = session_processes(session)
        rerun = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
        left = session_processes(session)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert Manifest.load(out).complete
    assert not left, f"processes of the killed run's Ray session are left: {left}"
    if orphans:  # the rerun found them and said so
        assert "left of the Ray session" in rerun.stderr
    assert not (out / ".ray-session.json").exists()
