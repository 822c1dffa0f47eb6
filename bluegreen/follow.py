"""Follows a running operation for `bluegreen switch` and `rollback`: each step as it starts
and as it ends (with its timing), and during shadow and bake a one-line live view of the
numbers against their thresholds, redrawn in place on a terminal and left out otherwise.

The CLI feeds `OperationView.show` every operation record it polls; the view prints only
what changed, so polling faster or slower changes nothing in the output.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from bluegreen.client import ControllerClient

_ANALYSED = frozenset({"shadow", "bake"})
_BAR = 20
POLL_S = 0.25


class OperationView:
    """Prints an operation's steps once each, and a live line while shadow or bake runs."""

    def __init__(self, out: TextIO, *, live: bool, shadow_s: float | None = None) -> None:
        self._out = out
        self._live = live
        self._shadow_s = shadow_s
        self._shown: dict[str, bool | None] = {}
        self._first_seen: dict[str, float] = {}
        self._line_width = 0

    def show(self, op: dict[str, Any]) -> None:
        for step in op.get("steps") or []:
            name, ok = step["name"], step.get("ok")
            if name in self._shown and self._shown[name] == ok:
                continue
            if name not in self._shown and ok is None:
                self._first_seen[name] = time.monotonic()
                self._print(f"  {name:<8} ...")
            elif ok is not None:
                mark = "ok" if ok else "FAILED"
                seconds, detail = step.get("seconds") or 0.0, step.get("detail") or ""
                self._print(f"  {name:<8} {mark:<6} {seconds:6.2f}s  {detail}".rstrip())
            self._shown[name] = ok
        running = next(
            (s for s in op.get("steps") or [] if s.get("ok") is None and s["name"] in _ANALYSED),
            None,
        )
        if self._live and running is not None and op.get("status") in ("running", "baking"):
            self._redraw(self._live_line(running["name"], op))
        else:
            self._clear()

    def done(self) -> None:
        self._clear()

    def _live_line(self, step: str, op: dict[str, Any]) -> str:
        elapsed = time.monotonic() - self._first_seen.get(step, time.monotonic())
        if step == "bake":
            bake = (op.get("analysis") or {}).get("bake") or {}
            planned = float(bake.get("seconds_planned") or 0.0)
            done_s = float(bake.get("seconds") or elapsed)
            checks = "  ".join(_check(c) for c in bake.get("checks") or [])
            requests = (bake.get("live") or {}).get("requests", 0)
            return f"  bake     {progress(done_s, planned)}  {requests} req  {checks}"
        return f"  shadow   {progress(elapsed, self._shadow_s)}  mirroring live traffic"

    def _print(self, line: str) -> None:
        self._clear()
        self._out.write(line + "\n")
        self._out.flush()

    def _redraw(self, line: str) -> None:
        width = max(20, shutil.get_terminal_size().columns - 1)
        line = line[:width]
        self._out.write("\r" + line.ljust(self._line_width))
        self._out.flush()
        self._line_width = len(line)

    def _clear(self) -> None:
        if self._line_width:
            self._out.write("\r" + " " * self._line_width + "\r")
            self._out.flush()
            self._line_width = 0


def progress(done_s: float, window_s: float | None) -> str:
    """`[#######-----] 7.0/20 s` where the window has a length, else the elapsed time."""
    if not window_s:
        return f"{done_s:5.1f} s"
    filled = min(_BAR, int(_BAR * done_s / window_s))
    return f"[{'#' * filled}{'-' * (_BAR - filled)}] {min(done_s, window_s):4.1f}/{window_s:g} s"


def _check(check: dict[str, Any]) -> str:
    """`error_rate 0.000<=0.020 pass`: one check's number, its threshold, its verdict."""
    measured, threshold = check.get("measured"), check.get("threshold")
    numbers = "" if measured is None else f" {measured:.3g}"
    if threshold is not None:
        numbers += f"/{threshold:.3g}"
    return f"{check['name']}{numbers} {check.get('verdict', '')}"


def follow_switch(
    client: ControllerClient, op: dict[str, Any], view: OperationView
) -> dict[str, Any]:
    """Poll a switch started with `wait=false` until it settles."""
    while True:
        view.show(op)
        if op["status"] not in ("running", "baking"):
            view.done()
            return op
        time.sleep(POLL_S)
        op = client.operation(op["id"])


def follow_call(
    client: ControllerClient,
    call: Callable[[], dict[str, Any]],
    view: OperationView,
    *,
    kind: str,
) -> dict[str, Any]:
    """Run a synchronous call (a rollback) while polling `/status` for its steps; a running
    operation of another `kind` (the switch whose bake this rollback ends) is not shown."""
    result: dict[str, Any] = {}
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.update(call())
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(POLL_S)
        if worker.is_alive():
            try:
                running = client.status().get("operation")
            except Exception:  # the call itself reports what went wrong
                running = None
            if running and running.get("kind") == kind:
                view.show(running)
    if failure:
        view.done()
        raise failure[0]
    view.show(result)
    view.done()
    return result
