"""A small synchronous QMP client (QEMU Machine Protocol: JSON lines over a unix socket or TCP).

Every failure (no socket, QEMU gone, an ``error`` answer) is raised as MachineError.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from backend.machine.errors import MachineError


class QMP:
    """One QMP session; negotiates capabilities on connect. Use as a context manager."""

    def __init__(self, address: Path | tuple[str, int], timeout: float = 10.0) -> None:
        try:
            if isinstance(address, Path):
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.settimeout(timeout)
                self._sock.connect(str(address))
            else:
                self._sock = socket.create_connection(address, timeout=timeout)
        except OSError as exc:
            raise MachineError(f"cannot reach QEMU's control socket {address}: {exc.strerror or exc}") from exc
        self._file = self._sock.makefile("rb")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def __enter__(self) -> QMP:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read(self) -> dict[str, Any]:
        try:
            line = self._file.readline()
        except OSError as exc:
            raise MachineError(f"QEMU's control socket: {exc}") from exc
        if not line:
            raise MachineError("QEMU closed its control socket")
        doc = json.loads(line)
        if not isinstance(doc, dict):
            raise MachineError(f"QEMU sent {line!r}")
        return doc

    def execute(self, command: str, **arguments: Any) -> Any:
        """Run ``command``; its ``return`` value (events arriving meanwhile are skipped). Raises MachineError
        for QEMU's error answer."""
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        try:
            self._sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as exc:
            raise MachineError(f"QEMU's control socket: {exc}") from exc
        while True:
            doc = self._read()
            if "return" in doc:
                return doc["return"]
            if "error" in doc:
                raise MachineError(f"QEMU refused {command}: {doc['error'].get('desc', doc['error'])}")

    def close(self) -> None:
        self._file.close()
        self._sock.close()
