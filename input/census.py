"""The US census files: typed loaders for batch jobs, and a replay of population rows to ``census``.

Run::

    python -m input.census                            # CENSUS_REPLAY_SPEED rows/s, then exit
    python -m input.census --census-replay-speed 0    # as fast as possible
    python -m input.census --loop                     # start again at the end, until Ctrl-C
    python -m input.census --path other.json --count 100

It logs a line per rejected row and, on exit, the counts of rows sent and rejected.

Batch jobs use the loaders, which take the files shipped in ``input/data/census/``
by default (see the NOTICE there for sources and terms)::

    from input.census import load_income, load_population
    rows = load_population()          # 570 CensusRow, 1850-2000 (no 1890), ages 0-90, sex 1|2
    income = load_income()            # 520 IncomeRow, 52 states (with DC and Puerto Rico)

A row that does not fit its type is rejected with a reason (the replay sends it
to ``dead-letters``; the loaders log and skip it); a file that is missing or is
not a JSON array raises :class:`CensusFileError`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from buffer import topics
from common.records import CensusRow, utc_now
from input.base import Clock, Rejected, Source
from input.random_numbers import RatePacer

__all__ = [
    "DATA_DIR",
    "INCOME_FILE",
    "POPULATION_FILE",
    "CensusFileError",
    "CensusSource",
    "IncomeRow",
    "load_income",
    "load_population",
    "read_income",
    "read_population",
]

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data" / "census"
POPULATION_FILE = DATA_DIR / "population.json"
INCOME_FILE = DATA_DIR / "income.json"


class CensusFileError(ValueError):
    """A census file is missing or is not a JSON array; the message names the file."""


@dataclasses.dataclass(frozen=True)
class IncomeRow:
    """A row of ``income.json``: the share ``pct`` (0-1) of a state's ``total`` households
    whose income is in ``group`` (e.g. ``"50000 to 74999"``, ``"200000+"``).

    ``name`` is the state (or ``"District of Columbia"``, ``"Puerto Rico"``), ``id`` its
    FIPS code, ``region`` one of ``northeast``, ``midwest``, ``south``, ``west``, ``other``.
    """

    name: str
    region: str
    id: int
    pct: float
    total: int
    group: str

    @property
    def state(self) -> str:
        return self.name

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _RowError(ValueError):
    pass


def _int(row: dict[str, Any], name: str, low: int, high: int) -> int:
    value = row.get(name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _RowError(f"field {name} must be an integer, got {value!r:.40}")
    if not low <= value <= high:
        raise _RowError(f"field {name} must be between {low} and {high}, got {value}")
    return value


def _float(row: dict[str, Any], name: str, low: float, high: float) -> float:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _RowError(f"field {name} must be a finite number, got {value!r:.40}")
    if not low <= value <= high:
        raise _RowError(f"field {name} must be between {low} and {high}, got {value}")
    return float(value)


def _str(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _RowError(f"field {name} must be a non-empty string, got {value!r:.40}")
    return value


def _population_row(row: Any) -> CensusRow:
    if not isinstance(row, dict):
        raise _RowError(f"expected a JSON object, got {type(row).__name__}")
    year = _int(row, "year", 1, 9999)
    sex = _int(row, "sex", 1, 2)
    return CensusRow(
        event_time=dt.datetime(year, 1, 1, tzinfo=dt.UTC),
        year=year,
        age=_int(row, "age", 0, 150),
        sex=sex,
        people=_int(row, "people", 0, 10**10),
    )


def _income_row(row: Any) -> IncomeRow:
    if not isinstance(row, dict):
        raise _RowError(f"expected a JSON object, got {type(row).__name__}")
    return IncomeRow(
        name=_str(row, "name"),
        region=_str(row, "region"),
        id=_int(row, "id", 0, 10**6),
        pct=_float(row, "pct", 0.0, 1.0),
        total=_int(row, "total", 0, 10**10),
        group=_str(row, "group"),
    )


def _items(path: Path) -> list[Any]:
    try:
        with Path(path).open("rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CensusFileError(f"census file {path} not found") from None
    except (OSError, ValueError) as e:
        raise CensusFileError(f"census file {path} is not readable JSON: {e}") from e
    if not isinstance(data, list):
        raise CensusFileError(f"census file {path} must hold a JSON array, got {type(data).__name__}")
    return data


def _read(path: Path, parse: Callable[[Any], Any]) -> Iterator[Any]:
    for index, item in enumerate(_items(path)):
        try:
            yield parse(item)
        except _RowError as e:
            yield Rejected(f"{Path(path).name} row {index}: {e}",
                           json.dumps(item, ensure_ascii=False, default=str)[:4096])


def read_population(path: Path = POPULATION_FILE) -> Iterator[CensusRow | Rejected]:
    """Each row of a population file, in file order: a :class:`CensusRow` or why it is not one."""
    return _read(path, _population_row)


def read_income(path: Path = INCOME_FILE) -> Iterator[IncomeRow | Rejected]:
    """Each row of an income file, in file order: an :class:`IncomeRow` or why it is not one."""
    return _read(path, _income_row)


def _valid(items: Iterator[Any], rejects: list[Rejected] | None) -> list[Any]:
    rows = []
    for item in items:
        if isinstance(item, Rejected):
            log.warning("census: skipping %s", item.reason)
            if rejects is not None:
                rejects.append(item)
        else:
            rows.append(item)
    return rows


def load_population(path: Path = POPULATION_FILE,
                    rejects: list[Rejected] | None = None) -> list[CensusRow]:
    """The valid rows of a population file; invalid ones are logged and added to ``rejects``.

    Raises:
        CensusFileError: the file is missing or not a JSON array.
    """
    return _valid(read_population(path), rejects)


def load_income(path: Path = INCOME_FILE, rejects: list[Rejected] | None = None) -> list[IncomeRow]:
    """The valid rows of an income file; invalid ones are logged and added to ``rejects``.

    Raises:
        CensusFileError: the file is missing or not a JSON array.
    """
    return _valid(read_income(path), rejects)


class CensusSource(Source):
    """Replays a population file to ``census`` at ``speed`` rows/s (0: as fast as possible).

    Ends after one pass through the file, or starts again with ``loop=True``
    (until stopped or ``count`` is reached). Invalid rows go to ``dead-letters``.
    """

    name = "census"
    topic = topics.CENSUS

    def __init__(self, path: Path = POPULATION_FILE, speed: float = 20.0, loop: bool = False,
                 count: int | None = None, clock: Clock = utc_now,
                 sleep: Callable[[float], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(count=count, clock=clock)
        self.path = Path(path)
        self.speed = speed
        self.loop = loop
        self.pacer = (RatePacer(speed, sleep=sleep or self._sleep, monotonic=monotonic)
                      if speed > 0 else None)
        self.passes = 0

    def _sleep(self, seconds: float) -> None:
        self.wait(seconds)  # wakes early when stopped

    def records(self) -> Iterator[CensusRow | Rejected]:
        budget = 0
        for _ in itertools.count():
            items = 0
            for item in read_population(self.path):
                while self.pacer is not None and budget == 0:
                    budget = self.pacer.wait()
                    if self.stopping:
                        return
                budget -= 1
                items += 1
                yield item
                if self.stopping:
                    return
            self.passes += 1
            log.info("census: pass %d through %s done (%d rows)", self.passes, self.path, items)
            if not self.loop or items == 0 or self.stopping:
                return


def main(argv: list[str] | None = None) -> int:
    from common import cli
    from common import settings as settings_module
    from input.base import KafkaSink

    parser = settings_module.argument_parser(
        __doc__ or "", only=["kafka_bootstrap_servers", "census_replay_speed", "log_level"])
    parser.add_argument("--path", type=Path, default=POPULATION_FILE,
                        help=f"population file to replay (default: {POPULATION_FILE})")
    parser.add_argument("--loop", action="store_true", help="start again at the end of the file")
    parser.add_argument("--count", type=int, help="stop after this many rows")
    args, settings = cli.start(parser, argv)
    source = CensusSource(args.path, speed=settings.census_replay_speed, loop=args.loop,
                          count=args.count)
    sink = KafkaSink(cli.broker(parser, settings))
    cli.on_stop(lambda _signum: source.stop())
    try:
        counters = source.run(sink)
    except CensusFileError as e:
        log.error("census: %s", e)
        return 1
    finally:
        sink.close()
    log.info("census: sent %d, rejected %d", counters.sent, counters.rejected)
    return 0


if __name__ == "__main__":
    sys.exit(main())
