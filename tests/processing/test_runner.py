"""What the runner refuses before Spark starts."""

from __future__ import annotations

import pytest

from processing.runner import run_jobs

pytestmark = pytest.mark.spark


def test_a_retention_cassandra_cannot_keep_is_refused_before_spark_starts(
        capfd: pytest.CaptureFixture[str]) -> None:
    # 120,000 h (under the 20-year TTL limit) from now ends in 2040, past 2038-01-19.
    code = run_jobs("test", [], "test", argv=["--cassandra-hosts", "127.0.0.1",
                                               "--retention-hours", "120000"])
    assert code == 2
    logged = capfd.readouterr().err
    assert "RETENTION_HOURS=120000" in logged and "2038-01-19" in logged
