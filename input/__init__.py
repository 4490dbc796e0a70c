"""Sources: each publishes JSON records to its own Kafka topic (see queue/topics.toml)."""
