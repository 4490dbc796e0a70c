"""Result stores behind one contract: SQLite on disk, or Cassandra."""
