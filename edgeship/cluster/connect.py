"""Import Ray only here, and connect the submitting process to the cluster once."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from edgeship.config import Config
from edgeship.errors import MissingDependency, UsageError

# what every HTTP/2 client sends first, then an empty SETTINGS frame (RFC 9113 3.4, 6.5): the
# Ray head's GCS and its Ray Client server are gRPC servers, which answer with a SETTINGS frame
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 0x4


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependency("ray", "cluster", "the device lab (--cluster)") from None
    return ray


def connect(address: str, cfg: Config) -> Any:
    """The ray module, connected to ``address`` (a no-op when this process already is); an
    address that is ``cfg``'s ``[cluster] address`` is named as that key in errors.

    UsageError within about ``[cluster] connect_timeout_s`` when nothing answers there
    as a Ray head: ``ray.init`` itself retries an unreachable head for many minutes (20 tries of
    its GCS client, ~40 s each, in Ray 2.60), printing nothing we could show.
    """
    ray = ray_module()
    if ray.is_initialized():
        return ray
    probe(address, cfg.cluster.connect_timeout_s, _origin(address, cfg))
    _require_local_node(ray, address, _origin(address, cfg))
    try:
        # the nodes' own prints stay on the nodes: results come back through the tasks
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, namespace="edgeship")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"{_origin(address, cfg)}: cannot reach the Ray cluster ({str(exc).splitlines()[0]}); start its "
                         "head with 'ray start --head' (see docs/cluster.md)") from None
    return ray


def _origin(address: str, cfg: Config | None) -> str:
    """Where the user wrote ``address``: the config's key, else the command line."""
    if cfg is not None and cfg.cluster.address == address:
        return f"[cluster] address = \"{address}\" in {cfg.path or 'edgeship.toml'}"
    return f"--cluster {address}"


def advertised(ray: Any) -> dict[str, dict[str, str]]:
    """device name -> {"id", "ip", "host"} of the alive node that advertises it."""
    from edgeship.cluster import RESOURCE_PREFIX

    out: dict[str, dict[str, str]] = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        for key in node.get("Resources") or {}:
            if key.startswith(RESOURCE_PREFIX):
                out[key[len(RESOURCE_PREFIX):]] = {"id": node["NodeID"], "ip": node["NodeManagerAddress"],
                                                   "host": node.get("NodeManagerHostname", "")}
    return out


def probe(address: str, timeout_s: float, origin: str | None = None) -> None:
    """Make sure a gRPC server (a Ray head) answers at ``address`` within ``timeout_s``, else
    one UsageError line naming the address and what to do.

    A closed port fails at once; a port where something else listens (and says nothing, or
    not HTTP/2) fails at the deadline. With RAY_USE_TLS the handshake is TLS, which this plain
    probe cannot speak, so only the TCP connection is checked then.
    """
    origin = origin or f"--cluster {address}"
    where = _host_port(address, origin)
    if where is None:   # "auto" with no cluster recorded on this host: ray.init says so at once
        return
    host, port = where
    deadline = time.monotonic() + timeout_s
    fix = "start its head with 'ray start --head' or correct the address (see docs/cluster.md)"
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return
            sock.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    raise UsageError(f"{origin}: {host}:{port} closed the connection without answering "
                                     f"as a Ray head; is it the head's GCS port (6379) or Ray Client port (10001)? {fix}")
                head += chunk
    except TimeoutError:
        raise UsageError(f"{origin}: no answer from a Ray head at {host}:{port} within {timeout_s:g} s "
                         f"([cluster] connect_timeout_s); {fix}") from None
    except OSError as exc:
        raise UsageError(f"{origin}: cannot reach {host}:{port} ({exc.strerror or exc}); {fix}") from None
    if head[3] != _H2_SETTINGS:
        raise UsageError(f"{origin}: {host}:{port} is not a Ray head (it does not speak gRPC); {fix}")


def _host_port(address: str, origin: str) -> tuple[str, int] | None:
    """(host, port) that ``address`` ("host:port", "ray://host:port", "auto") names, or None
    for "auto" with no cluster recorded on this host."""
    target = address
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address  # where ray.init looks

        try:
            target = canonicalize_bootstrap_address(address) or ""
        except (ConnectionError, ValueError) as exc:
            raise UsageError(f"{origin}: {str(exc).splitlines()[0]}; start a head with 'ray start --head' "
                             "(see docs/cluster.md)") from None
        if not target:
            return None
    client = target.startswith("ray://")
    target = target.removeprefix("ray://")
    if client and ":" not in target.rpartition("]")[2]:
        target += ":10001"   # Ray Client's default port
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{origin}: not an address; write HOST:PORT (the head's GCS port, 6379), "
                         "ray://HOST:10001 or auto (see docs/cluster.md)")
    return host.strip("[]") or "127.0.0.1", int(port)


def _require_local_node(ray: Any, address: str, origin: str) -> None:
    """``ray.init(address=HOST:PORT)`` attaches to a Ray node of this host; without one it searches
    for a minute, then fails naming no cause. Ray Client (ray://) needs none."""
    if "://" in address:
        return
    try:
        from ray._private.services import find_node_ids  # Ray's own lookup (private: checked, never assumed)
    except ImportError:
        return
    if not find_node_ids():
        raise UsageError(f"{origin}: this host runs no Ray node, and Ray's driver attaches to one; join "
                         f"it first with 'ray start --address {address} --num-cpus 0' (it offers no CPUs or devices), "
                         "or submit from the head's host (see docs/cluster.md)")
