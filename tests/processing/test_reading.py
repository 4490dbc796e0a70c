"""Kafka values parsed into a record type's columns, with ``_error`` naming what is wrong."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

from common.records import VmstatSample
from processing import reading
from tests.processing.test_vmstat_windows import at, kafka_rows, sample

pytestmark = pytest.mark.spark


def test_parse_records_types_fields_and_names_what_is_wrong(spark: SparkSession) -> None:
    df = kafka_rows(spark, [
        sample(1, cpu=12.5),
        b"{not json",
        b"[1, 2]",
        {"host": "a", "cpu_user": 1},
        {"event_time": "2026-11-22T05:00:01.000Z", "host": "a", "cpu_user": "lots"},
        {"event_time": "last tuesday", "host": "a"},
        b"\x00\xff\xfe",
        {"event_time": "12345", "host": "a"},  # Spark would read year 12345
        {"event_time": "2026-11-22T05:00:01", "host": "a"},  # no zone
        {"event_time": "2026-11-22T06:00:01+01:00", "host": "a"},
        # A number sent as text, an integer for a double, a number for text; then too big a number.
        {"event_time": "2026-11-22T05:00:02Z", "host": 7, "cpu_user": "12.5", "mem_used": 7},
        {"event_time": "2026-11-22T05:00:03Z", "host": "a", "cpu_user": 1e400},
    ])
    rows = reading.parse_records(df, VmstatSample).orderBy("_offset").collect()
    assert rows[0]["_error"] is None and rows[0]["cpu_user"] == 12.5 and rows[0]["host"] == "a"
    assert [r["_error"] for r in rows[1:]] == [
        "not a JSON object",
        "not a JSON object",
        "field event_time is missing or null",
        "field cpu_user is not a double",
        "field event_time is not an ISO 8601 time with a zone",
        "not a JSON object",
        "field event_time is not an ISO 8601 time with a zone",
        "field event_time is not an ISO 8601 time with a zone",
        None,
        None,
        "field cpu_user is not a double",
    ]
    assert rows[-3]["event_time"] == rows[0]["event_time"]  # 06:00:01+01:00 is 05:00:01 UTC
    assert (rows[-2]["cpu_user"], rows[-2]["mem_used"]) == (12.5, 7.0)
    assert rows[-2]["event_time"] == at(2).replace(tzinfo=None) and rows[-2]["host"] == "7"
