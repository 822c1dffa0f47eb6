"""The batch proof: a regressor whose single rows change in merged batches is caught."""

from __future__ import annotations

import warnings

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from model_server.loaded_model import LoadedModel
from model_server.scoring import prove_batch_invariance
from model_server.signature_matrix import SignatureColumns

COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def _model(estimator: object, columns: list[str]) -> LoadedModel:
    return LoadedModel(
        "m", "1", None, "models:/m/1", None, SignatureColumns(tuple(columns)), estimator
    )


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", message="X does not have valid feature names")


class BlockedSums(LinearRegression):
    """A regressor whose answer for a row depends on the batch around it, as a BLAS that
    sums in blocks makes it: the last bits move with the batch size. Whether a plain
    LinearRegression does so depends on the BLAS build (this machine's numpy gives equal
    bits since 2026-12), so the test makes it happen instead of hoping for it."""

    def predict(self, X):  # type: ignore[no-untyped-def]  # sklearn's signature
        return super().predict(X) + (len(X) - 1) * 1e-12


def test_a_regressor_whose_single_rows_move_in_a_batch_is_not_batched() -> None:
    frame = load_iris(as_frame=True).frame
    regressor = BlockedSums().fit(frame[COLUMNS[:3]], frame[COLUMNS[3]])
    reason = prove_batch_invariance(_model(regressor, COLUMNS[:3]))
    assert reason is not None and "differs from the same row alone" in reason


def test_a_classifier_is_batched() -> None:
    frame = load_iris(as_frame=True).frame
    classifier = LogisticRegression(max_iter=300).fit(frame[COLUMNS], frame["target"])
    assert prove_batch_invariance(_model(classifier, COLUMNS)) is None
