"""`ray job submit` of the featurization job to a real local Ray head on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fmpretrain.data.manifest import Manifest, verify_shards

pytestmark = pytest.mark.slow
REPO = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head():
    """A Ray head started with `ray start --head --block` in its own session, stopped by
    killing that session only (other Ray instances on the machine are left alone)."""
    ray = Path(sys.executable).parent / "ray"
    gcs_port, dashboard_port = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths are long
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    head = subprocess.Popen(
        [
            str(ray),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs_port}",
            "--num-cpus=2",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
            f"--temp-dir={temp_dir}",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            probe = subprocess.run(
                [str(ray), "job", "list", "--address", address],
                env=env,
                capture_output=True,
                text=True,
            )
            if probe.returncode == 0:
                break
            assert head.poll() is None, "the Ray head exited"
            assert time.monotonic() < deadline, f"the Ray head did not come up: {probe.stderr}"
            time.sleep(1)
        yield address, env
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_featurize_through_ray_job_submit(ray_head, tmp_path):
    address, env = ray_head
    out = tmp_path / "shards"
    env = {**env, "RAY_ADDRESS": address, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}
    done = subprocess.run(
        [
            "bash",
            str(REPO / "launch" / "ray" / "submit_featurize.sh"),
            "--config",
            "configs/featurize/demo.yaml",
            "descriptor=ead",
            "source.n=80",
            "source.max_atoms=12",
            "chunk_size=20",
            f"out={out}",
            "workers=2",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout + done.stderr
    assert "Connecting to existing Ray cluster" in done.stdout + done.stderr  # joined, not embedded
    manifest = Manifest.load(out)
    assert manifest.complete and manifest.n_inputs == 80 and len(manifest.shards) == 4
    assert verify_shards(out) == []
