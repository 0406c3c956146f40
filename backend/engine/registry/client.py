"""An async client for the OCI distribution API (Docker registry v2): pull and push content.

:class:`RegistryClient` fetches manifests and blobs, pushes blobs (monolithic, chunked, or by
cross-repository mount) and manifests, checks credentials (``login``) and searches Docker Hub.

Invariants:

- Every byte handed to a caller is verified: manifests fetched by digest are hashed and compared,
  blobs are hashed and counted while they stream and a mismatch raises
  :class:`~backend.engine.registry.errors.RegistryInvalid` before :meth:`RegistryClient.fetch_blob`
  returns. (A sink has then received unverified bytes; callers write to a temp file and drop it on error.)
- Plain HTTP is used only for loopback registries (``localhost``, 127.0.0.0/8, ``::1``) and for the
  configured insecure registries (HTTPS without verification first, then HTTP); everything else is HTTPS.
- Redirects are followed by hand, at most 10 hops, and the ``Authorization`` header is sent only to
  the origin (scheme, host, port) the request was authorised for: never to blob storage elsewhere.
- ``urls`` of foreign layers are never fetched.
- Connection errors, timeouts and 5xx answers are retried (3 attempts by default, with backoff); blob
  downloads resume with ``Range`` from the last verified byte.
- httpx exceptions are wrapped here, once, into the kinds of :mod:`backend.engine.registry.errors`.

``docker.io`` (and ``index.docker.io``) is served by ``registry-1.docker.io``; Docker Hub search uses
``https://index.docker.io/v1/search``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, BinaryIO, TypeAlias

import httpx

from backend.engine.registry.auth import (
    Challenge,
    Credentials,
    CredentialSource,
    CredentialStore,
    basic_header,
    parse_www_authenticate,
)
from backend.engine.registry.errors import (
    RegistryError,
    RegistryForbidden,
    RegistryInvalid,
    RegistryNotFound,
    RegistryUnavailable,
)
from backend.engine.registry.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_ACCEPT,
    MANIFEST_MEDIA_TYPES,
    MAX_MANIFEST_SIZE,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    Platform,
    check_digest,
    digest_of,
    is_digest,
    new_hasher,
    parse_manifest,
    select_platform,
)

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_SEARCH_URL",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "BlobSink",
    "BlobSource",
    "CredentialStore",
    "Credentials",
    "Descriptor",
    "Manifest",
    "Platform",
    "Progress",
    "RegistryClient",
    "RegistryError",
    "RegistryForbidden",
    "RegistryInvalid",
    "RegistryNotFound",
    "RegistryUnavailable",
    "SearchResult",
    "registry_host",
]

DOCKER_HUB_REGISTRY = "registry-1.docker.io"
DOCKER_SEARCH_URL = "https://index.docker.io/v1/search"

Progress: TypeAlias = Callable[[int, int], None]
"""``progress(done, total)`` in bytes; called as content moves, last with ``done == total``."""
BlobSink: TypeAlias = "BinaryIO | IO[bytes] | Callable[[bytes], object]"
"""Where :meth:`RegistryClient.fetch_blob` writes: a binary file or a callback taking each chunk."""
BlobSource: TypeAlias = "str | os.PathLike[str] | Callable[[], IO[bytes]]"
"""What :meth:`RegistryClient.push_blob` reads: a path, or a factory opening a fresh binary file."""

_CHUNK = 1 << 20
_MAX_REDIRECTS = 10
_MAX_ERROR_BODY = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TOKEN_MIN_LIFETIME = 60
_TOKEN_EARLY_RENEW = 10.0
_CREDENTIALS_TTL = 10.0
_REPO_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_REPO_COMPONENT}(?:/{_REPO_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DOMAIN_RE = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?$")

_NOT_FOUND_CODES = frozenset({"MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"})
_FORBIDDEN_CODES = frozenset({"UNAUTHORIZED", "DENIED"})
_INVALID_CODES = frozenset(
    {
        "DIGEST_INVALID",
        "SIZE_INVALID",
        "NAME_INVALID",
        "TAG_INVALID",
        "MANIFEST_INVALID",
        "MANIFEST_UNVERIFIED",
        "MANIFEST_BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "PAGINATION_NUMBER_INVALID",
        "RANGE_INVALID",
    }
)


@dataclass(frozen=True)
class SearchResult:
    """One repository found by :meth:`RegistryClient.search` (Docker Hub's v1 search result)."""

    name: str
    description: str
    star_count: int
    is_official: bool
    is_automated: bool


def registry_host(domain: str) -> str:
    """The host[:port] that serves ``domain``: ``registry-1.docker.io`` for Docker Hub, else ``domain``."""
    return DOCKER_HUB_REGISTRY if domain.lower() in ("docker.io", "index.docker.io") else domain


def _split_host(hostport: str) -> str:
    if hostport.startswith("["):
        return hostport[1 : hostport.index("]")]
    return hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport


def _is_loopback(hostport: str) -> bool:
    host = _split_host(hostport).lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host.lower(), url.port or default)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _scope(repo: str, actions: str) -> str:
    return f"repository:{repo}:{actions}"


@dataclass
class _Token:
    header: str
    expires: float


@dataclass
class _CachedCredentials:
    value: Credentials | None
    expires: float


_Body: TypeAlias = Callable[[], "AsyncIterator[bytes] | bytes"]


