"""From a pod spec to what a container process gets: environment, files, identity.

Used by the kubelet stand-in's pod runtime (``pod``). Pure functions plus lookups passed in:
``container_env`` resolves ``env`` (value with ``$(VAR)`` expansion; valueFrom secretKeyRef,
configMapKeyRef, fieldRef, resourceFieldRef) and ``envFrom`` (secretRef, configMapRef, with
prefix) over the Service environment variables a kubelet adds (``KUBERNETES_SERVICE_HOST``
and, with enableServiceLinks, one set per Service of the namespace) and over the sandbox's
stand-in for the image's environment (PATH and ``--image-env``). ``write_volumes`` makes the
files of emptyDir, secret, configMap, downwardAPI and projected volumes (the
service-account token comes from a TokenRequest made by the caller). ``security`` reads
runAsUser/runAsGroup/fsGroup/readOnlyRootFilesystem and friends.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from kubernetes.utils import parse_quantity

Obj = dict[str, Any]
Lookup = Callable[[str, str], Obj | None]  # (namespace, name) -> object or None


class ConfigError(Exception):
    """The container cannot be configured yet (reason CreateContainerConfigError)."""


def expand(s: str, mapping: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: ``$$`` is a literal ``$``, unknown names stay."""
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "$" and i + 1 < len(s):
            n = s[i + 1]
            if n == "$":
                out.append("$")
                i += 2
                continue
            if n == "(":
                j = s.find(")", i + 2)
                if j != -1:
                    name = s[i + 2 : j]
                    out.append(mapping.get(name, s[i : j + 1]))
                    i = j + 1
                    continue
        out.append(c)
        i += 1
    return "".join(out)


def _env_name(service_name: str) -> str:
    return service_name.upper().replace("-", "_")


def service_env(services: list[Obj]) -> dict[str, str]:
    """The docker-links style variables a kubelet sets for each ClusterIP Service."""
    env: dict[str, str] = {}
    for svc in services:
        spec = svc.get("spec", {})
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        ports = spec.get("ports") or []
        if not ports:
            continue
        name = _env_name(svc["metadata"]["name"])
        first = ports[0]
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(first["port"])
        for p in ports:
            if p.get("name"):
                env[f"{name}_SERVICE_PORT_{_env_name(p['name'])}"] = str(p["port"])
        proto = first.get("protocol", "TCP").lower()
        env[f"{name}_PORT"] = f"{proto}://{ip}:{first['port']}"
        for p in ports:
            proto = p.get("protocol", "TCP")
            base = f"{name}_PORT_{p['port']}_{proto.upper()}"
            env[base] = f"{proto.lower()}://{ip}:{p['port']}"
            env[f"{base}_PROTO"] = proto.lower()
            env[f"{base}_PORT"] = str(p["port"])
            env[f"{base}_ADDR"] = ip
    return env


