"""`python -m controller [--host H] [--port P]`: the release controller, configured from the
environment (`BLUEGREEN_*`, see `controller.settings`)."""

import sys

from controller.main import run
from plumbing.serve import part_main

DEFAULT_PORT = 8080

if __name__ == "__main__":
    sys.exit(part_main("controller", run, default_port=DEFAULT_PORT, argv=None))
