"""The release lock on one machine: an `flock` on a file in the state dir.

The kernel drops the lock when its holder dies, so a SIGKILLed controller never blocks
the next release.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from controller.errors import JournalUnavailable, ReleaseInProgress


class FileLock:
    """One release at a time, across threads and processes of this machine."""

    def __init__(self, state_dir: Path, name: str = "release") -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self._path = state_dir / f"{name}.lock"

    @contextmanager
    def hold(self, holder: str) -> Iterator[None]:
        # A fresh open file description per attempt: flock then excludes other
        # threads of this process as well as other processes.
        try:
            handle = open(self._path, "a+")  # noqa: SIM115 - closed in finally
        except OSError as exc:
            raise JournalUnavailable(f"cannot open the release lock {self._path}: {exc}") from None
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
