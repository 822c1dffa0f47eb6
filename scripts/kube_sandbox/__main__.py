"""Command line of kube-sandbox (``scripts/kube-sandbox`` runs ``python -m kube_sandbox``).

User commands: ``build``, ``up DIR``, ``down DIR``, ``status DIR``. Internal ones, run by the
supervisor: ``supervise DIR``, ``kubelet DIR``, ``proxy DIR``.
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


def cmd_build(args) -> int:
    t0 = time.monotonic()
    paths = build.ensure_built()
    for name, path in paths.items():
        print(f"{name}: {path}")
    _say(f"binaries ready ({time.monotonic() - t0:.0f} s)")
    return 0


def cmd_up(args) -> int:
    t0 = time.monotonic()
    root = Path(args.dir).resolve()
    layout = Layout(root)
    if layout.pid_file.exists():
        pid = int(layout.pid_file.read_text())
        if procs.alive(pid):
            _say(f"already up in {root} (supervisor pid {pid}); `down` it first")
            return 1
    if args.node == "real" and not _recover_crashed_node(root):
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
        root / "kubelet.ready",
        layout.services_json,
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
    paths: list[str] = []
    for p in args.path or []:
        paths += [str(Path(x).resolve()) for x in p.split(":") if x]
    image_env = {}
    for kv in args.image_env or []:
        k, _, v = kv.partition("=")
        image_env[k] = v
    write_json(
        layout.config_json,
        {
            "path": paths,
            "image_env": image_env,
            "node_name": args.node_name,
            "node": args.node,
            "images": args.image or [],
        },
    )
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
    where = (
        f"images {', '.join(info['images']) or '(none)'} in containerd"
        if info.get("kind") == "real"
        else f"Services in {layout.services_json}, pods' PATH {':'.join(paths) or '(system)'}"
    )
    _say(
        f"up in {time.monotonic() - t0:.1f} s: API {info['apiserver']}, host address "
        f"{info['host_address']}, {where}; stop with `kube-sandbox down {root}`"
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


def cmd_down(args) -> int:
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


def cmd_status(args) -> int:
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
    up.add_argument(
        "--path",
        action="append",
        help="folder(s) put first on the pods' PATH (repeat, or colon-separated)",
    )
    up.add_argument(
        "--image-env",
        action="append",
        metavar="KEY=VALUE",
        help="environment every container gets under its own env (stands in for the image's ENV)",
    )
    up.add_argument("--node-name", default="sandbox")
    up.add_argument(
        "--node",
        choices=["real", "standin"],
        default="real",
        help="real: kubelet + containerd + kube-proxy + CoreDNS; standin: pods as processes",
    )
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
    for internal in ("supervise", "kubelet", "proxy"):
        p = sub.add_parser(internal)
        p.add_argument("dir")
    args = ap.parse_args(argv)
    if args.cmd == "supervise":
        from kube_sandbox import supervisor

        supervisor.main(args.dir)
        return 0
    if args.cmd == "kubelet":
        from kube_sandbox import kubelet

        kubelet.main(args.dir)
        return 0
    if args.cmd == "proxy":
        from kube_sandbox import proxy

        proxy.main(args.dir)
        return 0
    return {"build": cmd_build, "up": cmd_up, "down": cmd_down, "status": cmd_status}[args.cmd](
        args
    )


if __name__ == "__main__":
    sys.exit(main())
