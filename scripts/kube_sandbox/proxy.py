"""The kube-proxy stand-in: TCP listeners per Service port, over the EndpointSlices.

Started by the supervisor as ``python -m kube_sandbox proxy DIR``, with kube-proxy's identity
(``system:kube-proxy``). It watches Services and EndpointSlices (discovery.k8s.io/v1) and,
for every TCP port of every Service, keeps two listeners that share one round-robin pool:

* on 127.0.0.1 at a port picked free, listed in DIR/services.json as
  ``{"NAMESPACE/NAME": "http://127.0.0.1:PORT"}`` (the first port) and
  ``"NAMESPACE/NAME:PORTNAME"`` for each named port: how the host reaches Services;
* on ClusterIP:port (the Service range is a local route on the sandbox's bridge), which is
  what pods reach, by address or by the names in their /etc/hosts.

The pool of a Service port is the endpoints of the Service's slices whose ``ready`` condition
is true, at the slice's port of the same name (so a ``targetPort`` name resolves per pod, as
the EndpointSlice controller wrote it); when none is ready, the serving-and-terminating ones,
as kube-proxy falls back since 1.28. Each new connection goes to the next endpoint in turn;
established connections stay where they are when endpoints change, as kube-proxy's NAT
entries do. A Service port with no endpoint refuses connections (the listening socket is
closed; on 127.0.0.1 a bound, non-listening twin keeps the port reserved, so connects get
ECONNREFUSED), as kube-proxy's REJECT rule does. ``default/kubernetes`` forwards to the API
server. Changes apply as soon as the watch delivers them, with no added delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kube_sandbox import procs
from kube_sandbox.kubeapi import Informer, Kube
from kube_sandbox.layout import Layout, State, write_json

log = logging.getLogger("proxy")
Obj = dict[str, Any]
HIGH_WATER = 256 * 1024
_SPLICING: set[asyncio.Task] = set()


class Pipe(asyncio.Protocol):
    """One direction of a spliced connection; writes what it reads to its peer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Pipe | None = None
        self.pending: list[bytes] = []
        self.eof = False
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.pending.append(data)
        else:
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.closed:
            if peer.eof:  # both directions are finished
                peer.transport.close()
                return False
            if peer.transport.can_write_eof():
                peer.transport.write_eof()
        return True  # keep our side open for the other direction

    def connection_lost(self, exc) -> None:
        self.closed = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.closed:
            peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def link(self, peer: Pipe) -> None:
        self.peer = peer
        if self.pending:
            for chunk in self.pending:
                peer.transport.write(chunk)
            self.pending = []
        if self.eof and peer.transport.can_write_eof():
            peer.transport.write_eof()


