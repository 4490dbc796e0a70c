"""Following a log file like ``tail -F``, with a read position that survives restarts.

:class:`FileTailer` returns the complete lines appended since the last call to
:meth:`FileTailer.poll`, each with the :class:`Position` just after it. It never
sleeps: the caller decides when to poll again (``input.nginx`` waits
``poll_interval`` between polls that found nothing; tests call ``poll()``
step by step). It handles:

* rotation (the file renamed, a new one created at the path): the old file is
  read to its end, then the new one from its start. nginx writes to the old
  file until it reopens its log (``nginx -s reopen``, logrotate's postrotate),
  so the old file is kept open and read until the new one has data;
* truncation (``copytruncate``) and a file replaced in place (same inode, new
  content): read again from the start. Lines written between logrotate's copy
  and its truncate are lost; that is inherent to ``copytruncate``;
* a path that does not exist yet: it is opened when it appears, from its start;
* restarts: a saved :class:`Position` names the device, inode, byte offset and
  the first bytes of the file (``head``, up to 64, so a new file that reuses the
  inode is not mistaken for the old one). On start, the tailer resumes at the
  offset if the file at the path is the same; if it was rotated meanwhile, it
  finds the old file by inode in the same folder (``access.log.1``), reads its
  rest first, then the new file from its start.

:class:`PositionStore` keeps one position per followed path as a small JSON file,
replaced atomically (write, fsync, rename).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

__all__ = ["FileTailer", "Position", "PositionStore"]

log = logging.getLogger(__name__)

HEAD_BYTES = 64
MAX_LINE_BYTES = 1 << 20  # a longer run without a newline is returned as one (bad) line
READ_CHUNK = 1 << 16


class Position(NamedTuple):
    """Where reading stopped: the file (device, inode, first bytes) and the byte offset after
    the last line returned."""

    path: str
    device: int
    inode: int
    offset: int
    head: bytes

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "device": self.device, "inode": self.inode,
                "offset": self.offset, "head": self.head.hex()}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Position:
        return cls(str(data["path"]), int(data["device"]),  # type: ignore[call-overload]
                   int(data["inode"]), int(data["offset"]),  # type: ignore[call-overload]
                   bytes.fromhex(str(data["head"])))


class PositionStore:
    """One followed path's saved position, in ``folder`` (created when first saved)."""

    def __init__(self, folder: Path, log_path: Path) -> None:
        digest = hashlib.sha1(str(log_path.absolute()).encode(), usedforsecurity=False).hexdigest()
        self.path = folder / f"{log_path.name}-{digest[:12]}.json"

    def load(self) -> Position | None:
        """The saved position, or None (never saved; unreadable files are logged and ignored)."""
        try:
            data = json.loads(self.path.read_text())
            return Position.from_json(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring unreadable position file %s (%s): starting afresh", self.path, e)
            return None

    def save(self, position: Position) -> None:
        """Replace the saved position atomically (a crash leaves the old one or the new one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(position.to_json(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


@dataclass
class _Open:
    """A file being read: its descriptor, identity, read offset and unreturned partial line."""

    path: str
    fd: int
    device: int
    inode: int
    offset: int  # offset after the last complete line returned
    head: bytes
    buffer: bytes = b""

    def position(self) -> Position:
        return Position(self.path, self.device, self.inode, self.offset, self.head)


def _head_of(fd: int, upto: int) -> bytes:
    return os.pread(fd, min(HEAD_BYTES, upto), 0) if upto > 0 else b""


class FileTailer:
    """Returns the lines appended to ``path``; see the module docstring.

    Args:
        path: the log file to follow.
        saved: the position saved by an earlier run, if any (it wins over ``from_start``).
        from_start: without a saved position, read the existing content too
            (default: only lines written from now on).
        max_lines: at most this many lines per :meth:`poll`.
    """

    def __init__(self, path: Path, saved: Position | None = None, from_start: bool = False,
                 max_lines: int = 10_000) -> None:
        self.path = str(path)
        self.max_lines = max_lines
        self._current: _Open | None = None
        self._pending_old: list[_Open] = []  # rotated files still to finish, oldest first
        self._started = False
        self._saved = saved
        self._from_start = from_start
        self.rotations = 0
        self.truncations = 0

    # -- opening

    def _open(self, path: str, offset: int | None) -> _Open | None:
        """Open ``path``; offset None means "the end, after its last complete line"."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        st = os.fstat(fd)
        if offset is None:
            offset = self._after_last_newline(fd, st.st_size)
        return _Open(path, fd, st.st_dev, st.st_ino, offset, _head_of(fd, offset))

    @staticmethod
    def _after_last_newline(fd: int, size: int) -> int:
        pos = size
        while pos > 0:
            start = max(0, pos - READ_CHUNK)
            chunk = os.pread(fd, pos - start, start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                return start + i + 1
            pos = start
        return 0

    def _start(self) -> None:
        """First poll: resume from the saved position, else start at the end (or start)."""
        self._started = True
        saved = self._saved
        if saved is None:
            self._current = self._open(self.path, 0 if self._from_start else None)
            if self._current is not None:
                log.info("following %s from %s (byte %d)", self.path,
                         "its start" if self._from_start else "its end", self._current.offset)
            return
        current = self._open(self.path, 0)
        if current is not None and (current.device, current.inode) == (saved.device, saved.inode):
            size = os.fstat(current.fd).st_size
            if size >= saved.offset and os.pread(current.fd, len(saved.head), 0) == saved.head:
                current.offset = saved.offset
                current.head = _head_of(current.fd, saved.offset)
                log.info("following %s from the saved position (byte %d)", self.path, saved.offset)
            else:
                log.warning("%s was truncated or replaced since the saved position (byte %d); "
                            "reading it from its start", self.path, saved.offset)
                self.truncations += 1
            self._current = current
            return
        old = self._find_rotated(saved)
        if old is not None:
            log.info("%s was rotated since the last run: finishing %s from byte %d first",
                     self.path, old.path, old.offset)
            self._pending_old.append(old)
            self.rotations += 1
        else:
            log.warning("the file of the saved position (%s, inode %d) is gone; reading %s from "
                        "its start (lines written to the old file after byte %d are lost)",
                        saved.path, saved.inode, self.path, saved.offset)
        self._current = current  # the new file (may not exist yet), from its start

    def _find_rotated(self, saved: Position) -> _Open | None:
        """The saved position's file, renamed within its folder (``access.log.1``), if found."""
        folder = os.path.dirname(os.path.abspath(self.path)) or "."
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return None
        for name in names:
            candidate = os.path.join(folder, name)
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != (saved.device, saved.inode) or st.st_size < saved.offset:
                continue
            opened = self._open(candidate, saved.offset)
            if opened is None:
                continue
            if os.pread(opened.fd, len(saved.head), 0) == saved.head:
                opened.head = saved.head
                return opened
            os.close(opened.fd)
        return None

    # -- reading

    @property
    def position(self) -> Position | None:
        """Position after the last line returned (None before a file was opened)."""
        if self._pending_old:
            return self._pending_old[0].position()
        return self._current.position() if self._current else None

    def poll(self) -> list[tuple[bytes, Position]]:
        """The complete lines available now (without newlines), each with the position after it.

        Returns an empty list when there is nothing new; never blocks.
        """
        if not self._started:
            self._start()
        lines: list[tuple[bytes, Position]] = []
        current = self._current
        if current is not None and os.pread(current.fd, len(current.head), 0) != current.head:
            # Replaced in place (truncated, then refilled past our offset): new content.
            log.info("%s was truncated or replaced: reading it from its start", self.path)
            self.truncations += 1
            current.offset, current.buffer, current.head = 0, b"", b""
        while len(lines) < self.max_lines:
            if self._pending_old:
                old = self._pending_old[0]
                if self._read(old, lines):
                    continue
                if not self._new_file_written():
                    break  # nginx may still write to the old file until it reopens its log
                if self._read(old, lines):  # what it wrote just before reopening
                    continue
                self._finish(old, lines)
                self._pending_old.pop(0)
                continue
            if self._current is None:
                self._current = self._open(self.path, 0)
                if self._current is None:
                    break
                log.info("%s appeared: following it from its start", self.path)
            if self._read(self._current, lines):
                continue
            if not self._check_file(lines):
                break
        return lines

    def _new_file_written(self) -> bool:
        """True once the file now at the path has data: the writer has moved to it."""
        if self._current is None:
            self._current = self._open(self.path, 0)
        return self._current is not None and os.fstat(self._current.fd).st_size > 0

    def _read(self, f: _Open, lines: list[tuple[bytes, Position]]) -> bool:
        """Read what is there into ``lines`` (up to max_lines); True if anything was read."""
        data = f.buffer
        if b"\n" not in data:  # else: lines left over from a poll that hit max_lines
            more = os.pread(f.fd, READ_CHUNK, f.offset + len(f.buffer))
            if not more:
                return False
            data += more
        start = 0
        while len(lines) < self.max_lines:
            end = data.find(b"\n", start)
            if end < 0:
                break
            f.offset += end + 1 - start
            if len(f.head) < HEAD_BYTES:
                f.head = _head_of(f.fd, f.offset)
            line = data[start:end]
            lines.append((line, Position(f.path, f.device, f.inode, f.offset, f.head)))
            start = end + 1
        f.buffer = data[start:]
        if len(f.buffer) > MAX_LINE_BYTES:
            self._flush_partial(f, lines)
        return True

    def _flush_partial(self, f: _Open, lines: list[tuple[bytes, Position]]) -> None:
        """Return a partial line as a line (a line too long, or the last one of a finished file)."""
        if f.buffer:
            f.offset += len(f.buffer)
            if len(f.head) < HEAD_BYTES:
                f.head = _head_of(f.fd, f.offset)
            lines.append((f.buffer, f.position()))
            f.buffer = b""

    def _finish(self, f: _Open, lines: list[tuple[bytes, Position]]) -> None:
        """A rotated file was read to its end: return its partial last line, close it."""
        self._flush_partial(f, lines)
        os.close(f.fd)

    def _check_file(self, lines: list[tuple[bytes, Position]]) -> bool:
        """At the end of the current file: rotated, truncated, replaced? True to read on."""
        f = self._current
        assert f is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # renamed, new file not created yet: keep the old one open
        if (st.st_dev, st.st_ino) != (f.device, f.inode):
            new = self._open(self.path, 0)
            if new is None:
                return False
            log.info("%s was rotated: finishing the old file, then the new one", self.path)
            self.rotations += 1
            self._pending_old.append(f)
            self._current = new
            return True
        size = os.fstat(f.fd).st_size
        if size < f.offset + len(f.buffer) or os.pread(f.fd, len(f.head), 0) != f.head:
            log.info("%s was truncated or replaced: reading it from its start", self.path)
            self.truncations += 1
            f.offset, f.buffer, f.head = 0, b"", b""
            return True
        return False

    def close(self) -> None:
        """Close every open file (idempotent)."""
        for f in [*self._pending_old, *([self._current] if self._current else [])]:
            with contextlib.suppress(OSError):
                os.close(f.fd)
        self._pending_old = []
        self._current = None
