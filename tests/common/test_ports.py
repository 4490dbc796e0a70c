"""Free ports for the kit's servers: below the kernel's ephemeral range, so an outgoing
connection made meanwhile cannot take the port before its server binds it."""

from __future__ import annotations

import socket

from common.jvm import LOWEST_PICKED_PORT, ephemeral_ports, free_port, port_is_taken


def test_a_free_port_is_below_the_ephemeral_range_and_binds() -> None:
    low, high = ephemeral_ports()
    assert 1024 <= low < high
    ports = {free_port() for _ in range(20)}
    assert all(LOWEST_PICKED_PORT <= p < low for p in ports), sorted(ports)
    assert len(ports) > 1  # picked at random, not one fixed port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", ports.pop()))  # no SO_REUSEADDR: really free


def test_a_listening_port_is_taken_and_never_picked() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", free_port()))
        server.listen()
        port = server.getsockname()[1]
        assert port_is_taken("127.0.0.1", port)
        assert all(free_port() != port for _ in range(50))
