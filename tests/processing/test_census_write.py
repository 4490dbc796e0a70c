"""The census batch job's write: tried again while the store is out of reach, 2, 4 ... s
apart, within its patience; any other error at once."""

from __future__ import annotations

import pytest

from processing.census_stats import write_when_reachable
from storage.base import StoreError, StoreUnavailable


def test_an_unreachable_store_is_tried_again_after_growing_pauses() -> None:
    failures = [StoreUnavailable("starting"), StoreUnavailable("starting")]
    writes: list[int] = []
    pauses: list[float] = []

    def write() -> None:
        writes.append(1)
        if failures:
            raise failures.pop(0)

    write_when_reachable(write, "cassandra", sleep=pauses.append)
    assert len(writes) == 3 and pauses == [2.0, 4.0]


def test_it_gives_up_when_the_next_pause_passes_its_patience() -> None:
    pauses: list[float] = []

    def write() -> None:
        raise StoreUnavailable("down")

    with pytest.raises(StoreUnavailable):
        write_when_reachable(write, "cassandra", patience_s=10, sleep=pauses.append)
    # The fake sleep does not move the clock: the fourth pause (16 s) would end past the 10 s.
    assert pauses == [2.0, 4.0, 8.0]


def test_another_error_is_raised_at_once() -> None:
    pauses: list[float] = []

    def write() -> None:
        raise StoreError("refused")

    with pytest.raises(StoreError, match="refused"):
        write_when_reachable(write, "cassandra", sleep=pauses.append)
    assert pauses == []
