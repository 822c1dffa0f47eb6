"""The release vocabulary: colors, routes, registry versions, operations, the journal.

Plain pydantic records shared by the engine, its ports and the adapters; no behaviour
beyond `other_color` and counting a body's rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, NewType

from pydantic import BaseModel, Field, model_validator

from controller.domain.analysis import Analysis, AnalysisPolicy

Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")
OperationId = NewType("OperationId", str)

OperationKind = Literal["switch", "rollback"]
OperationStatus = Literal[
    "running", "paused", "baking", "promoted", "unchanged", "aborted", "rolled_back"
]
StepName = Literal["resolve", "stage", "verify", "shadow", "promote", "bake", "rollback"]


def other_color(color: Color) -> Color:
    return "green" if color == "blue" else "blue"


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ResolvedVersion(BaseModel):
    """One concrete registry version and what verify needs from it."""

    model: str
    version: str
    run_id: str | None = None
    source: str | None = None
    serving_input_example: str | None = None
    signature_inputs: str | None = None
    """The MLmodel signature's `inputs` JSON; None when logged without a signature."""


_SCORING_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def input_rows(payload: Any) -> int:
    """How many rows a `/predict` body holds; `ValueError` saying why when it holds none."""
    if isinstance(payload, list):
        if not payload:
            raise ValueError("holds no rows")
        return len(payload)
    if not isinstance(payload, dict):
        raise ValueError("must be a JSON array of rows or an object in an MLflow scoring format")
    keys = [key for key in _SCORING_KEYS if key in payload]
    if len(keys) != 1:
        raise ValueError(f"must have exactly one of {list(_SCORING_KEYS)}, has {sorted(payload)}")
    value = payload[keys[0]]
    if keys[0] == "dataframe_split":
        data = value.get("data") if isinstance(value, dict) else None
        return input_rows(data if isinstance(data, list) else None)
    if isinstance(value, dict) and value:  # columnar: {"column": [values], ...}
        first = next(iter(value.values()))
        return len(first) if isinstance(first, list) and first else 1
    return input_rows(value if isinstance(value, list) else None)


class Golden(BaseModel):
    """A golden smoke test: inputs in any `/predict` format and the predictions expected."""

    inputs: list[Any] | dict[str, Any]
    expected: list[Any] | None = None

    @model_validator(mode="after")
    def _rows_match(self) -> Golden:
        try:
            rows = input_rows(self.inputs)
        except ValueError as exc:
            raise ValueError(f"golden inputs {exc}") from None
        if self.expected is not None and len(self.expected) != rows:
            raise ValueError(
                f"golden expects {len(self.expected)} predictions for {rows} input rows"
            )
        return self

    @property
    def rows(self) -> int:
        return input_rows(self.inputs)


class Route(BaseModel):
    """Where live traffic goes, with an opaque revision for conditional writes."""

    color: Color
    revision: str


class ColorStatus(BaseModel):
    color: Color
    version: str | None
    ready: bool


class StepRecord(BaseModel):
    name: StepName
    started_at: str
    seconds: float | None = None
    ok: bool | None = None
    detail: str | None = None


class Operation(BaseModel):
    """One switch or rollback, as it ran; what `/operations/{id}` and `/history` answer."""

    id: OperationId
    kind: OperationKind
    model: str
    status: OperationStatus = "running"
    requested: dict[str, str] = Field(default_factory=dict)
    target_version: str | None = None
    from_color: Color | None = None
    to_color: Color | None = None
    from_version: str | None = None
    failed_step: StepName | None = None
    reason: str | None = None
    error: str | None = None
    """A stable code for why it did not finish as asked (`verify_failed`, `aborted`, ...)."""
    retryable: bool | None = None
    """Whether the same request may succeed later; set with `error`."""
    route_revision: str | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    analysis: Analysis | None = None
    policy: AnalysisPolicy | None = None
    """The analysis a release runs with (kept so a paused release resumes as asked)."""
    started_at: str = Field(default_factory=utcnow)
    finished_at: str | None = None
    seconds: float | None = None


class Stable(BaseModel):
    """What a rollback returns to: the color and version that were live before."""

    color: Color
    version: str


class Journal(BaseModel):
    """Everything the controller must remember across restarts."""

    model: str
    current: Operation | None = None
    previous: Stable | None = None
    history: list[Operation] = Field(default_factory=list)
    parked: Stable | None = None
    """The standby scaled down after the warm window, and the version it held."""
    live_versions: list[str] = Field(default_factory=list)
    """Versions in the order they went live, oldest first, each once (rollback by version)."""
