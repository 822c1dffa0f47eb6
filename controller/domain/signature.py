"""Does a new version still accept what the live one accepts? MLflow input signatures compared.

Pure functions over the `signature.inputs` JSON of a version's MLmodel file, called by the
engine's resolve step before anything is loaded (the schema gate). A column the live
version takes that the new one drops or renames, a type narrowed (double → float, long →
integer, or another family), a new required column, or a tensor whose dtype or shape
changed is a problem; an added optional column is not. Without a signature on either side
there is nothing to compare, and the gate says so instead of guessing.
"""

from __future__ import annotations

import json
from typing import Any

# Each type accepts the ones to its left in its family (MLflow's own widening: an int32
# column fits a long or a double, not the other way round).
_WIDENING = (
    ("integer", "long", "float", "double"),
    ("boolean",),
    ("string",),
    ("binary",),
    ("datetime",),
)


def parse_inputs(signature_inputs: str | None) -> list[dict[str, Any]] | None:
    """The input specs of a signature's JSON, or None when there is none (or it is unreadable)."""
    if not signature_inputs:
        return None
    try:
        specs = json.loads(signature_inputs)
    except ValueError:
        return None
    return [s for s in specs if isinstance(s, dict)] if isinstance(specs, list) else None


def input_changes(live: list[dict[str, Any]] | None, new: list[dict[str, Any]] | None) -> list[str]:
    """What the live version accepts that the new one refuses, one line per column."""
    if live is None or new is None:
        return []
    if _is_tensor(live) or _is_tensor(new):
        return _tensor_changes(live, new)
    named_live = {str(s.get("name", i)): s for i, s in enumerate(live)}
    named_new = {str(s.get("name", i)): s for i, s in enumerate(new)}
    problems = []
    for name, spec in named_live.items():
        if name not in named_new:
            problems.append(f"column {name!r} ({spec.get('type')}) was dropped or renamed")
            continue
        before, after = str(spec.get("type")), str(named_new[name].get("type"))
        if not _accepts(after, before):
            problems.append(f"column {name!r} narrowed from {before} to {after}")
    for name, spec in named_new.items():
        if name not in named_live and spec.get("required", True):
            problems.append(f"column {name!r} ({spec.get('type')}) is new and required")
    return problems


def _accepts(new_type: str, live_type: str) -> bool:
    if new_type == live_type:
        return True
    for family in _WIDENING:
        if new_type in family and live_type in family:
            return family.index(new_type) >= family.index(live_type)
    return False


def _is_tensor(specs: list[dict[str, Any]]) -> bool:
    return any(s.get("type") == "tensor" for s in specs)


def _tensor_changes(live: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    if len(live) != len(new) or not (_is_tensor(live) and _is_tensor(new)):
        return [f"inputs changed from {_describe(live)} to {_describe(new)}"]
    problems = []
    for index, (before, after) in enumerate(zip(live, new, strict=True)):
        name = before.get("name", index)
        spec_before, spec_after = before.get("tensor-spec", {}), after.get("tensor-spec", {})
        if spec_before.get("dtype") != spec_after.get("dtype"):
            problems.append(
                f"tensor {name!r} dtype changed from {spec_before.get('dtype')} to "
                f"{spec_after.get('dtype')}"
            )
        if not _shape_accepts(spec_after.get("shape"), spec_before.get("shape")):
            problems.append(
                f"tensor {name!r} shape changed from {spec_before.get('shape')} to "
                f"{spec_after.get('shape')}"
            )
    return problems


def _shape_accepts(new: Any, live: Any) -> bool:
    """-1 takes any size; a fixed size takes only itself."""
    if not isinstance(new, list) or not isinstance(live, list) or len(new) != len(live):
        return bool(new == live)
    return all(n == -1 or n == m for n, m in zip(new, live, strict=True))


def _describe(specs: list[dict[str, Any]]) -> str:
    return ", ".join(str(s.get("name") or s.get("type")) for s in specs) or "nothing"
