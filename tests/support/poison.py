"""A transformer step that refuses one flower, for a model version that fails on live traffic.

Module level on purpose: the model server pickles the loaded model into its cache, and a
function pickles by its import path, which the model server (started from the repository
root, like the tests) can import. Imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

POISON_SEPAL_CM = 6.65  # no iris in the training set has it


def refuse_the_poison(x: Any) -> Any:
    import numpy as np

    if np.any(np.asarray(x)[:, 0] == POISON_SEPAL_CM):
        raise RuntimeError(f"cannot score a {POISON_SEPAL_CM} cm sepal")
    return x
