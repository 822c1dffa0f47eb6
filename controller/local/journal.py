"""The journal on one machine: a JSON file in the controller's state dir.

Replaced atomically (write, fsync, rename, fsync the directory), so a controller killed
at any instant leaves the old or the new file, never half of one. A file that cannot be
read back is refused at start-up with a message, never silently replaced.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from controller.domain import Journal
from controller.errors import JournalUnavailable
from plumbing.files import write_atomically


class CorruptJournal(ValueError):
    """The journal file exists but does not hold a journal; the controller will not start."""


class FileJournal:
    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir
        self._dir.mkdir(parents=True, exist_ok=True)

    def _path(self, model: str) -> Path:
        return self._dir / f"journal-{model}.json"

    def load(self, model: str) -> Journal:
        path = self._path(model)
        try:
            return Journal.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return Journal(model=model)
        except (ValidationError, ValueError) as exc:
            raise CorruptJournal(
                f"{path} is not a readable journal ({str(exc).splitlines()[0]}); move it "
                "aside to start with an empty history"
            ) from None

    def save(self, journal: Journal) -> None:
        try:
            write_atomically(self._path(journal.model), journal.model_dump_json(indent=1))
        except OSError as exc:
            raise JournalUnavailable(f"cannot write the journal in {self._dir}: {exc}") from None
