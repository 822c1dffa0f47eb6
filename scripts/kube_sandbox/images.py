"""Images for the node's containerd, without a registry.

Called by the supervisor before the kubelet starts. The node's own images (the pause process
and CoreDNS, both single static Go binaries from ``kube-sandbox build``) are built with podman
``FROM scratch`` and kept as OCI archives in the cache, keyed by the binary's hash. Images the
caller names with ``up --image`` (the project's ``localhost/bluegreen:dev``) are saved from
podman's local store as OCI archives keyed by their image ID, so a second ``up`` with the same
image only imports. Everything is imported into containerd's ``k8s.io`` namespace, where the
kubelet looks for images (pods use ``imagePullPolicy: Never``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from kube_sandbox.layout import Layout, cache_dir
from kube_sandbox.nodeconfig import COREDNS_IMAGE, PAUSE_IMAGE

PODMAN_CONF = Path.home() / ".cache" / "bluegreen-image" / "containers.conf"

_CONTAINERFILES = {
    PAUSE_IMAGE: 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n',
    COREDNS_IMAGE: (
        "FROM scratch\nCOPY coredns /coredns\nEXPOSE 53 53/udp\n"
        'USER 65532:65532\nENTRYPOINT ["/coredns"]\n'
    ),
}


def _images_dir() -> Path:
    d = cache_dir() / "images"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _podman(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    conf = Path(os.environ.get("BLUEGREEN_IMAGE_CACHE", PODMAN_CONF.parent)) / "containers.conf"
    if conf.exists():
        env["CONTAINERS_CONF"] = str(conf)
    done = subprocess.run(["podman", *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done


def node_image_archive(name: str, binary: Path) -> Path:
    """The OCI archive of one of the node's own images, built once per binary."""
    digest = hashlib.sha256(binary.read_bytes() + _CONTAINERFILES[name].encode()).hexdigest()
    stem = name.rsplit("/", 1)[1].replace(":", "-")
    archive = _images_dir() / f"{stem}-{digest[:12]}.tar"
    if archive.exists():
        return archive
    with tempfile.TemporaryDirectory() as ctx:
        shutil.copy2(binary, Path(ctx) / binary.name)
        (Path(ctx) / "Containerfile").write_text(_CONTAINERFILES[name])
        _podman("build", "--quiet", "--network", "host", "--tag", name, ctx)
    _save(name, archive)
    return archive


def local_image_archive(name: str) -> Path:
    """An image of podman's local store as an OCI archive, saved once per image ID."""
    image_id = _podman("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()
    stem = name.rsplit("/", 1)[-1].replace(":", "-")
    archive = _images_dir() / f"{stem}-{image_id[:12]}.tar"
    if not archive.exists():
        _save(name, archive)
    return archive


def _save(name: str, archive: Path) -> None:
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    _podman("save", "--quiet", "--format", "oci-archive", "--output", str(partial), name)
    partial.rename(archive)
    for old in archive.parent.glob(archive.name.rsplit("-", 1)[0] + "-*.tar"):
        if old != archive:
            old.unlink(missing_ok=True)  # an earlier build of the same image


def ctr(layout: Layout, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", "--address", str(layout.containerd_socket), "--namespace", "k8s.io", *args],
        capture_output=True,
        text=True,
        check=check,
    )


def import_archive(layout: Layout, archive: Path, name: str) -> None:
    ctr(layout, "images", "import", str(archive))
    listed = ctr(layout, "images", "list", "--quiet").stdout.split()
    if not any(n == name or n == f"docker.io/{name}" for n in listed):
        raise RuntimeError(f"{name} not in containerd after importing {archive}: {listed}")
