"""Crash- and race-safe file output: a reader sees the old file or the new one, never a torn one.

A leaf module (standard library only) so every stage that writes a file can use it.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; each file is still replaced whole, only the set lock is lost
    fcntl = None  # type: ignore[assignment]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _create_temp(folder: Path, name: str) -> tuple[int, Path]:
    """A new, empty ``.<name>.<random>.tmp`` in ``folder``: the same file system as the target, so the
    final rename is atomic. Not ``tempfile.mkstemp``: it creates mode 0600, which would turn reports
    private; ``os.open`` with 0o666 gives the umask's mode, as ``Path.write_text`` did."""
    for _ in range(100):
        path = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(folder))


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; skipped where folders cannot be opened (Windows, some file systems)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _naming(err: OSError, path: Path) -> OSError:
    """The same error, naming the file the caller asked for rather than our temporary one."""
    return OSError(err.errno, err.strerror or str(err), str(path))


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) so that, whatever happens, ``path`` holds the old or the new text.

    A symlink at ``path`` is replaced, not followed. On any failure the temporary file is removed and the
    old file is left as it was; an ``OSError`` names ``path``.
    """
    try:
        fd, tmp = _create_temp(path.parent, path.name)
    except OSError as err:
        raise _naming(err, path) from err
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())  # the data must be on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException as err:  # KeyboardInterrupt too: never leave a stray temporary file
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _naming(err, path) from err
        raise
    _fsync_folder(path.parent)


def probe_writable(folder: Path) -> None:
    """Create ``folder`` if missing and prove a file can be made in it, so an unusable report folder fails
    before any model loads rather than after the run; raises an ``OSError`` whose filename is ``folder``."""
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(folder, "circuitcheck-probe")
        os.close(fd)
        tmp.unlink()
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(folder)) from err


@contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an advisory ``flock`` on ``lock_path`` while the block runs, then delete it.

    The holder deletes the lock file so no debris stays in the report folder. A waiter may then hold a lock
    on a deleted file, so after locking it checks that the path still names the file it locked, and retries
    if not: only the holder of the file currently at ``lock_path`` proceeds.
    """
    if fcntl is None:
        yield
        return
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held, now = os.fstat(fd), os.stat(lock_path)
        except FileNotFoundError:  # the previous holder deleted it between our open and our stat
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            lock_path.unlink(missing_ok=True)  # while still locked: see the docstring
        finally:
            os.close(fd)  # closing releases the lock
