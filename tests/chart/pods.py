"""A rendered container's environment as its process would see it, the mounted Secrets included.

The chart hands tokens to the parts as files of mounted Secrets (`*_FILE` env vars). Here
each Secret volume of the pod is written into a temporary directory, as the kubelet would
write it (only the listed `items`), and every env value pointing into a mount is rewritten
to point there, so the real settings classes can read them.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

Obj = dict[str, Any]


def only_container(deployment: Obj) -> Obj:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def secret_data(secret: Obj) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def process_env(
    deployment: Obj, *, secrets: dict[str, dict[str, str]], root: Path
) -> dict[str, str]:
    """Literal env of the deployment's container, its Secret mounts materialised under `root`.

    `secrets` maps a Secret's name to its data. A Secret volume with `items` gets only those
    keys, as on a node; a mount of a Secret missing from `secrets` fails the test.
    """
    pod = deployment["spec"]["template"]["spec"]
    container = only_container(deployment)
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    moved: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        source = volumes[mount["name"]].get("secret")
        if source is None:
            continue
        data = secrets[source["secretName"]]
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        here = root / mount["name"]
        here.mkdir(parents=True)
        for item in items:
            (here / item["path"]).write_text(data[item["key"]])
        moved[mount["mountPath"].rstrip("/") + "/"] = f"{here}/"
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        if "value" not in entry:
            continue
        value = entry["value"]
        for mount_path, local in moved.items():
            if value.startswith(mount_path):
                value = local + value[len(mount_path) :]
        env[entry["name"]] = value
    return env