@dataclass
class Pool:
    """The endpoints of one Service port, picked round-robin per connection."""

    endpoints: list[tuple[str, int]] = field(default_factory=list)
    next: int = 0

    def pick(self) -> tuple[str, int] | None:
        if not self.endpoints:
            return None
        ep = self.endpoints[self.next % len(self.endpoints)]
        self.next = (self.next + 1) % len(self.endpoints)
        return ep


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Listener:
    """A listening socket at (host, port) that exists only while its pool has endpoints."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int, pool: Pool, reserve: bool
    ):
        self.loop = loop
        self.host, self.port = host, port
        self.pool = pool
        self.sock: socket.socket | None = None
        self.holder: socket.socket | None = None
        if reserve:
            self.holder = self._socket()
            self.holder.bind((host, port))
            self.port = self.holder.getsockname()[1]

    def _socket(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return s

    def sync(self) -> None:
        want = bool(self.pool.endpoints)
        if want and self.sock is None:
            s = self._socket()
            try:
                s.bind((self.host, self.port))
                s.listen(1024)
            except OSError as e:
                s.close()
                log.warning("listen %s:%s: %s", self.host, self.port, e)
                return
            s.setblocking(False)
            self.sock = s
            self.loop.add_reader(s.fileno(), self._accept)
        elif not want and self.sock is not None:
            self._close_listener()

    def _close_listener(self) -> None:
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        self._close_listener()
        if self.holder is not None:
            self.holder.close()
            self.holder = None

    def _accept(self) -> None:
        for _ in range(64):
            if self.sock is None:
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("accept %s:%s: %s", self.host, self.port, e)
                return
            conn.setblocking(False)
            ep = self.pool.pick()
            if ep is None:
                _reset(conn)
                continue
            task = self.loop.create_task(self._splice(conn, ep))
            _SPLICING.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(_SPLICING.discard)

    async def _splice(self, conn: socket.socket, ep: tuple[str, int]) -> None:
        try:
            _, up = await self.loop.create_connection(Pipe, ep[0], ep[1])
        except OSError:
            _reset(conn)  # as a NATed connection to a dead endpoint would fail
            return
        try:
            _, down = await self.loop.connect_accepted_socket(Pipe, conn)
        except OSError:
            up.transport.close()
            return
        down.link(up)
        up.link(down)
        if up.closed:
            down.transport.close()
        if down.closed:
            up.transport.close()


@dataclass
class PortState:
    name: str
    port: int
    pool: Pool
    local: Listener
    cluster: Listener | None


class Proxy:
    def __init__(self, layout: Layout, state: State):
        self.layout = layout
        self.state = state
        self.kube = Kube(str(layout.component_kubeconfig("proxy")))
        self.services: dict[str, Obj] = {}
        self.slices: dict[str, Obj] = {}
        self.ports: dict[tuple[str, str], PortState] = {}  # (svc key, port name) -> state
        self.loop: asyncio.AbstractEventLoop | None = None
        self.apiserver = ("127.0.0.1", state.ports["apiserver"])
        self._pending: set[str] = set()
        self._scheduled = False

    # informer callbacks run on watch threads; everything else on the loop
    def _on_service(self, kind: str, obj: Obj) -> None:
        self.loop.call_soon_threadsafe(self._mark, _key(obj))

    def _on_slice(self, kind: str, obj: Obj) -> None:
        svc = (obj["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
        if svc:
            self.loop.call_soon_threadsafe(self._mark, f"{obj['metadata']['namespace']}/{svc}")

    def _mark(self, key: str) -> None:
        self._pending.add(key)
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._apply)

    def _endpoints(self, key: str, port_name: str) -> list[tuple[str, int]]:
        if key == "default/kubernetes":
            return [self.apiserver]
        ns, name = key.split("/", 1)
        ready, serving = [], []
        for sl in list(self.slices.values()):
            md = sl["metadata"]
            if md["namespace"] != ns:
                continue
            if (md.get("labels") or {}).get("kubernetes.io/service-name") != name:
                continue
            if sl.get("addressType") != "IPv4":
                continue
            port = next(
                (
                    p.get("port")
                    for p in sl.get("ports") or []
                    if (p.get("name") or "") == port_name
                ),
                None,
            )
            if port is None:
                continue
            for ep in sl.get("endpoints") or []:
                cond = ep.get("conditions") or {}
                for addr in ep.get("addresses") or []:
                    if cond.get("ready") is not False:
                        ready.append((addr, port))
                    elif cond.get("serving") and cond.get("terminating"):
                        serving.append((addr, port))
        chosen = ready or serving
        return sorted(set(chosen))

    def _apply(self) -> None:
        self._scheduled = False
        keys, self._pending = self._pending, set()
        changed = False
        for key in keys:
            changed |= self._sync_service(key)
        if changed:
            self._write_services_json()

    def _sync_service(self, key: str) -> bool:
        svc = self.services.get(key)
        wanted: dict[str, Obj] = {}
        if svc is not None:
            for p in svc["spec"].get("ports") or []:
                if p.get("protocol", "TCP") == "TCP":
                    wanted[p.get("name") or ""] = p
        changed = False
        for (k, pname), ps in list(self.ports.items()):
            if k == key and (pname not in wanted or wanted[pname]["port"] != ps.port):
                ps.local.close()
                if ps.cluster:
                    ps.cluster.close()
                del self.ports[(k, pname)]
                changed = True
        cluster_ip = (svc or {}).get("spec", {}).get("clusterIP")
        for pname, p in wanted.items():
            ps = self.ports.get((key, pname))
            if ps is None:
                pool = Pool()
                local = Listener(self.loop, "127.0.0.1", 0, pool, reserve=True)
                cluster = None
                if cluster_ip and cluster_ip != "None":
                    cluster = Listener(self.loop, cluster_ip, p["port"], pool, reserve=False)
                ps = PortState(pname, p["port"], pool, local, cluster)
                self.ports[(key, pname)] = ps
                changed = True
            eps = self._endpoints(key, pname)
            if eps != ps.pool.endpoints:
                ps.pool.endpoints = eps
                ps.pool.next = 0 if not eps else ps.pool.next % len(eps)
                log.info("%s:%s -> %s", key, pname or p["port"], eps)
            ps.local.sync()
            if ps.cluster:
                ps.cluster.sync()
        return changed

    def _write_services_json(self) -> None:
        out: dict[str, str] = {}
        for key, svc in sorted(self.services.items()):
            names = [
                p.get("name") or ""
                for p in svc["spec"].get("ports") or []
                if p.get("protocol", "TCP") == "TCP"
            ]
            for i, pname in enumerate(names):
                ps = self.ports.get((key, pname))
                if ps is None:
                    continue
                url = f"http://127.0.0.1:{ps.local.port}"
                if i == 0:
                    out[key] = url
                if pname:
                    out[f"{key}:{pname}"] = url
        write_json(self.layout.services_json, out)

    async def main(self) -> None:
        self.loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, stop.set)
        svc = Informer(self.kube, "/api/v1/services", self._on_service, name="services")
        svc.items = self.services
        sl = Informer(
            self.kube, "/apis/discovery.k8s.io/v1/endpointslices", self._on_slice, name="slices"
        )
        sl.items = self.slices
        sl.start()
        svc.start()
        await self.loop.run_in_executor(None, sl.synced.wait, 30)
        await self.loop.run_in_executor(None, svc.synced.wait, 30)
        self._write_services_json()
        log.info("proxy stand-in up")
        await stop.wait()
        svc.stop()
        sl.stop()
        for ps in self.ports.values():
            ps.local.close()
            if ps.cluster:
                ps.cluster.close()


def _key(obj: Obj) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


def main(root: str) -> None:
    procs.start_component()
    layout = Layout(Path(root))
    state = State.load(layout.state_json)
    asyncio.run(Proxy(layout, state).main())


if __name__ == "__main__":
    main(sys.argv[1])
