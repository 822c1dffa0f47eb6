"""One kube-sandbox for a pytest session: build check, up, and a down that must leave nothing.

Shared by the tiers on the sandbox (tests/sandbox on the stand-in node, whose pods run from
this interpreter's folder with ``image_env`` standing in for an image's environment;
tests/cluster on the real node, whose pods run the project's image). ``mark_cold_build``
gives the first test of a tier the time a cold build takes on a machine whose cache lacks
the binaries.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kube_sandbox import build, fixture, teardown
from kube_sandbox.layout import Layout, State

PODS_PATH = [str(Path(sys.executable).parent)]
COLD_BUILD_TIMEOUT_S = 3600


def mark_cold_build(items: list[pytest.Item], tier: str) -> None:
    """On a machine without the binaries, the first test of ``tier`` pays the cold build."""
    if build.is_built():
        return
    first = next((i for i in items if f"tests/{tier}/" in str(i.fspath)), None)
    if first is not None:
        first.add_marker(pytest.mark.timeout(COLD_BUILD_TIMEOUT_S))


@contextmanager
def running_sandbox(
    directory: Path, *, image_env: dict[str, str] | None = None, images: list[str] | None = None
) -> Iterator[fixture.Sandbox]:
    """The stand-in node (pods as processes of this venv, ``image_env`` their environment)
    unless ``images`` are given: then the real node, with those images in its containerd."""
    t0 = time.monotonic()
    fixture.build()
    t1 = time.monotonic()
    if images:
        sb = fixture.up(directory, node="real", images=images)
    else:
        sb = fixture.up(directory, node="standin", path=PODS_PATH, image_env=image_env)
    print(f"\nkube-sandbox: build check {t1 - t0:.1f} s, up {time.monotonic() - t1:.1f} s")
    try:
        yield sb
    finally:
        sb.down()
        left = teardown.leftovers(Layout(sb.dir), State.load(Layout(sb.dir).state_json))
        assert not any(left.values()), f"left behind by down: {left}"