def _constant(data: bytes) -> _Body:
    return lambda: data


class RegistryClient:
    """Talks to OCI distribution registries; one instance per daemon, shared by concurrent pulls.

    ``credentials`` supplies credentials per registry (a :class:`CredentialStore`, or any object with
    ``get``/``store``/``erase``); ``insecure_registries`` are ``host[:port]`` names or CIDRs allowed to
    use HTTP or unverified HTTPS; ``max_concurrent_downloads`` bounds concurrent :meth:`fetch_blob`
    calls; ``transport`` replaces httpx's network transport (for tests). ``retries`` is the number of
    attempts for each request, ``retry_delay`` the first backoff in seconds (doubling). ``timeout`` is how
    long a registry may stay silent, and how long a whole manifest, token or error answer may take.

    Every method raises only :class:`~backend.engine.registry.errors.RegistryError` kinds (exceptions
    raised by the caller's sinks, sources and progress callbacks pass through).
    """

    def __init__(
        self,
        *,
        credentials: CredentialSource | None = None,
        insecure_registries: Sequence[str] = (),
        max_concurrent_downloads: int = 3,
        user_agent: str = "berth/0.1",
        transport: httpx.AsyncBaseTransport | None = None,
        search_url: str = DOCKER_SEARCH_URL,
        retries: int = 3,
        retry_delay: float = 0.5,
        timeout: float = 60.0,
    ) -> None:
        if max_concurrent_downloads < 1:
            raise RegistryInvalid("max_concurrent_downloads must be at least 1")
        if retries < 1:
            raise RegistryInvalid("retries must be at least 1")
        self._credentials = credentials
        self._insecure_names: set[str] = set()
        self._insecure_nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in insecure_registries:
            try:
                self._insecure_nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._insecure_names.add(entry.lower())
        self._downloads = asyncio.Semaphore(max_concurrent_downloads)
        self._user_agent = user_agent
        self._transport = transport
        self._search_url = search_url
        self._retries = retries
        self._retry_delay = retry_delay
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 15.0))
        self._deadline = timeout
        self._limits = httpx.Limits(max_connections=max(16, 4 * max_concurrent_downloads), max_keepalive_connections=8)
        self._clients: dict[bool, httpx.AsyncClient] = {}
        self._schemes: dict[str, str] = {}
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, tuple[str, ...]], _Token] = {}
        self._token_locks: dict[tuple[str, tuple[str, ...]], asyncio.Lock] = {}
        self._creds_cache: dict[str, _CachedCredentials] = {}
        self._closed = False

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection. The client cannot be used afterwards."""
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    # -- endpoints and connections ------------------------------------------------------------------------

    def is_insecure(self, domain: str) -> bool:
        """True when ``domain`` may be reached over plain HTTP or unverified HTTPS."""
        host = registry_host(domain).lower()
        if _is_loopback(host):
            return True
        if host in self._insecure_names or _split_host(host) in self._insecure_names:
            return True
        try:
            address = ipaddress.ip_address(_split_host(host))
        except ValueError:
            return False
        return any(address in net for net in self._insecure_nets)

    def base_url(self, domain: str) -> str:
        """``scheme://host[:port]`` of the registry serving ``domain``."""
        host = registry_host(domain)
        if not _DOMAIN_RE.match(host):
            raise RegistryInvalid(f"invalid registry domain {domain!r}")
        scheme = self._schemes.get(host)
        if scheme is None:
            scheme = "http" if _is_loopback(host) else "https"
        return f"{scheme}://{host}"

    def _client(self, url: httpx.URL, domain: str | None) -> httpx.AsyncClient:
        unverified = (
            url.scheme == "https"
            and domain is not None
            and self.is_insecure(domain)
            and url.netloc.decode("ascii").lower() == registry_host(domain).lower()
        )
        client = self._clients.get(unverified)
        if client is None:
            if self._closed:
                raise RegistryUnavailable("the registry client is closed")
            client = httpx.AsyncClient(
                http1=True,
                http2=False,
                verify=not unverified,
                follow_redirects=False,
                trust_env=False,
                timeout=self._timeout,
                limits=self._limits,
                transport=self._transport,
                headers={"User-Agent": self._user_agent, "Accept-Encoding": "identity"},
            )
            self._clients[unverified] = client
        return client

    # -- credentials and authentication ---------------------------------------------------------------------

    async def _creds(self, domain: str) -> Credentials | None:
        if self._credentials is None:
            return None
        cached = self._creds_cache.get(domain)
        now = time.monotonic()
        if cached is not None and cached.expires > now:
            return cached.value
        value = await asyncio.to_thread(self._credentials.get, domain)
        self._creds_cache[domain] = _CachedCredentials(value, now + _CREDENTIALS_TTL)
        return value

    def _forget_domain(self, domain: str) -> None:
        host = registry_host(domain)
        self._creds_cache.pop(domain, None)
        self._challenges.pop(host, None)
        for key in [k for k in self._tokens if k[0] == host]:
            del self._tokens[key]

    async def _auth_header(self, domain: str, scopes: tuple[str, ...], *, refresh: bool = False) -> str | None:
        """The Authorization value for a request needing ``scopes``, from what the registry asked
        for before; None when it asked for nothing yet (or for basic auth we have no credentials for)."""
        host = registry_host(domain)
        challenge = self._challenges.get(host)
        if challenge is None:
            return None
        creds = await self._creds(domain)
        if challenge.scheme == "basic":
            return basic_header(creds) if creds is not None and creds.has_basic else None
        if creds is not None and creds.registry_token:
            return f"Bearer {creds.registry_token}"
        key = (host, scopes)
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:
            token = self._tokens.get(key)
            if token is not None and not refresh and token.expires - _TOKEN_EARLY_RENEW > time.monotonic():
                return token.header
            try:
                token = await self._fetch_token(domain, challenge, scopes, creds)
            except RegistryError:
                # A realm that fails must not hold up later requests to the registry: the next 401 says again.
                if self._challenges.get(host) is challenge:
                    del self._challenges[host]
                raise
            self._tokens[key] = token
            return token.header

    async def _fetch_token(
        self, domain: str, challenge: Challenge, scopes: tuple[str, ...], creds: Credentials | None
    ) -> _Token:
        realm = challenge.params.get("realm", "")
        try:
            realm_url = httpx.URL(realm)
        except httpx.InvalidURL as exc:
            raise RegistryInvalid(f"{domain} asked for a token from an invalid realm {realm!r}") from exc
        if realm_url.scheme not in ("http", "https") or not realm_url.host:
            raise RegistryInvalid(f"{domain} asked for a token from an invalid realm {realm!r}")
        service = challenge.params.get("service")
        scope_list = list(scopes) or ([challenge.params["scope"]] if challenge.params.get("scope") else [])
        what = f"token from {realm}"
        if creds is not None and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token, "client_id": "berth"}
            if service:
                form["service"] = service
            if scope_list:
                form["scope"] = " ".join(scope_list)
            encoded = urllib.parse.urlencode(form).encode()
            resp = await self._plain_request(
                "POST",
                realm_url,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                body=lambda: encoded,
                what=what,
            )
        else:
            params: list[tuple[str, str | int | float | bool | None]] = []
            if service:
                params.append(("service", service))
            params.extend(("scope", s) for s in scope_list)
            if creds is not None and creds.has_basic:
                params.append(("account", creds.username))
            url = realm_url.copy_merge_params(params)
            auth = basic_header(creds) if creds is not None and creds.has_basic else None
            resp = await self._plain_request("GET", url, auth=auth, what=what)
        body = await self._read_ok(resp, _MAX_ERROR_BODY, what)
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
            expires_in = int(doc.get("expires_in") or _TOKEN_MIN_LIFETIME)
        except (ValueError, AttributeError, TypeError) as exc:
            raise RegistryInvalid(f"invalid token response from {realm}") from exc
        if not isinstance(token, str) or not token:
            raise RegistryInvalid(f"the token response from {realm} holds no token")
        lifetime = max(expires_in, _TOKEN_MIN_LIFETIME)
        return _Token(header=f"Bearer {token}", expires=time.monotonic() + lifetime)

    def _learn_challenge(self, domain: str, resp: httpx.Response) -> Challenge | None:
        challenges: list[Challenge] = []
        for value in resp.headers.get_list("www-authenticate"):
            challenges.extend(parse_www_authenticate(value))
        chosen = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None)
        chosen = chosen or next((c for c in challenges if c.scheme == "basic"), None)
        if chosen is not None:
            self._challenges[registry_host(domain)] = chosen
        return chosen

    # -- sending ----------------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: httpx.URL,
        *,
        domain: str | None,
        headers: Mapping[str, str] | None = None,
        auth: str | None = None,
        auth_origin: tuple[str, str, int | None] | None = None,
        body: _Body | None = None,
    ) -> httpx.Response:
        """One request, redirects followed by hand; the streamed response (the caller closes it).

        ``auth`` goes only to ``auth_origin`` (default: the origin of ``url``), never to another host a
        redirect or an upload location points at. Raises httpx.TransportError as it comes.
        """
        auth_origin = auth_origin or _origin(url)
        for _ in range(_MAX_REDIRECTS + 1):
            request_headers = dict(headers or {})
            if auth is not None and _origin(url) == auth_origin:
                request_headers["Authorization"] = auth
            client = self._client(url, domain)
            content = body() if body is not None else None
            request = client.build_request(method, url, headers=request_headers, content=content)
            resp = await client.send(request, stream=True)
            location = resp.headers.get("location")
            if resp.status_code not in _REDIRECTS or not location:
                return resp
            await resp.aclose()
            try:
                url = resp.url.join(location)
            except httpx.InvalidURL as exc:
                raise RegistryInvalid(f"{method} {request.url}: invalid redirect to {location!r}") from exc
            if url.scheme not in ("http", "https"):
                raise RegistryInvalid(f"{method} {request.url}: refusing redirect to {url}")
            if resp.status_code == 303 or (resp.status_code in (301, 302) and method not in ("GET", "HEAD")):
                method, body = "GET", None
        raise RegistryUnavailable(f"{method} {url}: more than {_MAX_REDIRECTS} redirects")

    async def _plain_request(
        self,
        method: str,
        url: httpx.URL,
        *,
        headers: Mapping[str, str] | None = None,
        auth: str | None = None,
        body: _Body | None = None,
        what: str,
    ) -> httpx.Response:
        """A request outside the registry's auth (token realm, search), with retries."""
        for attempt in range(1, self._retries + 1):
            try:
                resp = await self._send(method, url, domain=None, headers=headers, auth=auth, body=body)
            except httpx.TransportError as exc:
                if attempt < self._retries:
                    await self._backoff(attempt)
                    continue
                raise RegistryUnavailable(f"{what}: {_describe(exc)}") from exc
            except httpx.HTTPError as exc:
                raise RegistryInvalid(f"{what}: {_describe(exc)}") from exc
            if resp.status_code >= 500 and attempt < self._retries:
                await resp.aclose()
                await self._backoff(attempt)
                continue
            return resp
        raise AssertionError("unreachable")

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(self._retry_delay * (2 ** (attempt - 1)))

    async def _authorized(
        self,
        method: str,
        domain: str,
        url: httpx.URL,
        scopes: tuple[str, ...],
        headers: Mapping[str, str] | None,
        body: _Body | None,
    ) -> httpx.Response:
        """Send with whatever auth the registry asked for; on 401 learn the challenge and try once more.

        Credentials go only to the registry's own origin (an upload location elsewhere gets none).
        """
        origin = _origin(httpx.URL(self.base_url(domain)))
        auth = await self._auth_header(domain, scopes)
        resp = await self._send(method, url, domain=domain, headers=headers, auth=auth, auth_origin=origin, body=body)
        if resp.status_code != 401:
            return resp
        challenge = self._learn_challenge(domain, resp)
        if challenge is None:
            return resp
        creds = await self._creds(domain)
        if challenge.scheme == "basic" and (creds is None or not creds.has_basic):
            return resp
        if challenge.scheme == "basic" and auth is not None:
            return resp  # the credentials we sent were refused
        await resp.aclose()
        auth = await self._auth_header(domain, scopes, refresh=True)
        return await self._send(method, url, domain=domain, headers=headers, auth=auth, auth_origin=origin, body=body)

    async def _request(
        self,
        method: str,
        domain: str,
        target: str | httpx.URL,
        *,
        scopes: tuple[str, ...],
        what: str,
        ok: Sequence[int] = (200,),
        headers: Mapping[str, str] | None = None,
        body: _Body | None = None,
        attempts: int | None = None,
    ) -> httpx.Response:
        """A registry request with auth, retries and error mapping; a streamed response with an ``ok`` status.

        ``target`` is a path on the registry or an absolute URL (an upload location). Connection errors
        and 5xx answers are retried ``attempts`` times (default: the client's retries); an insecure
        registry that refuses TLS is retried once over HTTP.
        """
        attempts = self._retries if attempts is None else attempts
        for attempt in range(1, attempts + 1):
            url = httpx.URL(self.base_url(domain) + target) if isinstance(target, str) else target
            try:
                resp = await self._authorized(method, domain, url, scopes, headers, body)
            except httpx.ConnectError as exc:
                if self._fall_back_to_http(domain, url):
                    if isinstance(target, httpx.URL):
                        target = target.copy_with(scheme="http")
                    return await self._request(
                        method,
                        domain,
                        target,
                        scopes=scopes,
                        what=what,
                        ok=ok,
                        headers=headers,
                        body=body,
                        attempts=attempts,
                    )
                if attempt < attempts:
                    await self._backoff(attempt)
                    continue
                raise RegistryUnavailable(f"{what}: {_describe(exc)}") from exc
            except httpx.TransportError as exc:
                if attempt < attempts:
                    await self._backoff(attempt)
                    continue
                raise RegistryUnavailable(f"{what}: {_describe(exc)}") from exc
            except httpx.HTTPError as exc:
                raise RegistryInvalid(f"{what}: {_describe(exc)}") from exc
            if resp.status_code in ok:
                return resp
            if resp.status_code >= 500 and attempt < attempts:
                await resp.aclose()
                await self._backoff(attempt)
                continue
            try:
                raise await self._error_from(resp, what)
            finally:
                await resp.aclose()
        raise AssertionError("unreachable")

    def _fall_back_to_http(self, domain: str, url: httpx.URL) -> bool:
        host = registry_host(domain)
        if url.scheme != "https" or self._schemes.get(host) == "http" or not self.is_insecure(domain):
            return False
        if url.netloc.decode("ascii").lower() != host.lower():
            return False
        self._schemes[host] = "http"
        return True

    async def _read_ok(self, resp: httpx.Response, limit: int, what: str) -> bytes:
        """The body of a 200 answer (at most ``limit`` bytes), else the registry's error; closes ``resp``."""
        try:
            if resp.status_code != 200:
                raise await self._error_from(resp, what)
            return await self._read_limited(resp, limit, what)
        finally:
            await resp.aclose()

    async def _read_limited(self, resp: httpx.Response, limit: int, what: str) -> bytes:
        """The whole body of a small answer (manifest, token, error): at most ``limit`` bytes, all of it
        within the client's timeout (a server dripping bytes cannot hold a pull forever).

        Raises RegistryInvalid when it is larger, RegistryUnavailable when it is cut or too slow.
        """
        length = resp.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise RegistryInvalid(f"{what}: the response is larger than {limit} bytes")
        data = bytearray()
        try:
            async with asyncio.timeout(self._deadline):
                async for chunk in resp.aiter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise RegistryInvalid(f"{what}: the response is larger than {limit} bytes")
        except TimeoutError as exc:
            raise RegistryUnavailable(f"{what}: timeout: the answer took more than {self._deadline:g} s") from exc
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"{what}: {_describe(exc)}") from exc
        return bytes(data)

    async def _error_from(self, resp: httpx.Response, what: str) -> RegistryError:
        """The error for a response that failed: kind from the registry's error code, else the status."""
        try:
            body = b"" if resp.request.method == "HEAD" else await self._read_limited(resp, _MAX_ERROR_BODY, what)
        except RegistryError:
            body = b""
        code: str | None = None
        message = ""
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            errors = doc.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                first = errors[0]
                code = str(first.get("code") or "") or None
                message = str(first.get("message") or "")
                if code:
                    message = f"{code.lower().replace('_', ' ')}: {message}" if message else code.lower()
            elif isinstance(doc.get("details") or doc.get("detail") or doc.get("message"), str):
                message = str(doc.get("details") or doc.get("detail") or doc.get("message"))
        status = resp.status_code
        if not message:
            if status == 401:
                code, message = code or "UNAUTHORIZED", "unauthorized: authentication required"
            elif status == 403:
                message = "denied: requested access to the resource is denied"
            elif status == 404:
                message = "not found"
            else:
                text = body.decode("utf-8", "replace").strip().splitlines()
                message = f"HTTP {status} {resp.reason_phrase}" + (f": {text[0][:200]}" if text else "")
        full = f"{what}: {message}" if status not in (401, 403) else message
        kind: type[RegistryError]
        if code in _NOT_FOUND_CODES:
            kind = RegistryNotFound
        elif code in _FORBIDDEN_CODES or status in (401, 403, 405):
            kind = RegistryForbidden
        elif code in _INVALID_CODES:
            kind = RegistryInvalid
        elif status == 404:
            kind = RegistryNotFound
        elif status == 429 or status >= 500:
            kind = RegistryUnavailable
        else:
            kind = RegistryInvalid
        return kind(full, status=status, code=code)

    # -- validation -------------------------------------------------------------------------------------

    @staticmethod
    def _check_repo(repo_path: str) -> str:
        if not _REPO_RE.match(repo_path) or len(repo_path) > 255:
            raise RegistryInvalid(f"invalid repository name {repo_path!r}")
        return repo_path

    @staticmethod
    def _check_reference(reference: str) -> str:
        if not (is_digest(reference) or _TAG_RE.match(reference)):
            raise RegistryInvalid(f"invalid tag or digest {reference!r}")
        return reference

    # -- manifests ----------------------------------------------------------------------------------------

    async def get_manifest(self, domain: str, repo_path: str, reference: str) -> Manifest:
        """The manifest or index ``reference`` (a tag or a digest) of ``domain/repo_path``.

        Asks for OCI indexes, Docker manifest lists, OCI manifests and Docker v2 schema 2 manifests.
        When ``reference`` is a digest the bytes must hash to it; for a tag the digest is the sha256
        of the bytes. Raises RegistryNotFound (unknown manifest or repository), RegistryForbidden,
        RegistryInvalid (digest mismatch, more than 4 MiB, schema 1 or malformed), RegistryUnavailable.
        """
        self._check_repo(repo_path)
        self._check_reference(reference)
        what = (
            f"manifest {domain}/{repo_path}:{reference}"
            if not is_digest(reference)
            else (f"manifest {domain}/{repo_path}@{reference}")
        )
        resp = await self._request(
            "GET",
            domain,
            f"/v2/{repo_path}/manifests/{reference}",
            scopes=(_scope(repo_path, "pull"),),
            headers={"Accept": MANIFEST_ACCEPT},
            what=what,
        )
        try:
            raw = await self._read_limited(resp, MAX_MANIFEST_SIZE, what)
            content_type = resp.headers.get("content-type")
        finally:
            await resp.aclose()
        if is_digest(reference):
            actual = digest_of(raw, reference.partition(":")[0])
            if actual != reference:
                raise RegistryInvalid(f"{what}: the content has digest {actual}, not the digest it was asked by")
            digest = reference
        else:
            digest = digest_of(raw)
        return parse_manifest(raw, digest, content_type)

    def select_platform(self, index: Manifest, platform: Platform) -> Descriptor:
        """The entry of ``index`` to run on ``platform`` (see :func:`manifest.select_platform`).

        Raises RegistryNotFound ``"no matching manifest for linux/arm64 in the manifest list entries"``.
        """
        return select_platform(index, platform)

    async def put_manifest(self, domain: str, repo_path: str, reference: str, media_type: str, raw: bytes) -> str:
        """Upload ``raw`` as the manifest ``reference`` (tag or digest); returns its sha256 digest.

        Raises RegistryInvalid if ``reference`` is a digest ``raw`` does not hash to, or if the registry
        refuses the manifest (unknown blob, invalid), plus the usual kinds.
        """
        self._check_repo(repo_path)
        self._check_reference(reference)
        if media_type not in MANIFEST_MEDIA_TYPES:
            raise RegistryInvalid(f"unsupported manifest media type {media_type!r}")
        if len(raw) > MAX_MANIFEST_SIZE:
            raise RegistryInvalid(f"manifest is larger than {MAX_MANIFEST_SIZE} bytes")
        digest = digest_of(raw)
        if is_digest(reference):
            actual = digest_of(raw, reference.partition(":")[0])
            if actual != reference:
                raise RegistryInvalid(f"manifest content has digest {actual}, not {reference}")
        what = f"push manifest {domain}/{repo_path}:{reference}"
        resp = await self._request(
            "PUT",
            domain,
            f"/v2/{repo_path}/manifests/{reference}",
            scopes=(_scope(repo_path, "pull,push"),),
            headers={"Content-Type": media_type},
            body=lambda: raw,
            ok=(200, 201, 202),
            what=what,
        )
        await resp.aclose()
        echoed = resp.headers.get("docker-content-digest")
        if echoed and echoed.startswith("sha256:") and echoed != digest:
            raise RegistryInvalid(f"{what}: the registry stored digest {echoed}, not {digest}")
        return digest

    # -- blobs ------------------------------------------------------------------------------------------

    async def blob_exists(self, domain: str, repo_path: str, digest: str) -> int | None:
        """The size of blob ``digest`` in ``domain/repo_path`` (a HEAD request), or None if it is not there."""
        return await self._blob_size(domain, repo_path, digest, "pull")

    async def _blob_size(self, domain: str, repo_path: str, digest: str, actions: str) -> int | None:
        self._check_repo(repo_path)
        check_digest(digest)
        resp = await self._request(
            "HEAD",
            domain,
            f"/v2/{repo_path}/blobs/{digest}",
            scopes=(_scope(repo_path, actions),),
            ok=(200, 404),
            what=f"blob {domain}/{repo_path}@{digest}",
        )
        await resp.aclose()
        if resp.status_code == 404:
            return None
        length = resp.headers.get("content-length", "")
        return int(length) if length.isdigit() else 0

    async def fetch_blob(
        self,
        domain: str,
        repo_path: str,
        desc: Descriptor,
        dest: BlobSink,
        *,
        progress: Progress | None = None,
    ) -> None:
        """Stream blob ``desc`` into ``dest``, verifying its size and digest as it flows.

        At most ``max_concurrent_downloads`` run at once. A connection lost midway is resumed with a
        ``Range`` request from the last byte received (bytes a server resends are skipped), up to the
        client's retries. ``desc.urls`` are never fetched. Raises RegistryInvalid when the content is
        longer or shorter than ``desc.size`` or hashes to another digest (``dest`` has then received
        the bad bytes), RegistryNotFound for an unknown blob, RegistryForbidden, RegistryUnavailable.
        Exceptions raised by ``dest`` or ``progress`` pass through unchanged.
        """
        self._check_repo(repo_path)
        hasher = new_hasher(desc.digest)
        write: Callable[[bytes], object] = dest if callable(dest) else dest.write
        what = f"blob {domain}/{repo_path}@{desc.digest}"
        received = 0
        async with self._downloads:
            resumes = 0
            while True:
                headers = {"Range": f"bytes={received}-"} if received else {}
                resp = await self._request(
                    "GET",
                    domain,
                    f"/v2/{repo_path}/blobs/{desc.digest}",
                    scopes=(_scope(repo_path, "pull"),),
                    headers=headers,
                    ok=(200, 206),
                    what=what,
                )
                try:
                    skip = received if resp.status_code == 200 else received - self._range_start(resp, what)
                    if skip < 0:
                        raise RegistryUnavailable(f"{what}: the registry resumed at a byte past the one asked for")
                    try:
                        async for chunk in resp.aiter_raw():
                            if skip:
                                dropped = min(skip, len(chunk))
                                chunk, skip = chunk[dropped:], skip - dropped
                                if not chunk:
                                    continue
                            if received + len(chunk) > desc.size:
                                raise RegistryInvalid(
                                    f"{what}: the content is longer than the {desc.size} bytes expected"
                                )
                            hasher.update(chunk)
                            write(chunk)
                            received += len(chunk)
                            if progress is not None:
                                progress(received, desc.size)
                    except httpx.TransportError as exc:
                        if received == desc.size:
                            break  # everything arrived; the connection failed after the last byte
                        resumes += 1
                        if resumes >= self._retries:
                            raise RegistryUnavailable(f"{what}: {_describe(exc)} after {received} bytes") from exc
                        await self._backoff(resumes)
                        continue
                    except httpx.HTTPError as exc:
                        raise RegistryUnavailable(f"{what}: {_describe(exc)} after {received} bytes") from exc
                finally:
                    await resp.aclose()
                break
        if received != desc.size:
            raise RegistryInvalid(f"{what}: got {received} bytes, expected {desc.size}")
        actual = f"{desc.digest.partition(':')[0]}:{hasher.hexdigest()}"
        if actual != desc.digest:
            raise RegistryInvalid(f"{what}: content verification failed: the content has digest {actual}")
        if progress is not None and desc.size == 0:
            progress(0, 0)

    @staticmethod
    def _range_start(resp: httpx.Response, what: str) -> int:
        match = re.match(r"^bytes (\d+)-\d+/(?:\d+|\*)$", resp.headers.get("content-range", "").strip())
        if match is None:
            raise RegistryUnavailable(f"{what}: a partial response without a valid Content-Range")
        return int(match.group(1))

    async def push_blob(
        self,
        domain: str,
        repo_path: str,
        desc: Descriptor,
        source: BlobSource,
        *,
        progress: Progress | None = None,
        mount_from: str | None = None,
        chunk_size: int | None = None,
    ) -> None:
        """Make blob ``desc`` exist in ``domain/repo_path``, uploading from ``source`` only if needed.

        A HEAD first: a blob the repository has is not sent again. With ``mount_from`` (another
        repository of the same registry) the registry is asked to mount it; if it declines, the upload
        continues in the session it opened. Otherwise a monolithic upload (POST, then PUT with the
        body), or PATCHes of ``chunk_size`` bytes then a closing PUT. The whole upload is retried on
        connection errors and 5xx. Raises RegistryInvalid if ``source`` does not hold ``desc.size``
        bytes hashing to ``desc.digest`` (or the registry says so), plus the usual kinds.
        """
        self._check_repo(repo_path)
        check_digest(desc.digest)
        if mount_from is not None:
            self._check_repo(mount_from)
        if chunk_size is not None and chunk_size < 1:
            raise RegistryInvalid("chunk_size must be positive")
        scopes: tuple[str, ...] = (_scope(repo_path, "pull,push"),)
        if mount_from is not None and mount_from != repo_path:
            scopes += (_scope(mount_from, "pull"),)
        what = f"push blob {domain}/{repo_path}@{desc.digest}"
        for attempt in range(1, self._retries + 1):
            try:
                await self._push_blob_once(
                    domain, repo_path, desc, source, scopes, what, progress, mount_from, chunk_size
                )
                return
            except RegistryUnavailable:
                if attempt >= self._retries:
                    raise
                await self._backoff(attempt)

    async def _push_blob_once(
        self,
        domain: str,
        repo_path: str,
        desc: Descriptor,
        source: BlobSource,
        scopes: tuple[str, ...],
        what: str,
        progress: Progress | None,
        mount_from: str | None,
        chunk_size: int | None,
    ) -> None:
        existing = await self._blob_size(domain, repo_path, desc.digest, "pull,push")
        if existing is not None:
            if progress is not None:
                progress(desc.size, desc.size)
            return
        start = f"/v2/{repo_path}/blobs/uploads/"
        if mount_from is not None and mount_from != repo_path:
            query = urllib.parse.urlencode({"mount": desc.digest, "from": mount_from})
            start += "?" + query
        resp = await self._request("POST", domain, start, scopes=scopes, ok=(201, 202), what=what, attempts=1)
        await resp.aclose()
        if resp.status_code == 201:
            if progress is not None:
                progress(desc.size, desc.size)
            return
        location = self._upload_location(resp, what)
        if chunk_size is None:
            await self._put_monolithic(domain, location, desc, source, scopes, what, progress)
        else:
            await self._put_chunked(domain, location, desc, source, scopes, what, progress, chunk_size)

    @staticmethod
    def _upload_location(resp: httpx.Response, what: str) -> httpx.URL:
        location = resp.headers.get("location")
        if not location:
            raise RegistryInvalid(f"{what}: the registry gave no upload location")
        try:
            return resp.url.join(location)
        except httpx.InvalidURL as exc:
            raise RegistryInvalid(f"{what}: invalid upload location {location!r}") from exc

    @staticmethod
    def _open(source: BlobSource) -> IO[bytes]:
        try:
            if callable(source):
                return source()
            return open(source, "rb")
        except OSError as exc:
            raise RegistryInvalid(f"cannot open the blob to push: {exc.strerror or exc}") from exc

    async def _put_monolithic(
        self,
        domain: str,
        location: httpx.URL,
        desc: Descriptor,
        source: BlobSource,
        scopes: tuple[str, ...],
        what: str,
        progress: Progress | None,
    ) -> None:
        readers: list[_VerifyingReader] = []

        def body() -> AsyncIterator[bytes]:
            # A new reader per send: the body is sent again if the registry asks to authenticate.
            for old in readers:
                old.close()
            readers.append(_VerifyingReader(self._open(source), desc, what, progress))
            return readers[-1].stream()

        try:
            url = location.copy_merge_params({"digest": desc.digest})
            resp = await self._request(
                "PUT",
                domain,
                url,
                scopes=scopes,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
                body=body,
                ok=(201, 204),
                what=what,
                attempts=1,
            )
            await resp.aclose()
        finally:
            for reader in readers:
                reader.close()

    async def _put_chunked(
        self,
        domain: str,
        location: httpx.URL,
        desc: Descriptor,
        source: BlobSource,
        scopes: tuple[str, ...],
        what: str,
        progress: Progress | None,
        chunk_size: int,
    ) -> None:
        reader = _VerifyingReader(self._open(source), desc, what, progress)
        try:
            offset = 0
            while offset < desc.size:
                chunk = await reader.read(min(chunk_size, desc.size - offset))
                if not chunk:
                    break
                end = offset + len(chunk) - 1
                resp = await self._request(
                    "PATCH",
                    domain,
                    location,
                    scopes=scopes,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{end}",
                        "Content-Length": str(len(chunk)),
                    },
                    body=_constant(chunk),
                    ok=(202, 204),
                    what=what,
                    attempts=1,
                )
                await resp.aclose()
                location = self._upload_location(resp, what)
                offset = end + 1
            reader.finish()
            url = location.copy_merge_params({"digest": desc.digest})
            resp = await self._request(
                "PUT", domain, url, scopes=scopes, body=lambda: b"", ok=(201, 204), what=what, attempts=1
            )
            await resp.aclose()
        finally:
            reader.close()

    # -- login and search -------------------------------------------------------------------------------

    async def login(self, domain: str, username: str, password: str) -> None:
        """Check ``username``/``password`` against ``domain``'s ``/v2/`` and, if they work, store them.

        Raises RegistryForbidden for refused credentials, RegistryInvalid if there is no credential
        store that can keep them, plus the usual kinds.
        """
        if not username or not password:
            raise RegistryInvalid("login needs a username and a password")
        creds = Credentials(username=username, password=password)
        what = f"login to {domain}"
        url = httpx.URL(self.base_url(domain) + "/v2/")
        resp = await self._login_ping(domain, url, what)
        try:
            if resp.status_code == 401:
                challenge = next(
                    (
                        c
                        for v in resp.headers.get_list("www-authenticate")
                        for c in parse_www_authenticate(v)
                        if c.scheme in ("bearer", "basic")
                    ),
                    None,
                )
                if challenge is None:
                    raise await self._error_from(resp, what)
                if challenge.scheme == "bearer":
                    await self._fetch_token(domain, challenge, (), creds)
                else:
                    await resp.aclose()
                    resp = await self._plain_request("GET", url, auth=basic_header(creds), what=what)
                    if resp.status_code != 200:
                        raise await self._error_from(resp, what)
            elif resp.status_code != 200:
                raise await self._error_from(resp, what)
        finally:
            await resp.aclose()
        if self._credentials is None:
            raise RegistryInvalid("there is no credential store to keep the login in")
        await asyncio.to_thread(self._credentials.store, domain, creds)
        self._forget_domain(domain)

    async def _login_ping(self, domain: str, url: httpx.URL, what: str) -> httpx.Response:
        try:
            return await self._plain_request("GET", url, what=what)
        except RegistryUnavailable as exc:
            if not isinstance(exc.__cause__, httpx.ConnectError) or not self._fall_back_to_http(domain, url):
                raise
            return await self._plain_request("GET", url.copy_with(scheme="http"), what=what)

    async def logout(self, domain: str) -> bool:
        """Forget the stored credentials for ``domain``; True if there were any."""
        if self._credentials is None:
            return False
        removed = await asyncio.to_thread(self._credentials.erase, domain)
        self._forget_domain(domain)
        return removed

    async def search(self, term: str, limit: int = 25) -> list[SearchResult]:
        """Search repositories with the v1 search API: Docker Hub's (``search_url``) unless ``term``
        starts with a registry domain (``host:port/term``), then that registry's ``/v1/search``.

        Raises RegistryInvalid for an empty term or a limit outside 1..100, plus the usual kinds.
        """
        if not 1 <= limit <= 100:
            raise RegistryInvalid(f"limit {limit} is outside 1..100")
        first, sep, rest = term.partition("/")
        url = httpx.URL(self._search_url)
        if (
            sep
            and ("." in first or ":" in first or first == "localhost")
            and registry_host(first) != DOCKER_HUB_REGISTRY
        ):
            url, term = httpx.URL(self.base_url(first) + "/v1/search"), rest
        elif sep and first.lower() in ("docker.io", "index.docker.io"):
            term = rest
        if not term.strip():
            raise RegistryInvalid("search needs a term")
        what = f"search {term!r}"
        resp = await self._plain_request("GET", url.copy_merge_params({"q": term, "n": str(limit)}), what=what)
        body = await self._read_ok(resp, MAX_MANIFEST_SIZE, what)
        try:
            doc = json.loads(body)
            results = doc["results"]
            return [
                SearchResult(
                    name=str(r["name"]),
                    description=str(r.get("description") or ""),
                    star_count=int(r.get("star_count") or 0),
                    is_official=bool(r.get("is_official")),
                    is_automated=bool(r.get("is_automated")),
                )
                for r in results[:limit]
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RegistryInvalid(f"{what}: invalid search response") from exc


class _VerifyingReader:
    """Reads a blob to upload, counting and hashing; raises RegistryInvalid on a size or digest mismatch."""

    def __init__(self, file: IO[bytes], desc: Descriptor, what: str, progress: Progress | None) -> None:
        self._file = file
        self._desc = desc
        self._what = what
        self._progress = progress
        self._hasher = new_hasher(desc.digest)
        self._done = 0

    async def read(self, n: int) -> bytes:
        try:
            chunk = await asyncio.to_thread(self._file.read, n)
        except OSError as exc:
            raise RegistryInvalid(f"{self._what}: cannot read the blob: {exc.strerror or exc}") from exc
        if self._done + len(chunk) > self._desc.size:
            raise RegistryInvalid(f"{self._what}: the source is longer than {self._desc.size} bytes")
        self._hasher.update(chunk)
        self._done += len(chunk)
        if self._progress is not None and chunk:
            self._progress(self._done, self._desc.size)
        return chunk

    def finish(self) -> None:
        """Check that everything was read and hashes to the digest."""
        if self._done != self._desc.size:
            raise RegistryInvalid(f"{self._what}: the source holds {self._done} bytes, not {self._desc.size}")
        actual = f"{self._desc.digest.partition(':')[0]}:{self._hasher.hexdigest()}"
        if actual != self._desc.digest:
            raise RegistryInvalid(f"{self._what}: the source has digest {actual}, not {self._desc.digest}")

    async def _iterate(self) -> AsyncIterator[bytes]:
        while self._done < self._desc.size:
            chunk = await self.read(min(_CHUNK, self._desc.size - self._done))
            if not chunk:
                break
            yield chunk
        self.finish()

    def stream(self) -> AsyncIterator[bytes]:
        """The whole blob as an async iterator (one use: a retried request needs a new reader)."""
        return self._iterate()

    def close(self) -> None:
        self._file.close()
