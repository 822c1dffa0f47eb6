"""A warm preparer: `python -m model_server.prepare_service --socket PATH`.

A version's first start spends most of its time importing what MLflow's loader needs
(MLflow itself, and skops, which imports every scikit-learn estimator) before it does any
work. This process pays that once: it imports them, then listens on a Unix socket and
forks a child per request, which runs `prepare.prepare` with the imports already done and
exits. The one-machine stack starts one beside its model servers; a model server whose
`MODEL_SERVER_PREPARE_SOCKET` names it sends its cache misses here, and prepares in a child
process of its own when nothing answers there (`loader.py`).

One request per connection: a JSON line `{"entry", "fingerprint", "env"}` (`env` is the
whole environment the preparing child would have had), answered with `prepare.py`'s JSON
result line. The socket is created private to the user (mode 0600): the requests carry
the model server's environment, credentials included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socketserver
import sys
from pathlib import Path

log = logging.getLogger("model_server.prepare_service")


class _Prepare(socketserver.StreamRequestHandler):
    """Runs in the forked child: one preparation, answered, then the child exits."""

    def handle(self) -> None:
        from model_server import prepare

        try:
            request = json.loads(self.rfile.readline())
            os.environ.clear()
            os.environ.update({str(k): str(v) for k, v in request["env"].items()})
            argv = ["--entry", str(request["entry"]), "--fingerprint", request["fingerprint"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._answer({"error": f"a bad request to the preparer: {exc}", "permanent": True})
            return
        result = prepare.run(argv)
        self._answer(result)

    def _answer(self, result: dict[str, object]) -> None:
        self.wfile.write(json.dumps(result).encode() + b"\n")
        self.wfile.flush()


class PrepareServer(socketserver.ForkingMixIn, socketserver.UnixStreamServer):
    # Stopping the preparer does not wait for a preparation in flight: the server that asked
    # sees the connection close and prepares in a child of its own.
    block_on_close = False


def preload() -> None:
    """Import what every preparation needs, and the table MLflow's requirement check builds
    from every installed package, so a forked child starts with all of it done."""
    import mlflow.pyfunc.scoring_server  # noqa: F401
    import skops.io  # type: ignore[import-untyped]  # noqa: F401
    from mlflow.utils import requirements_utils

    from model_server import prepare, scoring  # noqa: F401

    # MLflow keeps the table in a module global once built (about a second with many
    # packages installed); where a later MLflow lacks this helper, each child builds it.
    build_table = getattr(requirements_utils, "_init_packages_to_modules_map", None)
    if build_table is not None:
        build_table()


def serve(socket_path: Path) -> None:
    from plumbing.processes import watch_lifeline

    watch_lifeline()  # the stack that started it died: go with it
    preload()
    socket_path.unlink(missing_ok=True)
    previous = os.umask(0o177)  # the socket is born 0600
    try:
        server = PrepareServer(str(socket_path), _Prepare)
    finally:
        os.umask(previous)
    log.info("preparer ready on %s", socket_path)
    print(json.dumps({"ready": str(socket_path)}), flush=True)
    with server:
        server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_server.prepare_service")
    parser.add_argument("--socket", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
