"""The router's own small state file: which color is live, at which revision.

Read once at start (a corrupt file stops the router with a message rather than answering
500 to every request) and written after each flip, off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import orjson

from plumbing.files import write_atomically

Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")


class CorruptRouteFile(ValueError):
    """The route file exists but does not say which color is live."""


@dataclass(frozen=True)
class RouteState:
    color: Color
    revision: int

    def as_json(self) -> dict[str, str]:
        return {"color": self.color, "revision": str(self.revision)}


def load_route(path: Path | None, *, initial: Color) -> RouteState:
    """The saved route, or `initial` at revision 1 when nothing was saved yet."""
    if path is None or not path.exists():
        return RouteState(color=initial, revision=1)
    try:
        saved = orjson.loads(path.read_bytes())
        color, revision = saved["color"], int(saved["revision"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptRouteFile(
            f"route file {path} is unreadable ({exc!r}); remove it to start on {initial}"
        ) from None
    if color not in COLORS or revision < 1:
        raise CorruptRouteFile(f"route file {path} holds {saved!r}, not a color and a revision")
    return RouteState(color=cast(Color, color), revision=revision)


def save_route(path: Path, route: RouteState) -> None:
    write_atomically(path, orjson.dumps(route.as_json()).decode())
