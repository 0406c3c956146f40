"""A container's /etc/hosts, /etc/resolv.conf and /etc/hostname, as dockerd writes them.

The files live in the container's directory and are bind-mounted into it; they are rewritten in place
(never renamed) so a change (``network connect``) shows through the bind mount.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence

from backend.engine.errors import InvalidParameter
from backend.engine.networks.dns import ADDRESS, host_nameservers

NAMES = ("hosts", "resolv.conf", "hostname")
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
LOCALHOST = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


def mounts(directory: str) -> list[dict[str, object]]:
    """The OCI mounts of the three files kept in ``directory``."""
    return [{"destination": f"/etc/{name}", "type": "bind", "source": os.path.join(directory, name),
             "options": ["rbind", "rprivate"]} for name in NAMES]


def parse_extra_host(entry: str, host_gateway: str) -> tuple[str, str]:
    """``name:ip`` (or ``name=ip``; ``host-gateway`` for the default bridge's gateway) to (name, ip).
    Raises InvalidParameter with Docker's message."""
    name, sep, address = entry.partition("=" if "=" in entry else ":")
    if not sep or not name:
        raise InvalidParameter(f"bad format for add-host: \"{entry}\"")
    address = host_gateway if address == "host-gateway" else address.strip("[]")
    try:
        ipaddress.ip_address(address)
    except ValueError as exc:
        raise InvalidParameter(f"invalid IP address in add-host: \"{address}\"") from exc
    return name, address


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def write(directory: str, *, hostname: str, domainname: str, addresses: Sequence[str],
          extra_hosts: Sequence[tuple[str, str]], embedded_dns: bool, dns: Sequence[str],
          dns_search: Sequence[str], dns_options: Sequence[str]) -> None:
    """Write the three files. ``addresses`` are the container's own (its name maps to them);
    ``embedded_dns`` points resolv.conf at 127.0.0.11, else at ``dns`` or the host's nameservers (less the
    loopback ones, which a container cannot reach; Google's when none is left)."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    full = f"{hostname}.{domainname}" if domainname else ""
    hosts = LOCALHOST + "".join(f"{address}\t{name}\n" for name, address in extra_hosts)
    hosts += "".join(f"{address}\t{full + ' ' if full else ''}{hostname}\n" for address in addresses)
    _write(os.path.join(directory, "hosts"), hosts)
    _write(os.path.join(directory, "hostname"), hostname + "\n")
    if embedded_dns:
        servers = [ADDRESS]
    else:
        servers = list(dns) or [s for s in host_nameservers() if not ipaddress.ip_address(s).is_loopback] \
            or list(FALLBACK_NAMESERVERS)
    lines = [f"nameserver {s}" for s in servers]
    if dns_search:
        lines.append("search " + " ".join(dns_search))
    options = list(dns_options) + (["ndots:0"] if embedded_dns and not dns_options else [])
    if options:
        lines.append("options " + " ".join(options))
    _write(os.path.join(directory, "resolv.conf"), "\n".join(lines) + "\n")
