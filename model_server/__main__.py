"""`python -m model_server [--host H] [--port P]`: one model server, configured by the environment.

What the local backend, the chart's pods and the benchmarks start; `bluegreen serve model`
calls the same `run`.
"""

from __future__ import annotations

import argparse
import sys

from model_server.main import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    return run(host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
