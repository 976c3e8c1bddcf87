"""The thread policy: explicit settings win, "auto" shares the usable cores among the node's
processes and leaves the cores other processes keep busy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fmpretrain.threads import auto_threads, busy_cores_elsewhere, choose_threads, usable_cores


@pytest.mark.parametrize(
    ("cores", "processes", "busy", "expected"),
    [
        (2, 1, 0.1, 2),  # quiet 2-core machine: both cores
        (2, 1, 1.0, 1),  # one busy process elsewhere: one thread, no oversubscription
        (2, 1, 0.5, 2),  # half a core busy elsewhere does not cost a thread
        (2, 1, 0.7, 1),  # from 60 % it does
        (2, 2, 0.0, 1),  # two training processes: one core each
        (4, 2, 1.0, 2),  # the other training process is not "elsewhere" enough to halve
        (16, 1, 3.0, 13),
        (2, 1, 5.0, 1),  # never below one
        (1, 4, 0.0, 1),
    ],
)
def test_auto_rule(cores, processes, busy, expected):
    assert auto_threads(cores, processes, busy) == expected


def test_explicit_settings_win(monkeypatch):
    assert choose_threads(3, 8) == (3, "set in the configuration")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert choose_threads(0) == (5, "OMP_NUM_THREADS")
    with pytest.raises(ValueError, match="threads must be 0"):
        choose_threads(-1)


def test_auto_stays_within_usable_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads, reason = choose_threads(0, 1)
    assert 1 <= threads <= usable_cores()
    assert reason.startswith("auto:")


def test_a_spinning_process_counts_as_busy_elsewhere():
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = busy_cores_elsewhere(0.5)
    finally:
        spin.kill()
        spin.wait()
    # the spinner alone holds a core, or the machine is loaded anyway
    assert busy >= 0.5
