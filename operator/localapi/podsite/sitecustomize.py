"""Cluster DNS for the processes `vlmop local` runs (its pods and its operator): Python imports this
module at start-up when this folder is on PYTHONPATH. Names of Services and pods resolve through the
hosts file the local kubelet keeps (VLMOP_LOCAL_HOSTS: JSON, name -> addresses): a ClusterIP Service's
name to its proxy's address, a headless Service's to every ready pod's, as kube-dns answers. A cluster
name the file does not hold fails like an unknown name; every other name resolves as usual.
Standard library only: it also runs in vLLM's venv."""

import json
import os
import socket

_resolve = socket.getaddrinfo
_CLUSTER = (".svc", ".svc.cluster.local")


def _hosts() -> dict[str, list[str]]:
    try:
        with open(os.environ["VLMOP_LOCAL_HOSTS"]) as file:
            return dict(json.load(file))
    except (KeyError, OSError, ValueError):
        return {}


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # type: ignore[no-untyped-def]
    name = host.decode() if isinstance(host, bytes) else host
    if not isinstance(name, str) or family not in (0, socket.AF_INET):
        return _resolve(host, port, family, type, proto, flags)
    name = name.rstrip(".")
    addresses = _hosts().get(name)
    if addresses is None:
        if name.endswith(_CLUSTER):
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: no such Service or pod (vlmop local)")
        return _resolve(host, port, family, type, proto, flags)
    out = []
    for address in addresses:
        out += _resolve(address, port, socket.AF_INET, type, proto, flags | socket.AI_NUMERICHOST)
    if not out:
        raise socket.gaierror(socket.EAI_NONAME, f"{name}: no ready endpoints (vlmop local)")
    return out


if os.environ.get("VLMOP_LOCAL_HOSTS"):
    socket.getaddrinfo = getaddrinfo


_bind = socket.socket.bind


def bind(self, address):  # type: ignore[no-untyped-def]
    """A pod's 0.0.0.0 is its own address: two replicas on one machine both listen on their port."""
    pod_ip = os.environ.get("VLMOP_POD_IP")
    if (
        pod_ip
        and self.family == socket.AF_INET
        and isinstance(address, tuple)
        and address[0] in ("", "0.0.0.0")  # noqa: S104 - what it replaces
    ):
        address = (pod_ip, *address[1:])
    return _bind(self, address)


if os.environ.get("VLMOP_POD_IP"):
    socket.socket.bind = bind  # type: ignore[method-assign]
