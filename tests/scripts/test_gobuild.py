"""The Go build the scripts' tools share (`scripts/gobuild.py`), through `object_store.build`,
with a stand-in `go` on PATH: no toolchain, no download, a second or so.

What a real build must keep: the binary lands in a folder named by its key and appears only
whole, `build.json` says what was built, a second call builds nothing, a new Go version means
a new key, and a machine without Go gets one line instead of a traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from object_store import build

pytestmark = pytest.mark.process  # runs the stand-in `go` as a child process

# `go env GOVERSION` answers $FAKE_GO_VERSION; `go build ... -o OUT PKG` logs its arguments
# and writes an executable OUT.
FAKE_GO = """#!/usr/bin/env python3
import os, sys
args = sys.argv[1:]
if args[:2] == ["env", "GOVERSION"]:
    print(os.environ["FAKE_GO_VERSION"])
    sys.exit(0)
with open(os.environ["FAKE_GO_LOG"], "a") as log:
    log.write(" ".join(args) + " | " + os.environ["GOFLAGS"] + "\\n")
out = args[args.index("-o") + 1]
with open(out, "w") as f:
    f.write("#!/bin/sh\\n")
os.chmod(out, 0o755)
"""


@pytest.fixture
def fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in `go` first on PATH, the cache in tmp_path; the log of its builds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "go").write_text(FAKE_GO)
    (bin_dir / "go").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GO_VERSION", "go1.99")
    monkeypatch.setenv("FAKE_GO_LOG", str(tmp_path / "go.log"))
    monkeypatch.setenv("OBJECT_STORE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "go.log"


def test_a_build_lands_whole_under_its_key_and_runs_once(fake_go: Path, tmp_path: Path) -> None:
    said: list[str] = []
    weed = build.ensure_built(said.append)
    assert weed.parent.parent == tmp_path / "cache" / "bin"
    assert weed.parent.name == build.build_key()
    assert weed.is_file() and os.access(weed, os.X_OK)
    info = json.loads((weed.parent / "build.json").read_text())
    assert list(info) == ["seaweedfs", "go", "seconds"]
    assert (info["seaweedfs"], info["go"]) == (build.seaweedfs_version(), "go1.99")
    (command,) = fake_go.read_text().splitlines()
    staging = weed.parent.with_name(weed.parent.name + ".tmp")  # renamed once it was built
    assert command == (
        f"build -trimpath -ldflags -s -w -o {staging / 'weed'} github.com/seaweedfs/seaweedfs/weed"
        " | -mod=readonly -buildvcs=false"
    )
    assert not staging.exists()
    assert said[-1].startswith("built in ")

    assert build.ensure_built(said.append) == weed
    assert len(fake_go.read_text().splitlines()) == 1  # the cache answered


def test_a_new_go_version_is_a_new_key(fake_go: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = build.build_key()
    monkeypatch.setenv("FAKE_GO_VERSION", "go1.100")
    assert build.build_key() != before


def test_without_go_the_build_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `go` anywhere
    monkeypatch.setenv("OBJECT_STORE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit, match=r"^object-store build: no `go` on PATH"):
        build.ensure_built(lambda line: None)
