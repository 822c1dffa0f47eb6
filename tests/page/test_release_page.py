"""The release page in a real browser, on a real local stack under load.

Debian's headless Chromium (driven by Selenium) opens the controller's `/`: the page loads
with no console error, shows the live version, follows a switch step by step while traffic
runs (the screenshot in the README is taken here, mid-release), a rollback pressed with the
token moves traffic, and a bad release's bake rollback shows with its reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from bluegreen.client import ControllerClient
from bluegreen.iris import IRIS_ROWS
from bluegreen.stack import LocalStack
from bluegreen.traffic import TrafficProbe
from tests.page.browser import chromium, console_errors
from tests.page.prefix_proxy import prefix_proxy
from tests.support import waiting
from tests.support.iris import IrisVersions
from tests.support.local_stack import TOKEN

# The README's screenshot is refreshed only on request, so a CI run leaves the tree clean:
# BLUEGREEN_PAGE_SCREENSHOT=docs/release-page.png pytest tests/page
SCREENSHOT_ENV = "BLUEGREEN_PAGE_SCREENSHOT"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path / "profile") as driver:
        yield driver


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    # The page is local DOM, cheap to read: look often, so each step is seen as it lands.
    return waiting.wait_for(what, check, timeout_s=timeout_s, interval_s=0.1)


def text(driver: webdriver.Chrome, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def steps_shown(driver: webdriver.Chrome) -> tuple[tuple[str, str], ...]:
    """The steps list as (name, phase), read in one script call: the page redraws it."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#steps li')]"
        ".map(li => [li.dataset.step, li.dataset.phase])"
    )
    return tuple((str(name), str(phase)) for name, phase in rows)


def history_rows(driver: webdriver.Chrome, status: str) -> list[str]:
    texts = driver.execute_script(
        "return [...document.querySelectorAll(`#history tr[data-status=${arguments[0]}]`)]"
        ".map(tr => tr.innerText)",
        status,
    )
    return [str(t) for t in texts]


def test_the_page_follows_a_release_a_rollback_and_a_bake_rollback(
    stack: LocalStack, browser: webdriver.Chrome, iris: IrisVersions
) -> None:
    # Through an ingress-like path prefix: every URL the page uses must be relative.
    with prefix_proxy(stack.controller_url) as page_url:
        follow_releases(stack, browser, iris, page_url)


def follow_releases(
    stack: LocalStack, browser: webdriver.Chrome, iris: IrisVersions, page_url: str
) -> None:
    screenshot = Path(os.environ.get(SCREENSHOT_ENV) or stack.state_dir / "release-page.png")
    browser.get(page_url)
    wait_for("v1 live", lambda: text(browser, "live-version") == f"v{iris.good}")
    assert text(browser, "live-color") == "blue"
    assert text(browser, "live-ready") == "ready"
    assert text(browser, "standby-version") == "none"
    assert browser.find_element(By.ID, "btn-rollback").is_displayed() is False

    client = ControllerClient(stack.controller_url, token=TOKEN)
    router = f"{stack.router_url}/predict"
    with TrafficProbe(url=router, clients=3, payload=IRIS_ROWS) as traffic:
        wait_for("traffic on the chart", lambda: f"v{iris.good} (blue)" in text(browser, "legend"))
        # A release with shadow and bake windows, followed on the page as it runs.
        op = client.switch(version=iris.other, wait=False, shadow_s=4, bake_s=8)
        seen: list[tuple[tuple[str, str], ...]] = []
        screenshot_taken = False
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            shown = steps_shown(browser)
            if shown and (not seen or shown != seen[-1]):
                seen.append(shown)
            if not screenshot_taken and ("bake", "running") in shown:
                time.sleep(2)  # a few bake samples on the screen
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                assert browser.save_screenshot(str(screenshot))
                screenshot_taken = True
            if "promoted" in text(browser, "op-status"):
                break
            time.sleep(0.1)
        assert "promoted" in text(browser, "op-status"), seen
        assert screenshot_taken
        # Step by step: each step seen running before it was seen done, in order.
        running = [step for shot in seen for step, phase in shot if phase == "running"]
        assert {"stage", "shadow", "bake"} <= set(running), seen
        assert seen[-1] == (
            ("resolve", "ok"),
            ("stage", "ok"),
            ("verify", "ok"),
            ("shadow", "ok"),
            ("promote", "ok"),
            ("bake", "ok"),
        ), seen[-1]
        assert op["id"] in text(browser, "op-title")
        wait_for("v2 live", lambda: text(browser, "live-version") == f"v{iris.other}")
        assert text(browser, "live-color") == "green"
        assert "bake · pass" in text(browser, "analysis").lower()
        # The chart moved: the new version's line is drawn and now carries the traffic.
        wait_for(
            "v2 on the chart",
            lambda: browser.find_elements(
                By.CSS_SELECTOR, f'#chart-rps polyline[data-version="{iris.other}"]'
            ),
        )
        latest = httpx.get(f"{page_url}page/traffic").json()["points"][-1]
        assert latest["versions"][iris.other]["rps"] > 0
        assert latest["versions"].get(iris.good, {"rps": 0})["rps"] == 0

        # The rollback button: refused without the token, then pressed with it.
        button = browser.find_element(By.ID, "btn-rollback")
        wait_for("rollback offered", button.is_displayed)
        button.click()
        wait_for("token asked", lambda: "needs the API token" in text(browser, "message"))
        assert text(browser, "live-version") == f"v{iris.other}"
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        button.click()
        wait_for("rolled back", lambda: "rollback: rolled_back" in text(browser, "message"))
        wait_for("v1 live again", lambda: text(browser, "live-version") == f"v{iris.good}")
        shown_at = time.monotonic()
        time.sleep(1.0)
        after = [r for r in traffic.snapshot() if r.started > shown_at]
        assert after and all(r.version == iris.good for r in after)

        # A bad version: smoke test passes, the bake sees its classes and flips back.
        bad = client.switch(version=iris.constant, wait=False, bake_s=30)
        wait_for("the bad release shown", lambda: bad["id"] in text(browser, "op-title"))
        wait_for("bake rollback", lambda: "rolled_back" in text(browser, "op-status"), 120)
        assert "at bake" in text(browser, "op-status")
        reason = text(browser, "op-reason")
        assert reason.startswith("reason: bake check class_shift"), reason
        assert "fail" in text(browser, "analysis")
        rows = wait_for("history row", lambda: history_rows(browser, "rolled_back"))
        assert any("bake check class_shift" in r for r in rows), rows
        assert text(browser, "live-version") == f"v{iris.good}"
    assert not [r for r in traffic.snapshot() if r.status != 200]
    assert console_errors(browser) == []
