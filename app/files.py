"""The service's files are its own (docs/RULES.md#files): the data folder is made with mode
0700, and the SQLite database and every key file in it are readable by their owner only
(0600). SQLite gives a database's `-wal` and `-shm` files the database file's mode.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """`path`, made (with its missing parents) with mode 0700. A folder that already
    exists keeps its mode: it may be shared on purpose, and is the operator's to set."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    return path


def private_file(path: Path) -> Path:
    """`path`, made empty if missing, and set to mode 0600 whatever it was. A file of
    another owner cannot be changed: that is said in the log, and the file is used as it
    is (the operator chose to share it)."""
    private_dir(path.parent)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
    _tighten(path)
    return path


def create_once(path: Path, content: bytes) -> Path:
    """`path` holding `content` if it did not exist, else as it is: written whole to a
    private temporary file first and linked into place, so of several processes starting
    at once exactly one wins and none reads a half-written file (mode 0600 either way)."""
    private_dir(path.parent)
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # fails if another process won the race
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    _tighten(path)  # a file kept from before is made private too
    return path


def _tighten(path: Path) -> None:
    try:
        os.chmod(path, PRIVATE_FILE)
    except PermissionError:
        log.warning("%s belongs to another user; its mode is left as it is", path)


def private_sqlite_database(path: Path) -> None:
    """The database file and whatever `-wal`/`-shm` it has left, made private before SQLite
    opens them (SQLite makes new ones with the database file's mode)."""
    private_file(path)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            _tighten(companion)
