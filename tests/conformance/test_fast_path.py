"""The fast path takes the common JSON forms and only those, and batching keeps MLflow's answers.

Side by side with `mlflow models serve` like the rest of the suite, plus our own
`bluegreen_model_scoring_path_total` counter to see which code answered: the common forms
must be answered by the numpy matrix and the batcher (the speed the README promises),
everything else by MLflow's own code. Concurrent requests, merged into shared predict
calls by the batcher, must each get MLflow's answer to that request alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conformance.answers import same, send
from tests.conformance.case import Case
from tests.conformance.cases import ALL_CASES, CASES_BY_ID
from tests.conformance.differences import DIFFERENCES
from tests.conformance.servers import ServerPair
from tests.support.model_kinds import KINDS

FAST_KINDS = ("columns", "regressor")
BATCHED_KINDS = ("columns",)
# The regressor is batched only where the load-time proof finds this machine's BLAS gives
# a row the same bits alone and in a batch (numpy's builds differ); either way its answers
# must equal MLflow's, batched or not.
PROOF_DECIDES = ("regressor",)
# The forms the fast path claims (a numpy matrix, no pandas, no pyfunc).
FAST_FORMS = {
    "split one row",
    "split rows",
    "split integers",
    "split mixed ints and floats",
    "split reordered columns",
    "split rotated columns",
    "split exponents",
    "split negative zero",
    "split huge values",
    "split ints beyond 2**53",
    "split ints beyond 2**63",
    "split ints beyond 2**64",
    "duplicate keys",
    "split booleans",
    "split all booleans",
    "split rows of ints and booleans",
    "split 200 rows",
    "records one row",
    "records rows",
    "records keys in other order",
    "records integers",
    "records booleans",
    "instances records",
    "instances booleans",
    "inputs columnar",
    "inputs columnar one row",
    "inputs columnar booleans",
    "content-type json",
    "content-type json-charset-utf-8",
    "content-type json-charset-UTF-8",
    "content-type json-charset-no-space",
}


def _paths(client: httpx.Client) -> dict[str, float]:
    counts = {"fast": 0.0, "mlflow": 0.0}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "bluegreen_model_scoring_path_total":
                counts[sample.labels["path"]] += sample.value
    return counts


def _batches(client: httpx.Client) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "bluegreen_model_batch_rows_count":
                return sample.value
    return 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_model_info_says_which_models_take_the_fast_path(
    kind: str, server_pairs: Callable[[str], ServerPair]
) -> None:
    info = server_pairs(kind).client("ours").get("/model-info").json()
    assert info["fast_path"] is (kind in FAST_KINDS)
    # A regressor's BLAS sums may change in the last digit with the batch's shape: the proof
    # at load time decides (tests/model_server/test_batch_proof.py proves it catches that);
    # labels merge safely.
    if kind not in PROOF_DECIDES:
        assert info["batching"] is (kind in BATCHED_KINDS)


_ROUTED = [
    c for c in ALL_CASES if c.kind in FAST_KINDS and c.is_json_scoring and c.id not in DIFFERENCES
]


@pytest.mark.parametrize("case", _ROUTED, ids=[c.id for c in _ROUTED])
def test_the_common_forms_take_the_fast_path_and_nothing_else(
    case: Case, server_pairs: Callable[[str], ServerPair]
) -> None:
    client = server_pairs(case.kind).client("ours")
    before = _paths(client)
    send(client, case)
    after = _paths(client)
    took = {path: after[path] - before[path] for path in after}
    expected = "fast" if case.name in FAST_FORMS else "mlflow"
    assert took == {"fast": float(expected == "fast"), "mlflow": float(expected == "mlflow")}


@pytest.mark.parametrize("kind", FAST_KINDS)
def test_concurrent_requests_are_batched_and_still_answer_as_mlflow(
    kind: str, server_pairs: Callable[[str], ServerPair]
) -> None:
    pair = server_pairs(kind)
    cases = [
        CASES_BY_ID[f"{kind}/{name}"]
        for name in sorted(FAST_FORMS)
        if f"{kind}/{name}" in CASES_BY_ID
    ] * 6
    theirs = {case.id: send(pair.client("theirs"), case) for case in cases}
    batches_before = _batches(pair.client("ours"))

    async def all_at_once() -> list[tuple[Case, httpx.Response]]:
        async with httpx.AsyncClient(base_url=pair.ours.url, timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.post(c.path, content=c.body, headers={"content-type": c.content_type})
                    for c in cases
                )
            )
        return list(zip(cases, responses, strict=True))

    for case, response in asyncio.run(all_at_once()):
        expected = theirs[case.id]
        assert response.status_code == expected.status == 200
        assert response.content == expected.body, (case.id, same(expected, expected))
    merged_calls = _batches(pair.client("ours")) - batches_before
    batching = pair.client("ours").get("/model-info").json()["batching"]
    if kind in BATCHED_KINDS or (kind in PROOF_DECIDES and batching):
        assert merged_calls < len(cases), "no two requests shared a predict call: batching unseen"
    else:
        assert merged_calls == len(cases), "an unbatchable model's requests were merged"
