"""Image references, parsed and normalised as Docker 20.10 does.

Docker's rules live in ``github.com/docker/distribution/reference`` (normalize.go, reference.go,
regexp.go) plus ``github.com/opencontainers/go-digest``; this module re-implements them (it is not a
port of that code) and keeps Docker's error texts, because users and the ``docker`` CLI compare them.

Grammar (reference.go's; the bracketed IPv6 host is from distribution v3, Docker 20.10 lacks it)::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [ domain "/" ] path
    domain           := host [ ":" [0-9]+ ]
    host             := domain-component [ "." domain-component ]* | "[" [a-fA-F0-9:]+ "]"
    domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
    path             := path-component [ "/" path-component ]*
    path-component   := [a-z0-9]+ ( ( "." | "_" | "__" | "-"* ) [a-z0-9]+ )*
    tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest           := algorithm ":" hex{32,}             (then checked as go-digest does)

Normalisation (ParseNormalizedNamed): the part before the first "/" is a domain when it contains "."
or ":" or is "localhost"; otherwise the domain is ``docker.io``. ``index.docker.io`` becomes
``docker.io``, and a one-component path on ``docker.io`` gets the ``library/`` prefix.

Performance: every pattern is written so that Python's backtracking engine cannot backtrack into a
repetition (possessive quantifiers over disjoint character classes), so parsing is linear in the
length of the input and hostile input of any size is rejected quickly, with the error Docker gives.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from backend.engine.errors import InvalidParameter

DEFAULT_DOMAIN = "docker.io"
"""Docker Hub's name in references."""

LEGACY_DEFAULT_DOMAIN = "index.docker.io"
"""Docker Hub's legacy name; normalised to :data:`DEFAULT_DOMAIN`."""

DOCKER_HUB_REGISTRY_HOST = "registry-1.docker.io"
"""The host that serves Docker Hub's registry API."""

OFFICIAL_REPO_PREFIX = "library/"
"""Namespace of Docker Hub's official images (``busybox`` is ``docker.io/library/busybox``)."""

DEFAULT_TAG = "latest"
"""The tag used when a reference names neither a tag nor a digest."""

NAME_TOTAL_LENGTH_MAX = 255
"""Maximum length of a full name (domain and path), as distribution v2 (Docker 20.10) counts it."""

# Error texts, as Docker 20.10 (distribution v2, go-digest v1.0.0) prints them.
MSG_INVALID_FORMAT = "invalid reference format"
MSG_LOWERCASE = "invalid reference format: repository name must be lowercase"
MSG_CONTAINS_UPPERCASE = "repository name must be lowercase"
MSG_NAME_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
MSG_INVALID_TAG = "invalid tag format"
MSG_DIGEST_INVALID_FORMAT = "invalid checksum digest format"
MSG_DIGEST_INVALID_LENGTH = "invalid checksum digest length"
MSG_DIGEST_UNSUPPORTED = "unsupported digest algorithm"

# Algorithms dockerd has registered (crypto/sha256 and crypto/sha512), with their hex lengths.
_DIGEST_HEX_LENGTHS: dict[str, int] = {"sha256": 64, "sha384": 96, "sha512": 128}

# --- the grammar -------------------------------------------------------------------------------------
# Each repetition is possessive (``++``, ``*+``) and is followed by a character it cannot match, so
# the possessive form accepts the same language as Docker's pattern and never backtracks.
_DOMAIN_COMPONENT = r"[a-zA-Z0-9]++(?:-++[a-zA-Z0-9]++)*+"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*+"
_IPV6 = r"\[[a-fA-F0-9:]++\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]++)?+"
_PATH_COMPONENT = r"[a-z0-9]++(?:(?:[._]|__|-++)[a-z0-9]++)*+"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*+"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}+"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*+(?:[-_+.][A-Za-z][A-Za-z0-9]*+)*+:[0-9a-fA-F]{32,}+"

