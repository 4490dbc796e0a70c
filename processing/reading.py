"""Reading Kafka values: a record type's Spark schema, and JSON values parsed into its columns.

* :func:`spark_schema` derives the schema from the record type (``common.records``),
  so no field list is typed twice.
* :func:`parse_records` turns Kafka rows into typed columns plus ``_error`` saying
  why a row is malformed (null when it is fine); with ``observe_as`` it counts rows
  and malformed rows with ``observe``, so the counts reach the query's progress reports.
* :func:`valid` keeps the rows without an error.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from common import records

__all__ = ["parse_records", "spark_schema", "valid"]

_SPARK_TYPES: dict[Any, DataType] = {
    str: StringType(),
    int: LongType(),
    float: DoubleType(),
    bool: BooleanType(),
    dt.datetime: TimestampType(),
}


def _spark_type(hint: Any) -> tuple[DataType, bool]:
    import types
    import typing

    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
        return _SPARK_TYPES[inner], True
    if typing.get_origin(hint) is dict:  # dict[str, str]: an object of strings
        key, value = typing.get_args(hint)
        return MapType(_SPARK_TYPES[key], _SPARK_TYPES[value]), True
    return _SPARK_TYPES[hint], False


def spark_schema(record_type: type[records.Record]) -> StructType:
    """The Spark schema of a record type, derived from its fields (``common.records``)."""
    fields = []
    required = records.required_fields(record_type)
    for name, hint in records.fields_of(record_type).items():
        spark_type, nullable = _spark_type(hint)
        fields.append(StructField(name, spark_type, nullable or name not in required))
    return StructType(fields)


ISO_WITH_ZONE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$"


def parse_records(kafka_rows: DataFrame, record_type: type[records.Record],
                  observe_as: str | None = None) -> DataFrame:
    """Kafka rows -> one column per field of ``record_type``, plus ``_error`` and ``_offset``.

    The JSON is read with every field as text, then each field is converted
    with ``try_cast``; ``_error`` names the first problem: not a JSON object, a
    required field missing, or a field of the wrong type (times must be ISO 8601
    with a zone, as ``common.records`` writes them). Rows with an error are still
    returned (callers keep ``_error IS NULL`` and count the rest). A number where
    text is expected is taken as its text (JSON parsing cannot tell them apart).

    One parse, deliberately: a typed parse first, with this text parse only for
    the rows it refuses, was 15-45% faster per record (``bench/spark_parse.py``)
    but made each micro-batch about 10% dearer (1.75 against 1.59 core-seconds
    per batch of the host-metrics job at 10 records/s): Spark plans, generates
    code for and serialises the whole expression tree every batch, and at the
    kit's rates that fixed cost is nearly all of the cost.
    """
    schema = spark_schema(record_type)
    required = records.required_fields(record_type)
    as_text = StructType([StructField(f.name, StringType(), True) for f in schema.fields]
                         + [StructField("produced_at", StringType(), True),
                            StructField("_corrupt", StringType(), True)])
    text = F.col("value").cast("string")
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"}
    parsed = kafka_rows.select(
        F.from_json(text, as_text, options).alias("j"),
        text.alias("_raw"),
        F.col("timestamp").alias("_kafka_time"),
        F.col("offset").alias("_offset"),
    )
    columns: list[Column] = []
    checks: list[Column] = [
        F.when(F.col("j").isNull() | F.col("j._corrupt").isNotNull()
               | ~F.ltrim(F.col("_raw")).startswith("{"), F.lit("not a JSON object"))
    ]
    for f in schema.fields:
        raw = F.col(f"j.{f.name}")
        if isinstance(f.dataType, MapType):  # read as text: the object's JSON, parsed again
            value = F.from_json(raw, f.dataType.simpleString())
        else:
            value = raw if isinstance(f.dataType, StringType) else raw.try_cast(f.dataType)
        if isinstance(f.dataType, TimestampType):
            value = F.when(raw.rlike(ISO_WITH_ZONE), value)
        columns.append(value.alias(f.name))
        if f.name in required:
            checks.append(F.when(raw.isNull(), F.lit(f"field {f.name} is missing or null")))
        if isinstance(f.dataType, TimestampType):
            # As common.records.parse_time: ISO 8601 with a zone, nothing Spark would also guess at.
            checks.append(F.when(raw.isNotNull() & ~raw.rlike(ISO_WITH_ZONE),
                                 F.lit(f"field {f.name} is not an ISO 8601 time with a zone")))
        if not isinstance(f.dataType, StringType):
            checks.append(F.when(raw.isNotNull() & value.isNull(),
                                 F.lit(f"field {f.name} is not a {f.dataType.simpleString()}")))
    error = F.coalesce(*checks)
    produced = F.col("j.produced_at").try_cast(TimestampType()).alias("_produced_at")
    df = parsed.select(*columns, error.alias("_error"), produced, "_kafka_time", "_offset")
    if observe_as:
        df = df.observe(
            observe_as,
            F.count(F.lit(1)).alias("rows"),
            F.sum(F.when(F.col("_error").isNotNull(), 1).otherwise(0)).alias("malformed"),
        )
    return df


def valid(df: DataFrame) -> DataFrame:
    return df.where(F.col("_error").isNull()).drop("_error")
