"""The controller's vocabulary, the bottom layer every other controller module may use.

`release` holds colors, routes, versions, operations and the journal; `analysis` the
policy a release is judged by and what was measured. Importable from here.
"""

from controller.domain.release import (
    COLORS,
    Color,
    ColorStatus,
    Golden,
    Journal,
    Operation,
    OperationId,
    OperationKind,
    OperationStatus,
    ResolvedVersion,
    Route,
    Stable,
    StepName,
    StepRecord,
    input_rows,
    other_color,
    utcnow,
)

__all__ = [
    "COLORS",
    "Color",
    "ColorStatus",
    "Golden",
    "Journal",
    "Operation",
    "OperationId",
    "OperationKind",
    "OperationStatus",
    "ResolvedVersion",
    "Route",
    "Stable",
    "StepName",
    "StepRecord",
    "input_rows",
    "other_color",
    "utcnow",
]
