"""The kit's jobs: which streaming and batch jobs there are, and all of them in one application.

``python -m processing`` (the embedded and compose stacks) and ``spark-submit
processing/jobs.py`` (the cluster) run :func:`main`: every streaming job of
:data:`STREAMING_JOBS`, then the batch jobs of :data:`BATCH_JOBS` once. A job module
never imports this one: it runs alone through ``processing.runner``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from common.settings import Settings
from processing import (
    archive,
    case_reports,
    census_stats,
    nginx_traffic,
    random_stats,
    vmstat_windows,
)
from processing.context import BatchFn, StartFn
from processing.runner import job_name, run_jobs
from processing.windowing import WindowedStream

__all__ = ["BATCH_JOBS", "STREAMING_JOBS", "WINDOWED_STREAMS", "main", "windowed_stream"]

#: The streaming jobs ``python -m processing`` starts, in this order (the first one's first
#: batch runs alone: ``processing.runner.run_jobs``).
STREAMING_JOBS: tuple[StartFn, ...] = (
    vmstat_windows.start, random_stats.start, nginx_traffic.start, case_reports.start,
    archive.start)
#: Batch jobs ``python -m processing`` runs once after the streaming queries started.
BATCH_JOBS: tuple[BatchFn, ...] = (census_stats.run,)
#: The windowed streams of the streaming jobs, as each job defines them (what
#: ``processing.recompute`` recomputes from the archive, the way the live job computes them).
WINDOWED_STREAMS: tuple[Callable[[Settings], list[WindowedStream]], ...] = (
    vmstat_windows.windowed_streams, random_stats.windowed_streams,
    nginx_traffic.windowed_streams, case_reports.windowed_streams)


def windowed_stream(stream: str, settings: Settings) -> WindowedStream:
    """The windowed stream named ``stream`` (``common.catalogue``), as its job defines it."""
    for streams in WINDOWED_STREAMS:
        for spec in streams(settings):
            if spec.stream == stream:
                return spec
    raise KeyError(f"{stream} is not a windowed stream of a streaming job")


def main(argv: list[str] | None = None) -> int:
    doc = ("Every job of the kit in one Spark application (one JVM): the streaming jobs "
           f"{', '.join(map(job_name, STREAMING_JOBS))} run until stopped; the batch jobs "
           f"{', '.join(map(job_name, BATCH_JOBS))} run once after they started.")
    return run_jobs(doc, list(STREAMING_JOBS), app_name="streamkit", argv=argv,
                    batches=list(BATCH_JOBS))


if __name__ == "__main__":
    sys.exit(main())
