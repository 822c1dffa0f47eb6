"""One kube-sandbox for a pytest session: build check, up, and a down that must leave nothing.

Used by tests/cluster: a real node whose pods run the project's image. ``mark_cold_build``
gives the first test of a tier the time a cold build takes on a machine whose cache lacks
the binaries.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kube_sandbox import build, fixture, teardown
from kube_sandbox.layout import Layout, State

COLD_BUILD_TIMEOUT_S = 3600
# The node's directory: one node runs per machine, and its directory holds what `down` needs
# to restore the host (the sysctls before, the PIDs, the cgroup root). Outside pytest's base
# temp, which another pytest session on the machine prunes (it keeps 3) while this one runs.
NODE_DIR = Path("/var/tmp/bluegreen-kube-node")


def mark_cold_build(items: list[pytest.Item], tier: str) -> None:
    """On a machine without the binaries, the first test of ``tier`` pays the cold build."""
    if build.is_built():
        return
    first = next((i for i in items if f"tests/{tier}/" in str(i.fspath)), None)
    if first is not None:
        first.add_marker(pytest.mark.timeout(COLD_BUILD_TIMEOUT_S))


@contextmanager
def running_sandbox(*, images: list[str], directory: Path = NODE_DIR) -> Iterator[fixture.Sandbox]:
    """A real node with ``images`` in its containerd; ``down`` must leave nothing behind."""
    t0 = time.monotonic()
    fixture.build()
    t1 = time.monotonic()
    sb = fixture.up(directory, images=images)
    print(f"\nkube-sandbox: build check {t1 - t0:.1f} s, up {time.monotonic() - t1:.1f} s")
    try:
        yield sb
    finally:
        sb.down()
        left = teardown.leftovers(Layout(sb.dir), State.load(Layout(sb.dir).state_json))
        assert not any(left.values()), f"left behind by down: {left}"
        # The node's logs stay for a look after the run; its data (the image unpacked in
        # containerd: gigabytes) does not.
        for part in Path(sb.dir).iterdir():
            if part.name != "logs":
                if part.is_dir():
                    shutil.rmtree(part, ignore_errors=True)
                else:
                    part.unlink(missing_ok=True)
