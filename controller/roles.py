"""Tells every ready pod of both colors whether it is live, and keeps telling them.

Used by the engine right after each flip, and by a timer (`RoleKeeper.start`, from
`controller.wiring`) that re-reads the route and re-asserts the roles, so a pod that missed
a notice, restarted or was scaled up later (model servers start believing they are live)
learns its role within one interval. Standbys close keep-alive connections; a live pod
wrongly told "standby" would close every connection, so the last word always comes from
the route as it is now.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from controller.domain import COLORS, Color
from controller.errors import BluegreenError
from controller.ports import TrafficRouter

log = logging.getLogger("bluegreen.roles")


class RoleKeeper:
    def __init__(
        self,
        *,
        router: TrafficRouter,
        pods: Callable[[Color], list[str]],
        announce: Callable[[str, bool], None],
    ) -> None:
        self._router = router
        self._pods = pods
        self._announce = announce
        # A refresh that read the route before a flip must not speak after the flip's notice.
        self._speaking = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def announce(self, live: Color) -> dict[Color, int]:
        """Tell every ready pod of each color its role; how many were told, per color."""
        with self._speaking:
            return self._tell(live)

    def refresh(self) -> dict[Color, int]:
        """Re-assert the roles from the route as it is now."""
        with self._speaking:
            return self._tell(self._router.current().color)

    def _tell(self, live: Color) -> dict[Color, int]:
        told: dict[Color, int] = {}
        for color in COLORS:
            role = "live" if color == live else "standby"
            try:
                endpoints = self._pods(color)
            except BluegreenError as exc:
                log.info("cannot list the pods of %s to tell them %s: %s", color, role, exc.detail)
                continue
            told[color] = 0
            for endpoint in endpoints:
                try:
                    self._announce(endpoint, color == live)
                    told[color] += 1
                except BluegreenError as exc:
                    log.info(
                        "could not tell %s (%s) it is %s: %s", endpoint, color, role, exc.detail
                    )
        return told

    # -- the timer -----------------------------------------------------------------------

    def start(self, interval_s: float, *, also: Callable[[], None] | None = None) -> None:
        """Refresh every `interval_s` in a daemon thread; `also` runs in the same round."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, args=(interval_s, also), name="role-keeper", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self, interval_s: float, also: Callable[[], None] | None) -> None:
        while not self._stop.wait(interval_s):
            try:
                if also is not None:
                    also()
                self.refresh()
            except BluegreenError as exc:
                log.info("role refresh skipped this round: %s", exc.detail)
            except Exception:  # a bug here must not kill the timer for good
                log.exception("role refresh failed")
