"""Command line of kube-sandbox (``scripts/kube-sandbox`` runs ``python -m kube_sandbox``).

User commands: ``build``, ``up DIR``, ``down DIR``, ``status DIR``. Internal: ``supervise DIR``
(the background process ``up`` starts).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from kube_sandbox import build, procs
from kube_sandbox.layout import Layout, State, write_json


def _say(msg: str) -> None:
    print(f"kube-sandbox: {msg}", file=sys.stderr, flush=True)


def cmd_build(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    paths = build.ensure_built()
    for name, path in paths.items():
        print(f"{name}: {path}")
    _say(f"binaries ready ({time.monotonic() - t0:.0f} s)")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    root = Path(args.dir).resolve()
    layout = Layout(root)
    if layout.pid_file.exists():
        pid = int(layout.pid_file.read_text())
        if procs.alive(pid):
            _say(f"already up in {root} (supervisor pid {pid}); `down` it first")
            return 1
    if not _recover_crashed_node(root):
        return 1
    build.ensure_built()
    root.mkdir(parents=True, exist_ok=True)
    # A sandbox starts empty: nothing of an earlier run in DIR (etcd data, certificates,
    # pods, logs) is reused.
    for stale_dir in (
        layout.etcd_data,
        layout.pki,
        layout.kubeconfigs,
        layout.pods,
        layout.logs,
        layout.etc,
        layout.containerd,
        layout.kubelet_root,
        layout.cni_conf,
        root / "cni-ipam",
    ):
        shutil.rmtree(stale_dir, ignore_errors=True)
    for stale in (
        layout.ready_file,
        root / "failed",
        layout.sandbox_json,
        layout.state_json,
        layout.host_address,
        layout.kubeconfig,
        layout.sysctl_before,
        root / "nft.before.json",
    ):
        stale.unlink(missing_ok=True)
    layout.logs.mkdir(exist_ok=True)
    layout.pods.mkdir(exist_ok=True)
    write_json(layout.config_json, {"node_name": args.node_name, "images": args.image or []})
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    with open(layout.logs / "supervisor.log", "ab") as out:
        sup = subprocess.Popen(
            [sys.executable, "-m", "kube_sandbox", "supervise", str(root)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=str(root),
        )
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if layout.ready_file.exists():
            break
        if sup.poll() is not None:
            _say(f"failed to start; see {layout.logs}/supervisor.log:")
            print(_tail(layout.logs / "supervisor.log"), file=sys.stderr)
            return 1
        time.sleep(0.2)
    else:
        _say(f"not ready after {args.timeout:.0f} s; stopping it (logs in {layout.logs})")
        print(_tail(layout.logs / "supervisor.log"), file=sys.stderr)
        cmd_down(argparse.Namespace(dir=str(root), quiet=True))
        return 1
    info = json.loads(layout.sandbox_json.read_text())
    print(f"KUBECONFIG={layout.kubeconfig}", flush=True)
    _say(
        f"up in {time.monotonic() - t0:.1f} s: API {info['apiserver']}, host address "
        f"{info['host_address']}, images {', '.join(info['images']) or '(none)'} in "
        f"containerd; stop with `kube-sandbox down {root}`"
    )
    return 0


def _recover_crashed_node(root: Path) -> bool:
    """One real node per machine: refuse while another runs; clean up after a crashed one."""
    from kube_sandbox import hoststate

    owner = hoststate.owner()
    if owner is None:
        return True
    pid_file = Layout(owner).pid_file
    if pid_file.exists() and procs.alive(int(pid_file.read_text())):
        _say(f"a node is already up in {owner} on this machine; `down` it first")
        return False
    _say(f"cleaning up after the node that ran in {owner}")
    cmd_down(argparse.Namespace(dir=str(owner), quiet=True))
    hoststate.OWNER_RECORD.unlink(missing_ok=True)
    return True


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def cmd_down(args: argparse.Namespace) -> int:
    from kube_sandbox import teardown

    root = Path(args.dir).resolve()
    layout = Layout(root)
    t0 = time.monotonic()
    if layout.pid_file.exists():
        pid = int(layout.pid_file.read_text())
        if procs.alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not procs.wait_gone(pid, 90):
                _say("supervisor did not stop in 90 s; killing it")
                os.kill(pid, signal.SIGKILL)
                procs.wait_gone(pid, 10)
        layout.pid_file.unlink(missing_ok=True)
    if not layout.state_json.exists():
        if not getattr(args, "quiet", False):
            _say(f"nothing to stop in {root}")
        return 0
    state = State.load(layout.state_json)
    teardown.cleanup(layout, state)
    left = teardown.leftovers(layout, state)
    layout.ready_file.unlink(missing_ok=True)
    if any(left.values()):
        _say(f"left behind: {left}")
        return 1
    if not getattr(args, "quiet", False):
        _say(f"down in {time.monotonic() - t0:.1f} s; nothing left behind (logs kept in {root})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    layout = Layout(Path(args.dir).resolve())
    if not layout.sandbox_json.exists():
        _say("not up")
        return 1
    info = json.loads(layout.sandbox_json.read_text())
    info["running"] = procs.alive(int(info["pid"]))
    print(json.dumps(info, indent=2))
    return 0 if info["running"] else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kube-sandbox", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build the control plane, the node and CoreDNS (cached)")
    up = sub.add_parser("up", help="start a sandbox in DIR and return once it is ready")
    up.add_argument("dir")
    up.add_argument("--node-name", default="sandbox")
    up.add_argument(
        "--image",
        action="append",
        metavar="NAME",
        help="an image of podman's local store to import into the node's containerd (repeat)",
    )
    up.add_argument("--timeout", type=float, default=300)
    down = sub.add_parser("down", help="stop the sandbox in DIR and remove what it created")
    down.add_argument("dir")
    st = sub.add_parser("status", help="print DIR/sandbox.json and whether it is running")
    st.add_argument("dir")
    sub.add_parser("supervise").add_argument("dir")
    args = ap.parse_args(argv)
    if args.cmd == "supervise":
        from kube_sandbox import supervisor

        supervisor.main(args.dir)
        return 0
    return {"build": cmd_build, "up": cmd_up, "down": cmd_down, "status": cmd_status}[args.cmd](
        args
    )


if __name__ == "__main__":
    sys.exit(main())
