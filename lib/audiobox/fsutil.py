"""Crash-safe file writes, the one way the project writes files.

Every file is written to a unique temp file in the target folder (`.partial-<name>.<random>`),
fsynced, then renamed over the target, so readers see the old file or the new one, never half of
one, and concurrent writers of the same target never share a temp file. While it is written the
temp file (or a staging folder) is held with an advisory lock (flock); a kill releases the lock,
which is how `clean_stale` tells a leftover of a dead process from the work of a live one.

Mode: new files get 0666 and new folders 0777, both minus the process umask (0644 / 0755 with the
usual umask 022), the same as any file `open()` creates: a cache shared by a group works with
umask 002.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".partial-"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
LEFTOVER_PREFIXES = (TEMP_PREFIX, STAGING_PREFIX, TRASH_PREFIX)


STALE_AFTER_S = 1.0  # a leftover younger than this may be one a live process has not locked yet


def _current_umask() -> int:
    """The umask, read without changing it where Linux allows (os.umask is process-wide)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status", encoding="ascii") as fh:
            return int(next(line for line in fh if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~_current_umask()


def dir_mode() -> int:
    return 0o777 & ~_current_umask()


def _hold(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a unique temp path next to `path`; on success it is fsynced and renamed onto `path`,
    on any failure it is removed. For writers that need a path (soundfile, zipfile)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name[:100]}.")
    tmp = Path(tmp_name)
    try:
        _hold(fd)
        os.fchmod(fd, file_mode())
        yield tmp
        atomic_move(tmp, path)  # the writer may have replaced the file: sync what is there now
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def atomic_move(src: Path, dst: Path) -> None:
    """Rename a finished file (one a tool wrote, e.g. yt-dlp) onto `dst` in the same file system:
    its bytes are fsynced first and the folder after, so a crash never leaves `dst` naming lost data."""
    with open(src, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(src, dst)
    _fsync_dir(Path(dst).parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


@contextlib.contextmanager
def staging_dir(parent: Path, prefix: str = STAGING_PREFIX) -> Iterator[Path]:
    """A fresh folder in `parent`, held (flock) while in use and removed afterwards unless the
    caller renamed it into place. Its mode follows the umask like any folder."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _hold(fd)
        os.chmod(folder, dir_mode())
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def write_new_file(folder: Path, parts: tuple[str, ...], data: bytes) -> Path:
    """Create folder/<parts...> for bytes from outside (an imported bundle): the path is built from
    checked parts only, must stay inside `folder`, and no symlink is followed or file replaced."""
    root = Path(folder).resolve()
    target = root.joinpath(*parts)
    if any(p in ("", ".", "..") or "/" in p or "\0" in p for p in parts):
        raise ValueError(f"unsafe path parts {parts!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.parent.resolve().is_relative_to(root) or target.parent.is_symlink():
        raise ValueError(f"{target} is outside {root}")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, file_mode())
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return target


def is_held(path: Path) -> bool:
    """True when a live process holds the leftover (its flock); False for one a dead process left."""
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0) | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        _hold(fd)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False


def clean_stale(folder: Path, prefixes: tuple[str, ...] = (TEMP_PREFIX, STAGING_PREFIX)) -> list[Path]:
    """Remove temp files and staging folders in `folder` that no live process holds."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(prefixes):
            continue
        with contextlib.suppress(OSError):
            if now - entry.lstat().st_mtime < STALE_AFTER_S:
                continue
        if not is_held(entry):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(data: Any) -> str:
    """Content hash of a JSON-able value, stable across key order (for cache keys)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
