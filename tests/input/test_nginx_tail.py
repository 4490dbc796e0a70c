"""The NGINX source's tailer (input/nginx_tail.py): rotation, truncation, saved positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from input import nginx_tail
from input.nginx_tail import FileTailer, Position, PositionStore
from tests.input.nginx_support import write


def texts(batch: list[tuple[bytes, Position]]) -> list[bytes]:
    return [raw for raw, _ in batch]


# -- the tailer, step by step on real files


def test_starts_at_the_end_by_default_and_at_the_start_on_request(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"old 1", b"old 2")
    at_end = FileTailer(log)
    at_start = FileTailer(log, from_start=True)
    assert texts(at_end.poll()) == []
    assert texts(at_start.poll()) == [b"old 1", b"old 2"]
    write(log, b"new")
    assert texts(at_end.poll()) == [b"new"]
    assert texts(at_start.poll()) == [b"new"]
    assert at_end.poll() == []


def test_starting_at_the_end_waits_for_a_partial_last_line(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"old")
    write(log, b"half", end=b"")
    tailer = FileTailer(log)
    assert tailer.poll() == []
    write(log, b" done")
    assert texts(tailer.poll()) == [b"half done"]


def test_a_line_is_returned_once_complete_with_the_offset_after_it(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.touch()
    tailer = FileTailer(log, from_start=True)
    assert tailer.poll() == []
    write(log, b"par", end=b"")
    assert tailer.poll() == []
    write(log, b"tial", b"next")
    batch = tailer.poll()
    assert texts(batch) == [b"partial", b"next"]
    st = log.stat()
    assert [p.offset for _, p in batch] == [8, 13]
    assert (batch[-1][1].device, batch[-1][1].inode, batch[-1][1].head) == (
        st.st_dev, st.st_ino, b"partial\nnext\n")


def test_rotation_reads_the_old_file_to_its_end_then_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    writer = log.open("ab", buffering=0)  # stands in for nginx's open descriptor
    writer.write(b"o1\n")
    tailer = FileTailer(log, from_start=True)
    assert texts(tailer.poll()) == [b"o1"]
    log.rename(tmp_path / "access.log.1")  # logrotate renames ...
    writer.write(b"o2\n")  # ... nginx still writes to the old file
    assert texts(tailer.poll()) == [b"o2"]  # no file at the path yet: keep reading the old one
    log.touch()  # logrotate's "create"
    writer.write(b"o3\n")
    assert texts(tailer.poll()) == [b"o3"]  # the new file is empty: nginx has not reopened
    writer.write(b"o4\n")
    writer.close()
    new = log.open("ab", buffering=0)  # nginx -s reopen
    new.write(b"n1\n")
    assert texts(tailer.poll()) == [b"o4", b"n1"]
    new.write(b"n2\n")
    assert texts(tailer.poll()) == [b"n2"]
    assert tailer.rotations == 1
    new.close()
    tailer.close()


def test_rotation_when_the_old_file_ends_without_a_newline(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"a")
    tailer = FileTailer(log, from_start=True)
    assert texts(tailer.poll()) == [b"a"]
    write(log, b"cut", end=b"")
    log.rename(tmp_path / "access.log.1")
    write(log, b"b")
    assert texts(tailer.poll()) == [b"cut", b"b"]


def test_copytruncate_is_read_again_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"line 1", b"line 2")
    tailer = FileTailer(log, from_start=True)
    assert len(tailer.poll()) == 2
    with log.open("r+b") as f:
        f.truncate(0)
    write(log, b"after")
    assert texts(tailer.poll()) == [b"after"]
    assert tailer.truncations == 1


def test_a_file_replaced_in_place_by_longer_content_is_detected_by_its_head(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"a", b"b")
    tailer = FileTailer(log, from_start=True)
    assert len(tailer.poll()) == 2
    with log.open("r+b") as f:  # truncated and refilled past our offset between two polls
        f.truncate(0)
        f.write(b"zzzzzz\nq\n")
    assert texts(tailer.poll()) == [b"zzzzzz", b"q"]


def test_a_log_that_does_not_exist_yet_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    tailer = FileTailer(log)
    assert tailer.poll() == [] and tailer.position is None
    write(log, b"first")
    assert texts(tailer.poll()) == [b"first"]


def test_an_endless_line_is_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nginx_tail, "MAX_LINE_BYTES", 10)
    log = tmp_path / "access.log"
    write(log, b"x" * 25, end=b"")
    assert texts(FileTailer(log, from_start=True).poll()) == [b"x" * 25]


def test_max_lines_per_poll(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, *[str(i).encode() for i in range(25)])
    tailer = FileTailer(log, from_start=True, max_lines=10)
    assert [len(tailer.poll()) for _ in range(4)] == [10, 10, 5, 0]


# -- restarts from a saved position


def read_all(log: Path, saved: Position | None = None, from_start: bool = False
             ) -> tuple[list[bytes], Position | None]:
    tailer = FileTailer(log, saved, from_start=from_start)
    batch = tailer.poll()
    tailer.close()
    return texts(batch), (batch[-1][1] if batch else saved)


def test_restart_resumes_after_the_last_line(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"a", b"b")
    lines, position = read_all(log, from_start=True)
    assert lines == [b"a", b"b"]
    write(log, b"c")
    assert read_all(log, position, from_start=True)[0] == [b"c"]  # the saved position wins


def test_restart_after_a_rotation_finishes_the_rotated_file_first(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"a", b"b")
    _, position = read_all(log, from_start=True)
    write(log, b"c")  # written, not yet read, when the source stopped
    log.rename(tmp_path / "access.log.1")
    write(log, b"d")
    assert read_all(log, position)[0] == [b"c", b"d"]


def test_restart_after_the_rotated_file_was_deleted_reads_the_new_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"a" * 100)
    _, position = read_all(log, from_start=True)
    log.unlink()
    write(log, b"fresh")  # may even reuse the inode: the head tells them apart
    assert read_all(log, position)[0] == [b"fresh"]


def test_restart_after_a_truncation_reads_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"a long first line", b"b")
    _, position = read_all(log, from_start=True)
    with log.open("r+b") as f:
        f.truncate(0)
    write(log, b"c")
    assert read_all(log, position)[0] == [b"c"]


def test_position_store_round_trip_and_bad_files(tmp_path: Path) -> None:
    store = PositionStore(tmp_path / "positions", Path("/var/log/nginx/access.log"))
    assert store.load() is None
    position = Position("/var/log/nginx/access.log", 1, 2, 300, b"\x00head")
    store.save(position)
    assert store.load() == position
    assert [p.name for p in store.path.parent.iterdir()] == [store.path.name]  # no temp left
    store.path.write_text("{not json")
    assert store.load() is None
