"""buffer.kafka.JsonPublisher used after close() fails with a clear error (real broker)."""

from __future__ import annotations

import pytest

from buffer.kafka import JsonPublisher


def test_a_closed_publisher_says_so(bootstrap: str) -> None:
    publisher = JsonPublisher(bootstrap)
    publisher.close()
    with pytest.raises(RuntimeError, match="publishing to t after the publisher was closed"):
        publisher.publish("t", {"a": 1})
    with pytest.raises(RuntimeError, match="flushing after the publisher was closed"):
        publisher.flush()
