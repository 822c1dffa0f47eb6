"""Every conformance case, gathered from the catalogs; what the side-by-side test runs.

`ALL_CASES` is ordered by model kind, so each kind's pair of servers is needed by one
contiguous run of tests.
"""

from __future__ import annotations

from collections import Counter

from tests.conformance.case import Case
from tests.conformance.catalog_bodies import csv_cases, json_syntax_cases, limit_cases
from tests.conformance.catalog_columns import column_model_cases
from tests.conformance.catalog_kinds import nosig_cases, params_cases, tensor_cases
from tests.conformance.catalog_protocol import content_type_cases, meta_cases
from tests.support.model_kinds import KINDS


def _gather() -> list[Case]:
    cases = [
        *meta_cases(),
        *content_type_cases(),
        *column_model_cases(),
        *json_syntax_cases(),
        *csv_cases(),
        *limit_cases(),
        *tensor_cases(),
        *nosig_cases(),
        *params_cases(),
    ]
    duplicates = [case_id for case_id, n in Counter(c.id for c in cases).items() if n > 1]
    if duplicates:
        raise ValueError(f"duplicate case ids: {duplicates}")
    return sorted(cases, key=lambda case: KINDS.index(case.kind))


ALL_CASES: list[Case] = _gather()
CASES_BY_ID: dict[str, Case] = {case.id: case for case in ALL_CASES}


def counts() -> dict[str, Counter[str]]:
    """Case counts by class and by model kind (for the README)."""
    return {
        "class": Counter(case.klass for case in ALL_CASES),
        "kind": Counter(case.kind for case in ALL_CASES),
    }
