"""The embedded broker's part of `python -m stack`'s health line (pure, no processes)."""

from __future__ import annotations

import os

import psutil

from stack.__main__ import BrokerMeter, broker_health


def test_the_broker_part_says_cpu_and_uptime() -> None:
    assert broker_health(0.14, 8 * 60 + 10) == "broker 14% CPU, up 8 min"


def test_the_meter_measures_a_process_between_reads() -> None:
    meter = BrokerMeter(os.getpid())
    before = psutil.Process().cpu_times()
    while sum(psutil.Process().cpu_times()[:2]) - sum(before[:2]) < 0.2:
        pass  # burn 0.2 s of CPU in this process
    share = int(meter.read().split("%")[0].removeprefix("broker "))
    # Busy all the time between the reads: near 100% unless the machine preempted it a lot.
    assert share >= 10, share
