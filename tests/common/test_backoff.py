"""common/backoff.py: the pauses of every retry and restart."""

from __future__ import annotations

import itertools

import pytest

from common import backoff


def test_the_pause_doubles_up_to_its_cap() -> None:
    assert [backoff.delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert list(itertools.islice(backoff.delays(first_s=0.2, cap_s=1.0), 6)) == pytest.approx(
        [0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_a_huge_attempt_number_stays_at_the_cap() -> None:
    assert backoff.delay(10_000, cap_s=5.0) == 5.0
    assert backoff.delay(-1) == 1.0
