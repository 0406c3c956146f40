"""A fake registry for the hostile-registry corpus: the distribution API's ``/v2/`` endpoints on a loopback
address, answering from a table of routes the test fills, so every answer can lie.

:class:`FakeRegistry` runs a threaded stdlib HTTP/1.1 server on ``host`` (127.0.0.1, or 127.0.0.2 to play
"another host") and a free port; it records every request (:attr:`FakeRegistry.hits`). ``/v2/`` answers
``200 {}``; a path without a route answers 404 with the registry's error code. Helpers put honest content
in place (:meth:`FakeRegistry.blob`, :meth:`FakeRegistry.manifest`, :meth:`FakeRegistry.image`); the
answers below (:func:`send`, :func:`redirect`, :func:`drip`, :func:`stall`) make the hostile ones.
Nothing here talks to any address but the loopback one it binds.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.security.hostile import image_config, sha256, uncompressed_digest

Answer = Callable[[http.server.BaseHTTPRequestHandler], None]
"""Writes a whole response to the handler (status, headers, body)."""
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Hit:
    """One request the server got: method, path (with query) and headers (lower-case names)."""

    method: str
    path: str
    headers: dict[str, str]


def send(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
    """An answer with ``status``, ``headers`` and ``body`` (Content-Length set unless ``headers`` gives one;
    ``Content-Length: none`` sends the body unframed and closes the connection)."""
    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        merged = {"Content-Length": str(len(body)), **(headers or {})}
        handler.send_response(status)
        for name, value in merged.items():
            if value != "none":
                handler.send_header(name, value)
        if merged["Content-Length"] == "none":
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
    return answer


def redirect(location: str, status: int = 302) -> Answer:
    return send(status, headers={"Location": location})


def drip(body: bytes, delay: float, headers: dict[str, str] | None = None) -> Answer:
    """``body`` one byte every ``delay`` seconds (a slow-drip server), until done or the server stops."""
    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            handler.send_header(name, value)
        handler.end_headers()
        for i in range(len(body)):
            if stopped(handler).wait(delay):
                return
            handler.wfile.write(body[i:i + 1])
            handler.wfile.flush()
    return answer


def stall(first: bytes, size: int) -> Answer:
    """Headers for ``size`` bytes, then ``first``, then nothing until the server stops."""
    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        handler.wfile.write(first)
        handler.wfile.flush()
        stopped(handler).wait(120)
    return answer


def stopped(handler: http.server.BaseHTTPRequestHandler) -> threading.Event:
    """The stop event of the server ``handler`` belongs to."""
    server = handler.server
    assert isinstance(server, _Server)
    return server.stop


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    stop: threading.Event


@dataclass
class FakeRegistry:
    """A threaded HTTP server on ``host``:<free port> answering from :attr:`routes` (path with query → answer).

    Use as a context manager. See the module docstring."""

    host: str = "127.0.0.1"
    routes: dict[str, Answer] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    _server: _Server | None = None

    @property
    def domain(self) -> str:
        assert self._server is not None
        return f"{self.host}:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.domain}"

    def __enter__(self) -> FakeRegistry:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def dispatch(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.hits.append(Hit(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                answer = outer.routes.get(self.path) or outer.routes.get(self.path.partition("?")[0])
                if answer is None:
                    answer = send(200, b"{}") if self.path == "/v2/" else _unknown(self.path)
                try:
                    answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_HEAD = do_POST = do_PUT = dispatch

        self._server = _Server((self.host, 0), Handler)
        self._server.stop = threading.Event()
        threading.Thread(target=self._server.serve_forever, name=f"fake-registry-{self.host}", daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.stop.set()
            self._server.shutdown()
            self._server.server_close()

    # -- honest content ---------------------------------------------------------------------------------

    def blob(self, repo: str, data: bytes) -> str:
        """Serve ``data`` as a blob of ``repo`` under its digest; returns the digest."""
        digest = sha256(data)
        self.routes[f"/v2/{repo}/blobs/{digest}"] = send(200, data, {"Content-Type": "application/octet-stream",
                                                                     "Docker-Content-Digest": digest})
        return digest

    def manifest(self, repo: str, ref: str, raw: bytes, media_type: str = OCI_MANIFEST) -> str:
        """Serve ``raw`` as manifest ``ref`` (a tag) of ``repo``, and under its digest; returns the digest."""
        digest = sha256(raw)
        answer = send(200, raw, {"Content-Type": media_type, "Docker-Content-Digest": digest})
        self.routes[f"/v2/{repo}/manifests/{ref}"] = answer
        self.routes[f"/v2/{repo}/manifests/{digest}"] = answer
        return digest

    def image(self, repo: str, ref: str, layers: list[bytes], *, config: bytes | None = None,
              layer_type: str = OCI_LAYER, **fields: object) -> dict[str, object]:
        """Serve an OCI image of ``layers`` (and ``config``, else one whose diff IDs fit) as ``repo:ref``;
        ``fields`` are merged into the manifest document. Returns the document."""
        config = config if config is not None else image_config([uncompressed_digest(layer) for layer in layers])
        doc: dict[str, object] = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.blob(repo, config), "size": len(config)},
            "layers": [{"mediaType": layer_type, "digest": self.blob(repo, layer), "size": len(layer)}
                       for layer in layers],
            **fields}
        self.manifest(repo, ref, json.dumps(doc).encode())
        return doc

    def paths(self) -> list[str]:
        """The paths of every request so far, in order."""
        return [hit.path for hit in self.hits]


def _unknown(path: str) -> Answer:
    code = "BLOB_UNKNOWN" if "/blobs/" in path else "MANIFEST_UNKNOWN"
    body = json.dumps({"errors": [{"code": code, "message": "unknown", "detail": path}]}).encode()
    return send(404, body, {"Content-Type": "application/json"})


def wait_until(predicate: Callable[[], bool], timeout: float = 5) -> bool:
    """True once ``predicate()`` holds, False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
