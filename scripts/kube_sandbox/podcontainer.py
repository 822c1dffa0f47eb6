"""One container of a pod on the stand-in node: its spec, runtime state and reported status.

Kept by ``pod.PodWorker`` for each init and app container; ``status()`` is the container's
entry in ``containerStatuses`` as a kubelet reports it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from kube_sandbox.probes import Prober

Obj = dict[str, Any]


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Container:
    spec: Obj
    init: bool = False
    restart_count: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    proc: asyncio.subprocess.Process | None = None
    container_id: str = ""
    started_mono: float = 0.0
    backoff: float = 0.0
    probes: list[asyncio.Task] = field(default_factory=list)
    killing: bool = False  # the runtime is stopping it on purpose (probe, deletion)
    started_evt: asyncio.Event | None = None  # set once the startup probe has passed
    readiness: Prober | None = None
    done: bool = False  # will not be started again

    @property
    def name(self) -> str:
        return self.spec["name"]

    def status(self) -> Obj:
        st = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if not self.init:
            st["started"] = self.started
        if self.container_id:
            st["containerID"] = self.container_id
        return st
