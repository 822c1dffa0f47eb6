"""The one thing the release engine asks of a router: read and flip the live color.

Implemented by `router.local` (the local proxy's admin API) and `router.kubernetes`
(the live Service's selector). The flip must be atomic and conditional on the revision
read before, so two writers cannot both win.
"""

from __future__ import annotations

from typing import Protocol

from controller.model import Color, Route


class TrafficRouter(Protocol):
    def current(self) -> Route:
        """The live color and the route's revision. Raises `RouterUnavailable`."""
        ...

    def switch(self, *, to: Color, expected_revision: str) -> Route:
        """Point live traffic at `to` if the route is still at `expected_revision`.

        Raises `RouteConflict` when someone else changed it meanwhile, `RouterUnavailable`
        when the router cannot be reached. Switching to the color already live is a no-op.
        """
        ...
