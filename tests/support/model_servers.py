"""Real model-server processes for the tests: `python -m model_server` on a free port."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.iris import IrisVersions
from tests.support.ports import free_port


def start_model_server(
    iris: IrisVersions, version: str, *, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "model_server", "--port", str(port)],
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": iris.tracking_uri,
            "MODEL_NAME": iris.model,
            "MODEL_VERSION": version,
            "SERVING_COLOR": "blue",
            **(env or {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return process, f"http://127.0.0.1:{port}"
