"""`python -m plumbing.lifeline CMD...`: run a program that knows nothing of our lifeline.

The local stack starts `mlflow server` this way: the wrapper runs CMD in its own session,
passes signals on, and stops CMD's whole session when the stack that started us dies
(EOF on the lifeline, see `plumbing.processes`), so no orphan keeps a port.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from types import FrameType

from plumbing.processes import stop, watch_lifeline


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m plumbing.lifeline CMD [ARGS...]", file=sys.stderr)
        return 2
    child = subprocess.Popen(argv, start_new_session=True)
    done = threading.Event()

    def stop_child(signum: int | None = None, frame: FrameType | None = None) -> None:
        if not done.is_set():
            done.set()
            stop(child, grace_s=10)

    signal.signal(signal.SIGTERM, stop_child)
    signal.signal(signal.SIGINT, stop_child)
    watch_lifeline(on_lost=stop_child)
    code = child.wait()
    stop_child()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
