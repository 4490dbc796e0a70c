"""Code shared by every stage: settings, record types, topics, Kafka clients, the demo catalogue."""
