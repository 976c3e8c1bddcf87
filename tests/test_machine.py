"""Machine probes shared by the thread policy and the benchmarks."""

from __future__ import annotations

import math
import time

from fmpretrain.machine import busy_share, cpu_model, cpu_times, machine_info, usable_cores


def test_busy_share_sees_this_process_spin():
    before = cpu_times()
    if before is None:
        assert math.isnan(busy_share(None, None))
        return
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:  # keep one core busy
        pass
    share = busy_share(before, cpu_times())
    assert 0.0 < share <= 1.0
    assert math.isnan(busy_share(before, before)) and math.isnan(busy_share(None, before))


def test_machine_info_names_the_machine_and_missing_packages():
    info = machine_info(("numpy", "surely-not-installed-package"))
    assert info["cpu"] == cpu_model() and info["cpu"]
    assert 1 <= info["usable_cores"] == usable_cores() <= info["cores"]
    assert info["numpy"] and info["surely-not-installed-package"] is None
