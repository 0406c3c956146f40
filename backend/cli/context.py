"""What every berth command shares: the parser flavour, the errors that end a command, the context.

A command module exposes ``COMMANDS``: verb name -> :class:`Command` (its flags and its coroutine).
:mod:`backend.cli.main` imports only the module of the verb it runs, so a command pays only for its
own imports.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

if TYPE_CHECKING:
    from backend.api.client import EngineClient


class UsageError(Exception):
    """Bad flags or arguments: printed as ``berth: <message>``, exit code 125 (docker's)."""


class ExitCode(Exception):
    """End the command with this exit code and nothing printed (a container's exit code)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class CommandError(Exception):
    """A failure to print as it is (one line on stderr) with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def describe(exc: Exception) -> str:
    """The one line a client error prints: docker's ``Error response from daemon: ...`` for the engine's
    answers, the message alone for errors inside a stream, ``berth: ...`` when no engine answered."""
    from backend.api.errors import APIError, EngineUnreachable, StreamError

    if isinstance(exc, EngineUnreachable):  # over SSH the message says what is wrong (key, auth, socket)
        return f"berth: {exc.message}" + ("" if "at ssh://" in exc.message else ". Is berthd running?")
    if isinstance(exc, StreamError):
        return exc.message
    if isinstance(exc, APIError):
        return f"Error response from daemon: {exc.message}" if exc.status else f"berth: {exc.message}"
    return f"berth: {exc}"


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError in docker's words instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments: "):
            raise UsageError(unknown_flag(message.removeprefix("unrecognized arguments: ").split()[0],
                                          self.prog))
        raise UsageError(f"{message} (see '{self.prog} --help')")


def unknown_flag(flag: str, prog: str) -> str:
    """docker's message for a flag it does not know."""
    if flag.startswith("--") or not flag.startswith("-"):
        return f"unknown flag: {flag.split('=')[0]} (see '{prog} --help')"
    return f"unknown shorthand flag: '{flag[1:2]}' in {flag} (see '{prog} --help')"


def new_parser(prog: str, description: str, *, add_help: bool = True) -> ArgumentParser:
    """A parser for one verb: no abbreviations (docker has none)."""
    return ArgumentParser(prog=prog, description=description, allow_abbrev=False, add_help=add_help)


def config_dir(flag: str | None, env: dict[str, str] | None = None) -> Path:
    """``--config``, then ``BERTH_CONFIG``, ``DOCKER_CONFIG``, then ``~/.docker``."""
    env = dict(os.environ) if env is None else env
    for candidate in (flag, env.get("BERTH_CONFIG"), env.get("DOCKER_CONFIG")):
        if candidate:
            return Path(candidate).expanduser()
    return Path.home() / ".docker"


@dataclass
class Cli:
    """One invocation: where the engine is (``-H`` or ``--context``), the config directory, the output streams."""

    host: str | None
    config: Path
    debug: bool = False
    context: str | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _client: EngineClient | None = None

    @property
    def client(self) -> EngineClient:
        """The engine client, created on first use. Raises HostError for a bad address or context."""
        if self._client is None:
            from backend.api.client import EngineClient
            from backend.api.contexts import resolve

            endpoint = resolve(self.host, self.context, config_dir=self.config)
            self._client = EngineClient(endpoint.host, timeout=60.0, user_agent="berth-cli/0.1",
                                        tls=endpoint.ssl_context())
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def print(self, text: str = "") -> None:
        """``text`` and a newline on stdout."""
        self.out.write(text + "\n")

    def write(self, text: str) -> None:
        """``text`` as it is on stdout."""
        self.out.write(text)

    def warn(self, text: str) -> None:
        """``text`` and a newline on stderr, after what is already on stdout (docker's unbuffered order)."""
        self.out.flush()
        self.err.write(text + "\n")
        self.err.flush()


Runner = Callable[[Cli, argparse.Namespace], Awaitable[None]]


@dataclass(frozen=True)
class Command:
    """A verb: its one-line help, a function adding its flags, and what it does."""

    help: str
    configure: Callable[[ArgumentParser], None]
    run: Runner
    help_flag: bool = True
    """False when the verb uses ``-h`` itself (``run -h HOSTNAME``); it adds ``--help`` alone."""
