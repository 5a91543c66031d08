"""File-system helpers shared by the study and real-data commands: UTF-8 text with positions
in its errors, free-space checks before large writes, and one clear message for a full disk.

Nothing here knows about models or studies.

* :func:`read_text_utf8`: a text file as ``str``; a byte that is not UTF-8 raises
  :class:`EncodingError` naming the file, line and column and how to fix it (instead of
  Python's ``'utf-8' codec can't decode byte 0xe9 in position 472``).
* :func:`check_free_space`: raise :class:`DiskFullError` *before* writing ``need`` bytes
  to a file system that has less free (some writers, h5py among them, crash instead of
  raising when the disk fills mid-write).
* :func:`is_disk_full` / :func:`disk_full_message`: recognise ENOSPC / EDQUOT / EFBIG
  (also when a library wrapped them in its own exception text) and say which file system,
  what was being written and how much space it needs.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

__all__ = [
    "EncodingError",
    "DiskFullError",
    "read_text_utf8",
    "utf8_error_message",
    "free_bytes",
    "mount_point",
    "check_free_space",
    "is_disk_full",
    "disk_full_message",
    "fmt_bytes",
]

#: errno values that mean "the file system cannot take more data"
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded", "file too large")


class EncodingError(ValueError):
    """A text file holds bytes that are not UTF-8; the message gives file, line, column and the fix."""


class DiskFullError(OSError):
    """Not enough space on a file system for a write (before it started, or while it ran)."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# ----------------------------------------------------------------------------- text
def utf8_error_message(raw: bytes, exc: UnicodeDecodeError, source: str) -> str:
    """``FILE line L, column C: byte 0xe9 is not UTF-8 ...`` with the fix."""
    start = int(exc.start)
    line = raw.count(b"\n", 0, start) + 1
    line_start = raw.rfind(b"\n", 0, start) + 1
    # column in characters of the (valid) text before the bad byte, 1-based
    column = len(raw[line_start:start].decode("utf-8", errors="replace")) + 1
    bad = raw[start:max(exc.end, start + 1)]
    shown = " ".join(f"0x{b:02x}" for b in bad[:4])
    context = raw[line_start:raw.find(b"\n", start) if raw.find(b"\n", start) >= 0 else len(raw)]
    snippet = context.decode("utf-8", errors="replace").strip()
    if len(snippet) > 60:
        snippet = snippet[:57] + "..."
    return (
        f"{source} line {line}, column {column}: byte {shown} is not UTF-8 (in: {snippet!r}); the file was "
        "probably saved in another encoding (Latin-1 / Windows-1252). Save it as UTF-8, e.g. "
        f"`iconv -f latin1 -t utf-8 {source} > fixed && mv fixed {source}`, or retype that character"
    )


def read_text_utf8(path, what: str | None = None) -> str:
    """The text of ``path`` decoded as UTF-8 (a BOM is dropped). Raises :class:`EncodingError`
    with file, line and column for a non-UTF-8 byte; ``OSError`` as usual for I/O problems."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        src = f"{what} {path}" if what else str(path)
        raise EncodingError(utf8_error_message(raw, exc, src)) from None


# ----------------------------------------------------------------------------- space
def fmt_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KB"`` (powers of 1024, one decimal below 100)."""
    n = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            if unit == "bytes":
                return f"{n:.0f} bytes"
            return f"{n:.1f} {unit}" if abs(n) < 100 else f"{n:,.0f} {unit}"
        n /= 1024
    return f"{n:.0f} PB"  # pragma: no cover


def _existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path) -> int:
    """Bytes free for this user on the file system that holds ``path`` (or its nearest
    existing ancestor)."""
    return int(shutil.disk_usage(_existing(Path(path))).free)


def mount_point(path) -> str:
    """The mount point of the file system holding ``path`` (``/`` when unknown)."""
    p = _existing(Path(path))
    if p.is_file():
        p = p.parent
    try:
        while not os.path.ismount(p) and p != p.parent:
            p = p.parent
    except OSError:  # pragma: no cover
        return "/"
    return str(p)


def _device_of(mount: str) -> str:
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            found = ""
            for line in fh:
                parts = line.split()
                if len(parts) >= 2 and parts[1] == mount:
                    found = parts[0]  # the last entry for a mount point wins (over-mounts)
            return found
    except OSError:
        return ""


def _where(path) -> str:
    mount = mount_point(path)
    dev = _device_of(mount)
    return f"{mount} ({dev})" if dev and dev != mount else mount


def disk_full_message(path, what: str, need: int | None = None, free: int | None = None) -> str:
    """``no space left on /data (/dev/sdb1) while writing posterior.nc; need about 120.0 MB, 3.2 MB free``."""
    if free is None:
        try:
            free = free_bytes(path)
        except OSError:
            free = None
    need_txt = f"; need about {fmt_bytes(need)}" if need else ""
    free_txt = f", {fmt_bytes(free)} free" if free is not None else ""
    return f"no space left on {_where(path)} while writing {what}{need_txt}{free_txt}"


def check_free_space(path, need: int, what: str, *, margin: int = 1 << 20) -> None:
    """Raise :class:`DiskFullError` when the file system of ``path`` has less than
    ``need + margin`` bytes free (checked before writing ``what``)."""
    try:
        free = free_bytes(path)
    except OSError:  # cannot tell: let the write itself fail if it must
        return
    if free < need + margin:
        raise DiskFullError(disk_full_message(path, what, need, free)
                            + "; free some space or write somewhere else")


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC / EDQUOT / EFBIG, also when wrapped (h5py, zarr, numcodecs re-raise
    them under their own types or only in the message, sometimes as ``__cause__``)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError):
            return True
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        text = str(exc).lower()
        if any(t in text for t in _DISK_FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