_DOMAIN_RE = re.compile(_DOMAIN)
_PATH_RE = re.compile(_PATH)
_TAG_RE = re.compile(_TAG)
_DIGEST_RE = re.compile(_DIGEST)
# The optional domain group is tried first and dropped when the rest does not fit, as Go's
# leftmost-first matching does: "a_b.c/x" is then a domainless path, as in Docker.
_REFERENCE_RE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH}))(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_LOWER_HEX_RE = re.compile(r"[a-f0-9]++")


class InvalidReference(InvalidParameter):
    """A reference, tag or digest that Docker would refuse; ``str(err)`` is Docker's message."""


@dataclass(frozen=True)
class Reference:
    """A parsed image reference: ``[domain/]path[:tag][@digest]``.

    Invariants (checked on construction; :class:`InvalidReference` otherwise): ``domain`` is a valid
    domain (``docker.io``, ``localhost:5000``, ``[::1]:5000``) or ``""`` (Docker accepts a first
    component that is a valid path component but not a valid domain, e.g. ``a_b.c/x``, as a path);
    ``path`` is one or more lowercase path components; the full name is at most 255 characters;
    ``tag`` is None or a valid tag; ``digest`` is None or ``sha256:``/``sha384:``/``sha512:``
    followed by lowercase hex of the algorithm's length. Construction does not normalise: use
    :func:`parse_reference` for user input.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        if self.domain and not _DOMAIN_RE.fullmatch(self.domain):
            raise InvalidReference(MSG_INVALID_FORMAT)
        if not _PATH_RE.fullmatch(self.path):
            raise InvalidReference(MSG_INVALID_FORMAT)
        if len(self.repository) > NAME_TOTAL_LENGTH_MAX:
            raise InvalidReference(MSG_NAME_TOO_LONG)
        if self.tag is not None:
            parse_tag(self.tag)
        if self.digest is not None:
            if not _DIGEST_RE.fullmatch(self.digest):
                raise InvalidReference(MSG_INVALID_FORMAT)
            _validate_digest(self.digest)

    @property
    def repository(self) -> str:
        """The full name without tag or digest: ``docker.io/library/busybox`` (Docker's Name())."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        """The name as Docker shows it (FamiliarName): ``busybox``, ``user/app``, ``localhost:5000/x``.

        Only ``docker.io`` is dropped, and ``library/`` only when exactly one component follows it.
        """
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        if self.path.startswith(OFFICIAL_REPO_PREFIX) and self.path.count("/") == 1:
            return self.path[len(OFFICIAL_REPO_PREFIX) :]
        return self.path

    @property
    def registry_host(self) -> str:
        """The host[:port] to contact: ``registry-1.docker.io`` for ``docker.io``, else the domain.

        ``""`` for a domainless reference (see the class docstring): there is no registry to contact.
        """
        return DOCKER_HUB_REGISTRY_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    def with_default_tag(self) -> Reference:
        """This reference with tag ``latest`` if it has neither tag nor digest (Docker's TagNameOnly)."""
        if self.tag is None and self.digest is None:
            return dataclasses.replace(self, tag=DEFAULT_TAG)
        return self

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest

    def __str__(self) -> str:
        """The full normalised form: ``docker.io/library/busybox:latest``, ``repo:tag@sha256:...``."""
        return self.repository + self._suffix()

    def familiar(self) -> str:
        """The form Docker shows (FamiliarString): ``busybox:latest``, ``localhost:5000/x@sha256:...``."""
        return self.familiar_name + self._suffix()


def parse_tag(text: str) -> str:
    """Return ``text`` if it is a valid tag (``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``).

    Raises :class:`InvalidReference` ("invalid tag format", Docker's WithTag error) otherwise.
    """
    if not _TAG_RE.fullmatch(text):
        raise InvalidReference(MSG_INVALID_TAG)
    return text


def is_full_image_id(text: str) -> bool:
    """True if ``text`` is a full image ID: 64 lowercase hex digits, optionally ``sha256:``-prefixed."""
    return _IDENTIFIER_RE.fullmatch(text.removeprefix("sha256:")) is not None


def parse_reference(text: str, *, for_pull: bool = False) -> Reference:
    """Parse and normalise ``text`` as Docker's ParseNormalizedNamed does.

    ``busybox`` → ``docker.io/library/busybox`` (no tag: see :meth:`Reference.with_default_tag`),
    ``index.docker.io/x`` → ``docker.io/library/x``, ``localhost:5000/x:1@sha256:...`` keeps all parts.

    With ``for_pull`` a bare 64-hex string is refused, as Docker refuses it as a name ("invalid
    repository name (<hex>), cannot specify 64-byte hexadecimal strings"); without it such a string
    parses as ``docker.io/library/<hex>``, so callers that accept image IDs must check
    :func:`is_full_image_id` first.

    Raises :class:`InvalidReference` with Docker 20.10's message: "invalid reference format" (bad
    syntax, empty input, bad tag, digest that is not ``alg:hex{32,}``), "invalid reference format:
    repository name must be lowercase" (uppercase in the path), "repository name must not be more
    than 255 characters" (full name, domain included), "invalid checksum digest length", "invalid
    checksum digest format" or "unsupported digest algorithm" (digest checks of go-digest).
    Runs in time linear in ``len(text)``.
    """
    if for_pull and _IDENTIFIER_RE.fullmatch(text):
        raise InvalidReference(f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_docker_domain(text)
    # Docker checks case on the part before the first ":" (which may run into a digest).
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise InvalidReference(MSG_LOWERCASE)
    return _parse(f"{domain}/{remainder}")


def _split_docker_domain(name: str) -> tuple[str, str]:
    """Split ``name`` into (domain, rest) by Docker 20.10's rule (splitDockerDomain)."""
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _parse(text: str) -> Reference:
    """Parse a full reference without normalising it (distribution's Parse)."""
    match = _REFERENCE_RE.fullmatch(text)
    if match is None:
        if _REFERENCE_RE.fullmatch(text.lower()):
            raise InvalidReference(MSG_CONTAINS_UPPERCASE)
        raise InvalidReference(MSG_INVALID_FORMAT)
    if len(match["name"]) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(MSG_NAME_TOO_LONG)
    digest: str | None = match["digest"]
    if digest is not None:
        _validate_digest(digest)
    return Reference(domain=match["domain"] or "", path=match["path"], tag=match["tag"], digest=digest)


def _validate_digest(digest: str) -> None:
    """Check ``alg:hex`` (already of the reference grammar) as go-digest's Digest.Validate does."""
    algorithm, _, encoded = digest.partition(":")
    expected = _DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        # go-digest's own digest pattern differs from the reference grammar only in wanting a
        # lowercase algorithm; an algorithm it cannot even read is a format error.
        if algorithm.lower() != algorithm:
            raise InvalidReference(MSG_DIGEST_INVALID_FORMAT)
        raise InvalidReference(MSG_DIGEST_UNSUPPORTED)
    if len(encoded) != expected:
        raise InvalidReference(MSG_DIGEST_INVALID_LENGTH)
    if not _LOWER_HEX_RE.fullmatch(encoded):
        raise InvalidReference(MSG_DIGEST_INVALID_FORMAT)
