"""``GET /containers/{id}/attach/ws``: a container's streams over a websocket (aiohttp's client)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.fixtures.berthd import Berthd

pytestmark = [pytest.mark.root, pytest.mark.network]


async def _session(daemon: Berthd, name: str, query: str, send: list[bytes], want: bytes) -> bytes:
    connector = aiohttp.UnixConnector(path=str(daemon.socket))
    async with aiohttp.ClientSession(connector=connector) as session, session.ws_connect(
            f"http://localhost/v1.41/containers/{name}/attach/ws?{query}") as ws:
        for data in send:
            await ws.send_bytes(data)
        received = b""
        while want not in received:
            message = await asyncio.wait_for(ws.receive(), 10)
            assert message.type is aiohttp.WSMsgType.BINARY, message
            received += message.data
        return received


@pytest.mark.parametrize("tty", [False, True], ids=["no-tty", "tty"])
def test_websocket_attach_relays_stdin_and_output(berthd_with_busybox: Berthd, tty: bool) -> None:
    d = berthd_with_busybox
    name = f"ws-{'tty' if tty else 'plain'}"
    flags = ["-dit"] if tty else ["-di"]
    d.docker("run", *flags, "--name", name, "busybox", "sh", "-c", "while read l; do echo got $l; echo err >&2; done")
    out = asyncio.run(_session(d, name, "stream=1&stdin=1&stdout=1&stderr=1", [b"one\n", b"two\n"], b"got two"))
    assert b"got one" in out and b"got two" in out
    assert b"\x01\x00\x00\x00" not in out  # raw, never multiplexed
    d.docker("rm", "-f", name)


def test_websocket_attach_to_a_missing_container_is_404(berthd_with_busybox: Berthd) -> None:
    async def attempt() -> int:
        connector = aiohttp.UnixConnector(path=str(berthd_with_busybox.socket))
        async with aiohttp.ClientSession(connector=connector) as session:
            try:
                async with session.ws_connect("http://localhost/containers/nope/attach/ws?stream=1"):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    assert asyncio.run(attempt()) == 404
