"""Spark jobs: each file runs alone under spark-submit and exposes start(spark, settings)."""
