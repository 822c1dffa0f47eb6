"""Keeps the journal inside one ConfigMap: the API server refuses objects over 1 MiB (422).

Used by `ConfigMapJournal.save`. The history is capped by count in the engine; here it is
also capped by bytes: long texts (reasons, step details, analysis notes) are cut first,
then the oldest finished operations go, until the JSON fits. The running operation and
the rollback point are never dropped.
"""

from __future__ import annotations

from typing import Any

from controller.domain import Journal

MAX_JOURNAL_BYTES = 900 * 1024  # under the 1 MiB object limit, with room for metadata
MAX_TEXT_CHARS = 512
_CUT = " [...]"


def journal_text(journal: Journal, *, limit: int = MAX_JOURNAL_BYTES) -> str:
    """The journal as JSON no longer than `limit` bytes (UTF-8)."""
    text = journal.model_dump_json()
    if len(text.encode()) <= limit:
        return text
    data = journal.model_dump(mode="json")
    for record in [data.get("current"), *data["history"]]:
        if record is not None:
            _truncate_texts(record)
    text = Journal.model_validate(data).model_dump_json()
    history = data["history"]
    while len(text.encode()) > limit and history:
        drop = max(1, len(history) // 10)  # oldest first, a tenth at a time
        del history[:drop]
        text = Journal.model_validate(data).model_dump_json()
    return text


def _truncate_texts(value: Any) -> Any:
    """Cut every long string inside an operation record, in place."""
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _truncate_texts(item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = _truncate_texts(item)
    elif isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
        return value[: MAX_TEXT_CHARS - len(_CUT)] + _CUT
    return value
