"""`python -m router [--host H] [--port P]`: the local router, configured from the
environment (`ROUTER_*`, see `router.settings`)."""

import sys

from plumbing.serve import part_main
from router.main import run

DEFAULT_PORT = 8000

if __name__ == "__main__":
    sys.exit(part_main("router", run, default_port=DEFAULT_PORT, argv=None))
