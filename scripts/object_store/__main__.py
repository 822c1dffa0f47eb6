"""Command line of object-store (``scripts/object-store`` runs ``python -m object_store``).

``build``; ``up DIR --host ADDR`` (prints the env file's path); ``down DIR``.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
from pathlib import Path

from object_store import build

# Servers listen on loopback or the test hosts' range only.
_ALLOWED = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("198.18.0.0/15"))


def _say(msg: str) -> None:
    print(f"object-store: {msg}", file=sys.stderr, flush=True)


def _host(value: str) -> str:
    address = ipaddress.ip_address(value)
    if not any(address in net for net in _ALLOWED):
        raise argparse.ArgumentTypeError(f"{value} is not in 127.0.0.0/8 or 198.18.0.0/15")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="object-store", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build SeaweedFS once (cached)")
    up = commands.add_parser("up", help="start a store with a bucket; writes DIR/env")
    up.add_argument("dir", type=Path)
    up.add_argument("--host", type=_host, default="127.0.0.1")
    up.add_argument("--bucket", default="mlflow")
    down = commands.add_parser("down", help="stop the store and remove its state")
    down.add_argument("dir", type=Path)
    args = parser.parse_args(argv)

    started = time.monotonic()
    if args.command != "build":
        from object_store import server  # boto3 and psutil: not needed to build
    if args.command == "build":
        print(build.ensure_built(_say))
    elif args.command == "up":
        store = server.up(
            args.dir, host=args.host, weed=build.ensure_built(_say), bucket=args.bucket
        )
        _say(f"up at {store.endpoint}, bucket {store.bucket} ({time.monotonic() - started:.1f} s)")
        print(store.root / "env")
    else:
        _say("stopped" if server.down(args.dir) else "nothing was running; state removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
