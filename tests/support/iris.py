"""What the session's registry holds: the iris versions the tests release, good and bad."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IrisVersions:
    """Versions of the registered model `iris` that the tests release."""

    tracking_uri: str
    model: str
    good: str  # well fit
    other: str  # another good version (underfit, still serves)
    third: str  # a third good version
    broken: str  # registered, but its artifacts are gone
    constant: str  # always predicts class 0: fails a golden smoke test
    slow: str  # answers correctly, too slowly for the smoke test's budget
    no_example: str  # logged without an input example
