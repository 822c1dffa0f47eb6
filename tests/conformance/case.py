"""One conformance case: a request sent unchanged to `mlflow models serve` and to ours.

Used by the catalogs (`catalog_*.py`), which write the cases, and by `cases.py`, which
gathers them. A case names its class (for the README's counts), the model kind whose pair
of servers answers it, and where in MLflow it comes from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

JSON = "application/json"
CSV = "text/csv"

CLASSES = ("meta", "content-type", "json-form", "json-syntax", "csv", "params", "limits")


@dataclass(frozen=True)
class Case:
    kind: str
    klass: str
    name: str
    body: bytes | None = None
    content_type: str | None = JSON
    method: str = "POST"
    path: str = "/invocations"
    source: str = ""  # the MLflow test or code the case comes from

    def __post_init__(self) -> None:
        if self.klass not in CLASSES:
            raise ValueError(f"unknown case class {self.klass!r}")

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def is_json_scoring(self) -> bool:
        """A JSON `/invocations` body that `/predict` must take too."""
        return (
            self.method == "POST"
            and self.path == "/invocations"
            and self.content_type is not None
            and self.content_type.split(";")[0] == JSON
        )


def dumps(value: Any) -> bytes:
    """JSON as MLflow's own clients write it (`json.dumps`, default separators)."""
    return json.dumps(value).encode()


def split(columns: list[str] | None, data: Any, **extra: Any) -> bytes:
    frame: dict[str, Any] = {} if columns is None else {"columns": columns}
    frame["data"] = data
    frame.update(extra)
    return dumps({"dataframe_split": frame})


def records(names: list[str], rows: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(names, row, strict=True)) for row in rows]


def columnar(names: list[str], rows: list[list[Any]]) -> dict[str, list[Any]]:
    return {name: [row[index] for row in rows] for index, name in enumerate(names)}