_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: Obj, path: str) -> str:
    md, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    simple = {
        "metadata.name": md.get("name", ""),
        "metadata.namespace": md.get("namespace", ""),
        "metadata.uid": md.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.hostIPs": ",".join(x["ip"] for x in status.get("hostIPs", [])),
        "status.podIP": status.get("podIP", ""),
        "status.podIPs": ",".join(x["ip"] for x in status.get("podIPs", [])),
    }
    if path in simple:
        return simple[path]
    m = _LABEL_REF.match(path)
    if m:
        return (md.get(m.group(1)) or {}).get(m.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = md.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ConfigError(f"unsupported fieldRef {path!r}")


def resource_value(pod: Obj, ref: Obj, node_allocatable: dict[str, str]) -> str:
    name = ref.get("containerName")
    containers = pod["spec"]["containers"]
    c = next((x for x in containers if x["name"] == name), None) if name else None
    if c is None:
        c = containers[0]
    kind, _, res = ref["resource"].partition(".")
    resources = c.get("resources") or {}
    value = (resources.get(kind) or {}).get(res)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(res)
    if value is None:
        value = node_allocatable.get(res, "0")
    q = parse_quantity(value)
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        divisor = Decimal(1)
    return str(math.ceil(q / divisor))


def _data_of(obj: Obj, is_secret: bool) -> dict[str, bytes]:
    data: dict[str, bytes] = {}
    if is_secret:
        for k, v in (obj.get("data") or {}).items():
            data[k] = base64.b64decode(v)
        for k, v in (obj.get("stringData") or {}).items():
            data[k] = v.encode()
    else:
        for k, v in (obj.get("data") or {}).items():
            data[k] = v.encode()
        for k, v in (obj.get("binaryData") or {}).items():
            data[k] = base64.b64decode(v)
    return data


@dataclass
class Sources:
    """Lookups of the objects a pod refers to (made with the node's identity)."""

    secret: Lookup
    configmap: Lookup
    node_allocatable: dict[str, str]


def container_env(
    pod: Obj,
    container: Obj,
    *,
    base: dict[str, str],
    services_env: dict[str, str],
    sources: Sources,
) -> dict[str, str]:
    ns = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for ef in container.get("envFrom") or []:
        prefix = ef.get("prefix", "")
        if "configMapRef" in ef:
            ref, obj = ef["configMapRef"], sources.configmap(ns, ef["configMapRef"]["name"])
            data = _data_of(obj, False) if obj else None
        else:
            ref, obj = ef["secretRef"], sources.secret(ns, ef["secretRef"]["name"])
            data = _data_of(obj, True) if obj else None
        if data is None:
            if ref.get("optional"):
                continue
            kind = "configmap" if "configMapRef" in ef else "secret"
            raise ConfigError(f'{kind} "{ref["name"]}" not found')
        for k, v in data.items():
            env[prefix + k] = v.decode(errors="replace")
    mapping = dict(services_env)
    mapping.update(env)
    for e in container.get("env") or []:
        name = e["name"]
        if "valueFrom" not in e:
            value = expand(e.get("value", ""), mapping)
        else:
            vf = e["valueFrom"]
            if "fieldRef" in vf:
                value = field_value(pod, vf["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in vf:
                ref = dict(vf["resourceFieldRef"])
                ref.setdefault("containerName", container["name"])
                value = resource_value(pod, ref, sources.node_allocatable)
            elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
                is_secret = "secretKeyRef" in vf
                ref = vf["secretKeyRef" if is_secret else "configMapKeyRef"]
                obj = (sources.secret if is_secret else sources.configmap)(ns, ref["name"])
                data = _data_of(obj, is_secret) if obj else None
                kind = "secret" if is_secret else "configmap"
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    if data is None:
                        raise ConfigError(f'{kind} "{ref["name"]}" not found')
                    raise ConfigError(
                        f"couldn't find key {ref['key']} in {kind} {ns}/{ref['name']}"
                    )
                value = data[ref["key"]].decode(errors="replace")
            else:
                raise ConfigError(f"unsupported valueFrom in env {name}")
        env[name] = value
        mapping[name] = value
    out = dict(base)
    out.update(services_env)
    out.update(env)
    return out


def command_of(container: Obj, env: dict[str, str]) -> list[str]:
    cmd = list(container.get("command") or [])
    if not cmd:
        raise ConfigError(
            "kube-sandbox runs the pod spec's command; this container has none "
            "(the image's ENTRYPOINT is unknown: images are not pulled)"
        )
    argv = cmd + list(container.get("args") or [])
    return [expand(a, env) for a in argv]


def _write_file(path: Path, data: bytes, mode: int, gid: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    if gid is not None:
        os.chown(path, 0, gid)


def _items(data: dict[str, bytes], items: list[Obj] | None) -> list[tuple[str, bytes, int | None]]:
    if not items:
        return [(k, v, None) for k, v in sorted(data.items())]
    out = []
    for it in items:
        if it["key"] not in data:
            raise ConfigError(f"key {it['key']} not found")
        out.append((it["path"], data[it["key"]], it.get("mode")))
    return out


def write_volumes(
    pod: Obj,
    root: Path,
    *,
    sources: Sources,
    token: Callable[[Obj], str],
    ca_bundle: Callable[[], bytes],
) -> dict[str, Path]:
    """Make each volume's folder under ``root``; return volume name -> host path.

    ``token(source)`` returns a service-account token for a projected serviceAccountToken
    source. Raises ConfigError while something referred to is missing (the caller retries).
    """
    ns = pod["metadata"]["namespace"]
    fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
    paths: dict[str, Path] = {}
    for vol in pod["spec"].get("volumes") or []:
        name = vol["name"]
        d = root / name
        if "emptyDir" in vol:
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o777)
            if fs_group is not None:
                os.chown(d, 0, fs_group)
                os.chmod(d, 0o2777)
        elif "hostPath" in vol:
            hp = Path(vol["hostPath"]["path"])
            if vol["hostPath"].get("type") == "DirectoryOrCreate":
                hp.mkdir(parents=True, exist_ok=True)
            paths[name] = hp
            continue
        elif "secret" in vol or "configMap" in vol:
            is_secret = "secret" in vol
            src = vol["secret" if is_secret else "configMap"]
            ref_name = src.get("secretName") if is_secret else src.get("name")
            obj = (sources.secret if is_secret else sources.configmap)(ns, ref_name)
            d.mkdir(parents=True, exist_ok=True)
            if obj is None:
                if not src.get("optional"):
                    kind = "secret" if is_secret else "configmap"
                    raise ConfigError(f'{kind} "{ref_name}" not found')
            else:
                mode = src.get("defaultMode", 0o644)
                for rel, data, m in _items(_data_of(obj, is_secret), src.get("items")):
                    _write_file(d / rel, data, m or mode, fs_group)
        elif "downwardAPI" in vol:
            src = vol["downwardAPI"]
            d.mkdir(parents=True, exist_ok=True)
            mode = src.get("defaultMode", 0o644)
            for it in src.get("items") or []:
                data = _downward(pod, it, sources).encode()
                _write_file(d / it["path"], data, it.get("mode") or mode, fs_group)
        elif "projected" in vol:
            src = vol["projected"]
            d.mkdir(parents=True, exist_ok=True)
            mode = src.get("defaultMode", 0o644)
            for s in src.get("sources") or []:
                if "serviceAccountToken" in s:
                    sat = s["serviceAccountToken"]
                    _write_file(d / sat["path"], token(sat).encode(), mode, fs_group)
                elif "configMap" in s or "secret" in s:
                    is_secret = "secret" in s
                    ref = s["secret" if is_secret else "configMap"]
                    obj = (sources.secret if is_secret else sources.configmap)(ns, ref["name"])
                    if obj is None:
                        if ref.get("optional"):
                            continue
                        kind = "secret" if is_secret else "configmap"
                        raise ConfigError(f'{kind} "{ref["name"]}" not found')
                    for rel, data, m in _items(_data_of(obj, is_secret), ref.get("items")):
                        _write_file(d / rel, data, m or mode, fs_group)
                elif "downwardAPI" in s:
                    for it in s["downwardAPI"].get("items") or []:
                        data = _downward(pod, it, sources).encode()
                        _write_file(d / it["path"], data, it.get("mode") or mode, fs_group)
                elif "clusterTrustBundle" in s:
                    cpath = s["clusterTrustBundle"]["path"]
                    _write_file(d / cpath, ca_bundle(), mode, fs_group)
        else:
            kind = next((k for k in vol if k != "name"), "?")
            raise ConfigError(f"volume {name}: {kind} volumes are not supported by kube-sandbox")
        paths[name] = d
    return paths


def _downward(pod: Obj, item: Obj, sources: Sources) -> str:
    if "fieldRef" in item:
        return field_value(pod, item["fieldRef"]["fieldPath"])
    return resource_value(pod, item["resourceFieldRef"], sources.node_allocatable)


def volume_mounts(container: Obj, volumes: dict[str, Path]) -> list[dict]:
    mounts = []
    for vm in container.get("volumeMounts") or []:
        src = volumes.get(vm["name"])
        if src is None:
            raise ConfigError(f"volume {vm['name']} not found")
        sub = vm.get("subPath")
        if sub:
            src = src / sub
            if not src.exists():
                src.mkdir(parents=True)
        mounts.append(
            {"source": str(src), "target": vm["mountPath"], "readonly": bool(vm.get("readOnly"))}
        )
    return mounts


@dataclass(frozen=True)
class Security:
    uid: int | None
    gid: int | None
    groups: list[int] | None
    readonly_root: bool
    no_new_privs: bool


def security(pod: Obj, container: Obj) -> Security:
    psc = pod["spec"].get("securityContext") or {}
    csc = container.get("securityContext") or {}

    def pick(key):
        return csc.get(key, psc.get(key))

    uid, gid = pick("runAsUser"), pick("runAsGroup")
    if pick("runAsNonRoot") and not uid:
        raise ConfigError(
            "container has runAsNonRoot and image will run as root "
            "(kube-sandbox does not read the image: set runAsUser)"
        )
    groups = None
    extra = list(psc.get("supplementalGroups") or [])
    if psc.get("fsGroup") is not None:
        extra.append(psc["fsGroup"])
    if uid is not None or gid is not None or extra:
        if uid is not None and gid is None:
            gid = 0
        groups = sorted(set(extra + ([gid] if gid is not None else [])))
    return Security(
        uid=uid,
        gid=gid,
        groups=groups,
        readonly_root=bool(csc.get("readOnlyRootFilesystem")),
        no_new_privs=csc.get("allowPrivilegeEscalation") is False,
    )


def resolve_port(container: Obj, port: Any) -> int:
    """A probe's or hook's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ConfigError(f"port {port!r} is not a named port of container {container['name']}")
