"""The release page's traffic rates and its static files (units; the browser test is in
tests/page)."""

from __future__ import annotations

import re
from importlib import resources

from controller.page_traffic import TrafficSampler, counts_by_version


def metrics_text(version: str, ok: float, errors: float, *, health: float = 0.0) -> str:
    return (
        "# HELP bluegreen_model_requests_total x\n"
        "# TYPE bluegreen_model_requests_total counter\n"
        f'bluegreen_model_requests_total{{color="blue",endpoint="/predict",status="200",'
        f'version="{version}"}} {ok}\n'
        f'bluegreen_model_requests_total{{color="blue",endpoint="/predict",status="500",'
        f'version="{version}"}} {errors}\n'
        f'bluegreen_model_requests_total{{color="blue",endpoint="/readyz",status="200",'
        f'version="{version}"}} {health}\n'
    )


def test_counts_are_scoring_requests_by_version_with_5xx_as_errors() -> None:
    counts = counts_by_version(metrics_text("3", 90, 10, health=1000))
    assert counts["3"].requests == 100 and counts["3"].errors == 10


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rates_per_second_between_samples_and_a_restart_counts_from_zero(
    monkeypatch: object,
) -> None:
    texts = iter([metrics_text("1", 0, 0), metrics_text("1", 200, 0), metrics_text("1", 20, 4)])
    clock = FakeClock()
    sampler = TrafficSampler(endpoints=lambda: {"blue": ["http://x"]}, clock=clock)

    class Answer:
        def __init__(self, text: str) -> None:
            self.text = text

        def raise_for_status(self) -> None:
            pass

    sampler._client.get = lambda url: Answer(next(texts))  # type: ignore[method-assign,assignment,misc]
    assert sampler.sample() == []  # the first sample is only a starting point
    clock.now += 0.5
    assert sampler.sample() == []  # under a second: no new sample
    clock.now += 1.5
    points = sampler.sample()
    assert points[-1].rates["1"].requests == 100.0  # 200 requests in 2 s
    assert points[-1].colors == {"1": "blue"}
    clock.now += 2
    points = sampler.sample()
    assert points[-1].rates["1"].requests == 12.0  # restarted: 24 since, in 2 s
    assert points[-1].rates["1"].errors == 2.0
    assert sampler.pods == {"blue": 1}


def test_the_page_uses_relative_urls_only() -> None:
    """Behind an ingress prefix, a URL starting with '/' would leave the prefix."""
    static = resources.files("controller").joinpath("static")
    html = static.joinpath("index.html").read_text()
    script = static.joinpath("page.js").read_text()
    assert not re.findall(r'(?:src|href)="/', html)
    assert not re.findall(r'(?:src|href)="https?:', html)  # no CDN
    for call in re.findall(r'(?:getJson|act|fetch)\(\s*"([^"]*)"', script):
        assert not call.startswith(("/", "http")), call
    assert re.findall(r'getJson\(\s*"status"', script)
