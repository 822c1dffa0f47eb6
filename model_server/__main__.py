"""`python -m model_server [--host H] [--port P]`: one model server, configured from the
environment (`MODEL_NAME`, `MODEL_VERSION`, ... see `model_server.settings`)."""

import sys

from model_server.main import run
from plumbing.serve import part_main

DEFAULT_PORT = 8001

if __name__ == "__main__":
    sys.exit(part_main("model_server", run, default_port=DEFAULT_PORT, argv=None))
