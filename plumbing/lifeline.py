"""`python -m plumbing.lifeline CMD...`: run a program that knows nothing of our lifeline.

The local stack starts `mlflow server` this way: the wrapper runs CMD in its own session,
passes signals on, and stops CMD's whole session when the stack that started us dies
(EOF on the lifeline, see `plumbing.processes`), so no orphan keeps a port. A signal only
sets an event: stopping CMD from the handler would wait for it under the lock `Popen.wait`
holds in the main thread, a deadlock that lasts until whoever signalled us kills us.
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
    stopping = threading.Event()

    def request_stop(signum: int | None = None, frame: FrameType | None = None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    watch_lifeline(on_lost=request_stop)
    while child.poll() is None and not stopping.wait(0.1):
        pass
    # SIGKILL within 8 s: a lost lifeline ends this process 10 s after the loss.
    stop(child, grace_s=8)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
