"""Kernel NAT and forwarding rules, with iptables (iptables-nft or legacy, whichever works here).

Every rule lives in Berth's own chains, named from a prefix (``BERTH`` for the daemon's default bridge
``berth0``; ``BERTH-<bridge>`` for another default bridge, so test daemons never share chains):

- nat ``<P>``: published ports (DNAT), jumped to from PREROUTING and OUTPUT for local destinations. UDP to
  127.0.0.1 is DNAT'd too: the bridge has ``route_localnet`` set and ``<P>-POST`` masquerades local sources
  leaving through a bridge; TCP to loopback goes to Berth's userland proxy instead (``ports.py``).
- nat ``<P>-POST``: outbound MASQUERADE of each bridge subnet, jumped to from POSTROUTING.
- filter ``<P>-FWD``: ACCEPT to and from each bridge, jumped to from FORWARD.

Cleanup is deleting the jumps and the chains. Raises Unavailable with iptables' message when it fails.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from backend.engine.errors import Unavailable

_TOOLS = ("iptables", "iptables-nft", "iptables-legacy")


def _detect() -> str:
    for tool in _TOOLS:
        path = shutil.which(tool)
        if path and subprocess.run([path, "-w", "-t", "nat", "-S", "POSTROUTING"], capture_output=True).returncode == 0:
            return path
    raise Unavailable("no working iptables found (install iptables)")


class Nat:
    """The rules of one daemon (see the module docstring). Methods are blocking; call them off the loop."""

    def __init__(self, prefix: str) -> None:
        self.dnat = prefix
        self.post = f"{prefix}-POST"
        self.forward = f"{prefix}-FWD"
        self._tool: str | None = None

    def _run(self, *args: str, check: bool = True) -> bool:
        if self._tool is None:
            self._tool = _detect()
        result = subprocess.run([self._tool, "-w", *args], capture_output=True, text=True)
        if check and result.returncode != 0:
            raise Unavailable(f"iptables {' '.join(args)}: {result.stderr.strip()}")
        return result.returncode == 0

    def _jumps(self) -> list[tuple[str, str, list[str]]]:
        local = ["-m", "addrtype", "--dst-type", "LOCAL"]
        return [("nat", "PREROUTING", [*local, "-j", self.dnat]), ("nat", "OUTPUT", [*local, "-j", self.dnat]),
                ("nat", "POSTROUTING", ["-j", self.post]), ("filter", "FORWARD", ["-j", self.forward])]

    def setup(self) -> None:
        """Our chains exist, empty, with one jump each from the built-in chains; IPv4 forwarding is on."""
        for table, chain in (("nat", self.dnat), ("nat", self.post), ("filter", self.forward)):
            if not self._run("-t", table, "-N", chain, check=False):
                self._run("-t", table, "-F", chain)
        for table, builtin, rule in self._jumps():
            if not self._run("-t", table, "-C", builtin, *rule, check=False):
                self._run("-t", table, "-I", builtin, *rule)
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1")

    def teardown(self) -> None:
        """Delete our jumps and chains (nothing of Berth's is left in the tables)."""
        for table, builtin, rule in self._jumps():
            while self._run("-t", table, "-D", builtin, *rule, check=False):
                pass
        for table, chain in (("nat", self.dnat), ("nat", self.post), ("filter", self.forward)):
            self._run("-t", table, "-F", chain, check=False)
            self._run("-t", table, "-X", chain, check=False)

    def _bridge_rules(self, bridge: str, subnet: str, internal: bool) -> list[tuple[str, str, list[str]]]:
        rules = [("nat", self.post, ["-m", "addrtype", "--src-type", "LOCAL", "-o", bridge, "-j", "MASQUERADE"]),
                 ("filter", self.forward, ["-o", bridge, "-j", "ACCEPT"])]
        if not internal:
            rules += [("nat", self.post, ["-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"]),
                      ("filter", self.forward, ["-i", bridge, "-j", "ACCEPT"])]
        return rules

    def add_bridge(self, bridge: str, subnet: str, internal: bool = False) -> None:
        """Outbound NAT (unless ``internal``) and forwarding for a bridge network. Idempotent."""
        for table, chain, rule in self._bridge_rules(bridge, subnet, internal):
            if not self._run("-t", table, "-C", chain, *rule, check=False):
                self._run("-t", table, "-A", chain, *rule)

    def remove_bridge(self, bridge: str, subnet: str, internal: bool = False) -> None:
        for table, chain, rule in self._bridge_rules(bridge, subnet, internal):
            self._run("-t", table, "-D", chain, *rule, check=False)

    @staticmethod
    def _port_rule(protocol: str, host_ip: str, host_port: int, address: str, port: int) -> list[str] | None:
        """The DNAT rule of one published port; TCP to loopback is left to the userland proxy (None for a
        loopback-only TCP port)."""
        if protocol == "tcp" and (host_ip.startswith("127.") or ":" in host_ip):
            return None  # the userland proxy serves loopback and IPv6 host addresses
        where = ["-d", host_ip] if host_ip else (["!", "-d", "127.0.0.0/8"] if protocol == "tcp" else [])
        return ["-p", protocol, *where, "--dport", str(host_port), "-j", "DNAT",
                "--to-destination", f"{address}:{port}"]

    def add_ports(self, rules: Sequence[tuple[str, str, int, str, int]]) -> None:
        """DNAT ``(protocol, host_ip, host_port, container_address, container_port)``; all or none."""
        added: list[list[str]] = []
        try:
            for rule in rules:
                spec = self._port_rule(*rule)
                if spec is None:
                    continue
                self._run("-t", "nat", "-A", self.dnat, *spec)
                added.append(spec)
        except Unavailable:
            for spec in added:
                self._run("-t", "nat", "-D", self.dnat, *spec, check=False)
            raise

    def remove_ports(self, rules: Sequence[tuple[str, str, int, str, int]]) -> None:
        for rule in rules:
            spec = self._port_rule(*rule)
            if spec is not None:
                self._run("-t", "nat", "-D", self.dnat, *spec, check=False)
