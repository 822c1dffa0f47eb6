"""The journal and the release lock on one machine: files in the controller's state dir.

Used by the local stack. The journal is replaced atomically (write, fsync, rename), so a
controller killed at any instant leaves the old or the new file, never half of one. The
lock is an `flock` on a file: the kernel drops it when the holder dies, so a SIGKILLed
controller never blocks the next release.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from controller.errors import ReleaseInProgress
from controller.model import Journal


class FileJournal:
    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir
        self._dir.mkdir(parents=True, exist_ok=True)

    def _path(self, model: str) -> Path:
        return self._dir / f"journal-{model}.json"

    def load(self, model: str) -> Journal:
        path = self._path(model)
        if not path.exists():
            return Journal(model=model)
        return Journal.model_validate_json(path.read_text())

    def save(self, journal: Journal) -> None:
        write_atomically(self._path(journal.model), journal.model_dump_json(indent=1))


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileLock:
    """One release at a time, across threads and processes of this machine."""

    def __init__(self, state_dir: Path, name: str = "release") -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self._path = state_dir / f"{name}.lock"

    @contextmanager
    def hold(self, holder: str) -> Iterator[None]:
        # A fresh open file description per attempt: flock then excludes other
        # threads of this process as well as other processes.
        handle = open(self._path, "a+")  # noqa: SIM115 - closed in finally
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise ReleaseInProgress(
                    f"another operation is running ({_holder(handle.read())}); try again after it"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"holder": holder, "pid": os.getpid()}))
            handle.flush()
            yield
        finally:
            handle.close()


def _holder(text: str) -> str:
    try:
        return str(json.loads(text).get("holder", "unknown"))
    except ValueError:
        return "unknown"
