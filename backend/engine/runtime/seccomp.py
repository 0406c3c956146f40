"""Seccomp filters for berth-runtime: parse, compile with libseccomp, load.

Three steps, each with its own guarantee:

* :func:`parse_seccomp` turns the OCI ``linux.seccomp`` object of a config.json into a frozen
  :class:`SeccompConfig`. Everything the runtime-spec allows is checked here (JSON types, actions, operators,
  architectures, flags, argument indexes, syscall names), so a config that parses is one
  :func:`compile_filter` can build. Unknown JSON properties are ignored, as the runtime-spec requires.
* :func:`compile_filter` builds a libseccomp filter context from a :class:`SeccompConfig`. It loads
  ``libseccomp.so.2`` with ctypes, so it must run before the process leaves the host's root (pivot_root).
* :meth:`CompiledFilter.load` only calls ``seccomp_load``: it imports nothing, opens no file and loads no
  library, so it is safe to call inside the container root, just before ``execve``.

:func:`oci_seccomp_from_docker_profile` turns a Docker seccomp profile (the format of
``resources/seccomp/default.json``, with ``archMap`` and per-rule ``includes``/``excludes``) into the OCI
object for one capability set, architecture and kernel, choosing the same rules Docker does.

Syscall names are checked against libseccomp (any architecture) and a built-in table of syscalls newer than
the libseccomp 2.5 series; names only the table knows are filtered by their number on x86_64 and aarch64 and
skipped on other architectures, as runc skips names its libseccomp does not know.

libseccomp is loaded lazily (on first use) and cached; importing this module has no side effects.
Failures are raised as ``backend.engine.errors`` kinds with one-line messages starting with ``seccomp``.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import platform
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backend.engine.errors import (
    Forbidden,
    InvalidParameter,
    NotImplementedByEngine,
    Unavailable,
)
from backend.resource_files import resource_path

__all__ = [
    "CompiledFilter",
    "SeccompArg",
    "SeccompConfig",
    "SeccompRule",
    "compile_filter",
    "default_docker_profile",
    "oci_seccomp_from_docker_profile",
    "parse_seccomp",
]


@dataclass(frozen=True)
class SeccompArg:
    """One argument comparison. For ``SCMP_CMP_MASKED_EQ`` the test is ``(arg & value) == value_two``."""

    index: int
    value: int
    value_two: int
    op: str


@dataclass(frozen=True)
class SeccompRule:
    """One OCI syscall rule: these names get ``action`` when all of ``args`` match.

    ``names`` holds no duplicates and every name is known (see :func:`parse_seccomp`).
    """

    names: tuple[str, ...]
    action: str
    errno_ret: int | None
    args: tuple[SeccompArg, ...]


@dataclass(frozen=True)
class SeccompConfig:
    """A validated OCI ``linux.seccomp`` object."""

    default_action: str
    default_errno_ret: int | None
    architectures: tuple[str, ...]
    flags: tuple[str, ...]
    syscalls: tuple[SeccompRule, ...]


# --- Tables -----------------------------------------------------------------------------------------------

# Action name -> libseccomp action value (the errno, if any, goes into the low 16 bits).
_ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_ERRNO_ACTIONS = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})
_UNSUPPORTED_ACTIONS = frozenset({"SCMP_ACT_NOTIFY"})

# Comparison operator name -> enum scmp_compare value.
_OPS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# OCI architecture name -> libseccomp architecture name.
_ARCHES: dict[str, str] = {
    f"SCMP_ARCH_{name.upper()}": name
    for name in (
        "x86", "x86_64", "x32", "arm", "aarch64", "loongarch64", "m68k",
        "mips", "mips64", "mips64n32", "mipsel", "mipsel64", "mipsel64n32",
        "ppc", "ppc64", "ppc64le", "s390", "s390x", "parisc", "parisc64", "riscv64", "sh", "sheb",
    )
}  # fmt: skip

# enum scmp_filter_attr values (libseccomp 2.5).
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
_ATTR_API_SYSRAWRC = 9

# OCI flag -> filter attribute; None: accepted, nothing to set (only meaningful with a notify listener).
_FLAGS: dict[str, int | None] = {
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": None,
}

_AUDIT_ARCH_X86_64 = 0xC000003E
_AUDIT_ARCH_AARCH64 = 0xC00000B7

# Syscalls newer than libseccomp 2.5.4 (some distributions patch a few in): name -> (x86_64, aarch64)
# numbers from the kernel's syscall tables (arch/x86/entry/syscalls/syscall_64.tbl, scripts/syscall.tbl);
# None where the syscall does not exist on that architecture.
_NEWER_SYSCALLS: dict[str, tuple[int | None, int | None]] = {
    "cachestat": (451, 451),
    "fchmodat2": (452, 452),
    "map_shadow_stack": (453, 453),
    "futex_wake": (454, 454),
    "futex_wait": (455, 455),
    "futex_requeue": (456, 456),
    "statmount": (457, 457),
    "listmount": (458, 458),
    "lsm_get_self_attr": (459, 459),
    "lsm_set_self_attr": (460, 460),
    "lsm_list_modules": (461, 461),
    "mseal": (462, 462),
    "setxattrat": (463, 463),
    "getxattrat": (464, 464),
    "listxattrat": (465, 465),
    "removexattrat": (466, 466),
    "open_tree_attr": (467, 467),
    "file_getattr": (468, 468),
    "file_setattr": (469, 469),
    "uretprobe": (335, None),  # x86_64 only
    "riscv_hwprobe": (None, None),  # riscv64 only (258)
}

_NR_SCMP_ERROR = -1  # what seccomp_syscall_resolve_name* returns for a name it does not know
_MAX_ERRNO_DATA = 0xFFFF  # the errno of ERRNO/TRACE sits in the 16 data bits of the action
_MAX_ARG_INDEX = 5
_MAX_U64 = 2**64 - 1
_MAX_NAME_LEN = 64
_MAX_RULES = 8192
_MAX_ARGS_PER_RULE = 64
_SYSCALL_NAME = re.compile(r"[a-z0-9_]+")


# --- libseccomp -------------------------------------------------------------------------------------------


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


@functools.cache
def _libseccomp() -> ctypes.CDLL:
    """Load libseccomp.so.2 once and declare the functions used. Raises Unavailable if it cannot be loaded."""
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise Unavailable(f"seccomp: cannot load libseccomp.so.2: {exc}") from exc
    ctx = ctypes.c_void_p
    signatures: dict[str, tuple[list[Any], Any]] = {
        "seccomp_init": ([ctypes.c_uint32], ctypes.c_void_p),
        "seccomp_release": ([ctx], None),
        "seccomp_arch_native": ([], ctypes.c_uint32),
        "seccomp_arch_resolve_name": ([ctypes.c_char_p], ctypes.c_uint32),
        "seccomp_arch_add": ([ctx, ctypes.c_uint32], ctypes.c_int),
        "seccomp_arch_remove": ([ctx, ctypes.c_uint32], ctypes.c_int),
        "seccomp_merge": ([ctx, ctx], ctypes.c_int),
        "seccomp_syscall_resolve_name": ([ctypes.c_char_p], ctypes.c_int),
        "seccomp_syscall_resolve_name_arch": ([ctypes.c_uint32, ctypes.c_char_p], ctypes.c_int),
        "seccomp_rule_add_array": (
            [ctx, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)],
            ctypes.c_int,
        ),
        "seccomp_attr_set": ([ctx, ctypes.c_int, ctypes.c_uint32], ctypes.c_int),
        "seccomp_load": ([ctx], ctypes.c_int),
    }
    for name, (argtypes, restype) in signatures.items():
        try:
            func = getattr(lib, name)
        except AttributeError as exc:
            raise Unavailable(f"seccomp: libseccomp.so.2 lacks {name}") from exc
        func.argtypes = argtypes
        func.restype = restype
    return lib


@functools.cache
def _arch_tokens() -> tuple[int, ...]:
    """Tokens of every architecture this libseccomp knows, native first."""
    lib = _libseccomp()
    tokens = [int(lib.seccomp_arch_native())]
    for name in _ARCHES.values():
        token = int(lib.seccomp_arch_resolve_name(name.encode()))
        if token and token not in tokens:
            tokens.append(token)
    return tuple(tokens)


@functools.lru_cache(maxsize=4096)
def _syscall_known(name: str) -> bool:
    """True if libseccomp resolves ``name`` on any architecture or the built-in table lists it."""
    lib = _libseccomp()
    encoded = name.encode()
    if int(lib.seccomp_syscall_resolve_name(encoded)) != _NR_SCMP_ERROR:
        return True
    if name in _NEWER_SYSCALLS:
        return True
    return any(
        int(lib.seccomp_syscall_resolve_name_arch(token, encoded)) != _NR_SCMP_ERROR
        for token in _arch_tokens()
    )


def _table_number(name: str, native: int) -> int | None:
    """The built-in table's number of ``name`` on the native architecture, or None."""
    numbers = _NEWER_SYSCALLS.get(name)
    if numbers is None:
        return None
    if native == _AUDIT_ARCH_X86_64:
        return numbers[0]
    if native == _AUDIT_ARCH_AARCH64:
        return numbers[1]
    return None


# --- Parsing ----------------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _expect_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidParameter(f"seccomp: {where} must be a string, got {_type_name(value)}")
    return value


def _expect_list(value: object, where: str) -> Sequence[object]:
    if not isinstance(value, (list, tuple)):
        raise InvalidParameter(f"seccomp: {where} must be an array, got {_type_name(value)}")
    return value


def _expect_object(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise InvalidParameter(f"seccomp: {where} must be an object, got {_type_name(value)}")
    return value


def _expect_uint(value: object, where: str, maximum: int) -> int:
    if not _is_int(value):
        raise InvalidParameter(f"seccomp: {where} must be an integer, got {_type_name(value)}")
    assert isinstance(value, int)
    if value < 0 or value > maximum:
        raise InvalidParameter(f"seccomp: {where} must be from 0 to {maximum}, got {value}")
    return value


def _parse_action(value: object, where: str) -> str:
    action = _expect_str(value, where)
    if action in _UNSUPPORTED_ACTIONS:
        raise NotImplementedByEngine(f"seccomp: {where} {action} is not supported (no notify listener)")
    if action not in _ACTIONS:
        raise InvalidParameter(f"seccomp: {where} has unknown action {_quote(action)}")
    return action


def _parse_errno(value: object, action: str, where: str) -> int | None:
    if value is None:
        return None
    number = _expect_uint(value, where, _MAX_ERRNO_DATA)
    if action not in _ERRNO_ACTIONS:
        raise InvalidParameter(f"seccomp: {where} is set but action {action} takes no errno")
    return number


def _parse_name(value: object, where: str) -> str:
    name = _expect_str(value, where)
    if len(name) > _MAX_NAME_LEN:
        raise InvalidParameter(f"seccomp: {where} is too long to be a syscall name ({len(name)} characters)")
    if not _SYSCALL_NAME.fullmatch(name) or not _syscall_known(name):
        raise InvalidParameter(f"seccomp: unknown syscall name {_quote(name)}")
    return name


def _parse_arg(value: object, where: str) -> SeccompArg:
    arg = _expect_object(value, where)
    if "index" not in arg:
        raise InvalidParameter(f"seccomp: {where}.index is missing")
    index_raw = arg["index"]
    if not _is_int(index_raw):
        raise InvalidParameter(f"seccomp: {where}.index must be an integer, got {_type_name(index_raw)}")
    assert isinstance(index_raw, int)
    if not 0 <= index_raw <= _MAX_ARG_INDEX:
        raise InvalidParameter(
            f"seccomp: {where}.index must be from 0 to {_MAX_ARG_INDEX} (syscalls have 6 arguments), "
            f"got {index_raw}"
        )
    if "value" not in arg:
        raise InvalidParameter(f"seccomp: {where}.value is missing")
    value_one = _expect_uint(arg["value"], f"{where}.value", _MAX_U64)
    value_two_raw = arg.get("valueTwo")
    value_two = 0 if value_two_raw is None else _expect_uint(value_two_raw, f"{where}.valueTwo", _MAX_U64)
    if "op" not in arg:
        raise InvalidParameter(f"seccomp: {where}.op is missing")
    op = _expect_str(arg["op"], f"{where}.op")
    if op not in _OPS:
        raise InvalidParameter(f"seccomp: {where}.op has unknown operator {_quote(op)}")
    return SeccompArg(index=index_raw, value=value_one, value_two=value_two, op=op)


def _parse_rule(value: object, where: str) -> SeccompRule:
    rule = _expect_object(value, where)
    names_raw = _expect_list(rule.get("names"), f"{where}.names")
    if not names_raw:
        raise InvalidParameter(f"seccomp: {where}.names is empty")
    names: dict[str, None] = {}
    for position, name_raw in enumerate(names_raw):
        names.setdefault(_parse_name(name_raw, f"{where}.names[{position}]"), None)
    if "action" not in rule:
        raise InvalidParameter(f"seccomp: {where}.action is missing")
    action = _parse_action(rule["action"], f"{where}.action")
    errno_ret = _parse_errno(rule.get("errnoRet"), action, f"{where}.errnoRet")
    args_raw = rule.get("args")
    args: list[SeccompArg] = []
    if args_raw is not None:
        items = _expect_list(args_raw, f"{where}.args")
        if len(items) > _MAX_ARGS_PER_RULE:
            raise InvalidParameter(
                f"seccomp: {where}.args has {len(items)} entries, at most {_MAX_ARGS_PER_RULE}"
            )
        args = [_parse_arg(item, f"{where}.args[{position}]") for position, item in enumerate(items)]
    return SeccompRule(names=tuple(names), action=action, errno_ret=errno_ret, args=tuple(args))


def parse_seccomp(obj: object) -> SeccompConfig:
    """Validate the OCI config.json ``linux.seccomp`` object and return it as a :class:`SeccompConfig`.

    Unknown properties are ignored (runtime-spec). ``defaultErrnoRet``/``errnoRet`` are only accepted with
    SCMP_ACT_ERRNO or SCMP_ACT_TRACE. Duplicate names in one rule are dropped.

    Raises InvalidParameter (one-line message naming the field) for wrong JSON types, a missing
    defaultAction, an unknown action, operator, architecture or flag, an argument index above 5, a value out
    of range, or an unknown syscall name (``seccomp: unknown syscall name "foo"``); NotImplementedByEngine for
    SCMP_ACT_NOTIFY and a listenerPath; Unavailable if libseccomp, needed to check names, cannot be loaded.
    """
    config = _expect_object(obj, "linux.seccomp")
    listener = config.get("listenerPath")
    if listener is not None and listener != "":
        _expect_str(listener, "listenerPath")
        raise NotImplementedByEngine("seccomp: listenerPath is not supported (no notify listener)")
    if "defaultAction" not in config:
        raise InvalidParameter("seccomp: defaultAction is missing")
    default_action = _parse_action(config["defaultAction"], "defaultAction")
    default_errno = _parse_errno(config.get("defaultErrnoRet"), default_action, "defaultErrnoRet")

    architectures: dict[str, None] = {}
    arches_raw = config.get("architectures")
    if arches_raw is not None:
        for position, item in enumerate(_expect_list(arches_raw, "architectures")):
            arch = _expect_str(item, f"architectures[{position}]")
            if arch not in _ARCHES:
                raise InvalidParameter(f"seccomp: architectures[{position}] is unknown: {_quote(arch)}")
            architectures.setdefault(arch, None)

    flags: dict[str, None] = {}
    flags_raw = config.get("flags")
    if flags_raw is not None:
        for position, item in enumerate(_expect_list(flags_raw, "flags")):
            flag = _expect_str(item, f"flags[{position}]")
            if flag not in _FLAGS:
                raise InvalidParameter(f"seccomp: flags[{position}] is unknown: {_quote(flag)}")
            flags.setdefault(flag, None)

    rules: list[SeccompRule] = []
    syscalls_raw = config.get("syscalls")
    if syscalls_raw is not None:
        items = _expect_list(syscalls_raw, "syscalls")
        if len(items) > _MAX_RULES:
            raise InvalidParameter(f"seccomp: syscalls has {len(items)} rules, at most {_MAX_RULES}")
        rules = [_parse_rule(item, f"syscalls[{position}]") for position, item in enumerate(items)]

    return SeccompConfig(
        default_action=default_action,
        default_errno_ret=default_errno,
        architectures=tuple(architectures),
        flags=tuple(flags),
        syscalls=tuple(rules),
    )


# --- Compiling and loading --------------------------------------------------------------------------------


def _action_value(action: str, errno_ret: int | None) -> int:
    """The libseccomp action value; ERRNO and TRACE carry the errno (default EPERM) in the low 16 bits."""
    value = _ACTIONS[action]
    if action in _ERRNO_ACTIONS:
        return value | (errno.EPERM if errno_ret is None else errno_ret)
    return value


def _comparison_sets(args: tuple[SeccompArg, ...]) -> list[tuple[SeccompArg, ...]]:
    """The argument lists to add as separate rules.

    libseccomp rejects two comparisons of the same argument in one rule; then, as runc does, every
    comparison becomes a rule of its own.
    """
    indexes = [arg.index for arg in args]
    if len(set(indexes)) == len(indexes):
        return [args]
    return [(arg,) for arg in args]


class CompiledFilter:
    """A libseccomp filter context built by :func:`compile_filter`, ready to load.

    :meth:`load` calls only ``seccomp_load`` (through a function pointer resolved at build time): no
    import, no file access, no library loading, so it may run after pivot_root. Release the context with
    :meth:`release` (or use the object as a context manager); releasing twice is harmless.
    """

    __slots__ = ("_ctx", "_load_fn", "_release_fn")

    def __init__(self, ctx: int, load_fn: Callable[[int], int], release_fn: Callable[[int], None]) -> None:
        self._ctx: int | None = ctx
        self._load_fn = load_fn
        self._release_fn = release_fn

    def load(self) -> None:
        """Install the filter on the calling thread (all threads with SECCOMP_FILTER_FLAG_TSYNC).

        Without no_new_privs the caller needs CAP_SYS_ADMIN. Raises Forbidden when the kernel refuses for
        lack of privilege (EACCES/EPERM), Unavailable for any other failure or if the filter was released;
        both wrap the OSError.
        """
        ctx = self._ctx
        if ctx is None:
            raise Unavailable("seccomp: the filter was released before it was loaded")
        rc = self._load_fn(ctx)
        if rc >= 0:
            return
        code = -rc
        cause = OSError(code, os.strerror(code))
        if code in (errno.EACCES, errno.EPERM):
            raise Forbidden(
                f"seccomp: loading the filter was refused ({cause.strerror}); "
                "set no_new_privs or hold CAP_SYS_ADMIN"
            ) from cause
        raise Unavailable(f"seccomp: loading the filter failed: {cause.strerror}") from cause

    def release(self) -> None:
        """Free the libseccomp context (the loaded kernel filter is unaffected). Idempotent."""
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            self._release_fn(ctx)

    def __enter__(self) -> CompiledFilter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:
            pass  # never raise from a finalizer (e.g. at interpreter exit)


class _Context:
    """One libseccomp context during compilation (owned until handed over or released)."""

    def __init__(self, lib: ctypes.CDLL, default_action: int) -> None:
        self.lib = lib
        ctx = lib.seccomp_init(default_action)
        if not ctx:
            raise Unavailable("seccomp: seccomp_init failed (out of memory or default action not supported)")
        self.ctx: int | None = int(ctx)

    def handle(self) -> int:
        assert self.ctx is not None
        return self.ctx

    def set_attr(self, attr: int, value: int) -> int:
        return int(self.lib.seccomp_attr_set(self.handle(), attr, value))

    def add_rule(self, action: int, number: int, name: str, args: tuple[SeccompArg, ...]) -> None:
        array = (_ArgCmp * len(args))(
            *(_ArgCmp(arg.index, _OPS[arg.op], arg.value, arg.value_two) for arg in args)
        )
        rc = int(
            self.lib.seccomp_rule_add_array(self.handle(), action, number, len(args), array if args else None)
        )
        if rc < 0:
            raise InvalidParameter(
                f"seccomp: libseccomp rejected the rule for syscall {_quote(name)}: {os.strerror(-rc)}"
            )

    def release(self) -> None:
        ctx, self.ctx = self.ctx, None
        if ctx is not None:
            self.lib.seccomp_release(ctx)


def compile_filter(config: SeccompConfig) -> CompiledFilter:
    """Build a libseccomp filter for ``config`` (call before pivot_root; see the module docstring).

    The native architecture is always filtered; listed architectures libseccomp does not know or whose byte
    order differs from this machine's are skipped (they cannot run here; their calls get the
    bad-architecture action, kill). SCMP_FLTATR_CTL_NNP is off: the runtime sets no_new_privs itself.
    Flags map to filter attributes and are ignored where libseccomp or the kernel lacks them. Names only the
    built-in table knows are filtered by number on the native architecture (x86_64, aarch64) and skipped
    elsewhere; rules whose action equals the default action are skipped; a rule comparing one argument
    twice becomes one rule per comparison, as runc does.

    Raises Unavailable if libseccomp cannot be loaded or a context cannot be created, InvalidParameter if
    libseccomp rejects a rule (the message names the syscall).
    """
    lib = _libseccomp()
    default = _action_value(config.default_action, config.default_errno_ret)
    native = int(lib.seccomp_arch_native())
    others: list[int] = []
    for arch in config.architectures:
        token = int(lib.seccomp_arch_resolve_name(_ARCHES[arch].encode()))
        if token and token != native and token not in others:
            others.append(token)

    # Names only the table knows can be given to libseccomp as native numbers only in a context that
    # holds the native architecture alone (libseccomp translates numbers to other architectures by name).
    # So the native architecture and the others get a context each; the two are merged at the end.
    main = _Context(lib, default)
    aux: _Context | None = None
    try:
        contexts = [main]
        if others:
            aux = _Context(lib, default)
            added = 0
            for token in others:
                rc = int(lib.seccomp_arch_add(aux.handle(), token))
                if rc == 0:
                    added += 1
                elif rc == -errno.EDOM:
                    continue  # other byte order than this machine's: it cannot run here
                elif rc != -errno.EEXIST:
                    raise Unavailable(f"seccomp: cannot add architecture {token:#x}: {os.strerror(-rc)}")
            if added:
                rc = int(lib.seccomp_arch_remove(aux.handle(), native))
                if rc < 0:
                    raise Unavailable(f"seccomp: cannot set up the architecture filters: {os.strerror(-rc)}")
                contexts.append(aux)
            else:
                aux.release()
                aux = None
        flag_attrs = [attr for attr in (_FLAGS[flag] for flag in config.flags) if attr is not None]
        for context in contexts:
            if context.set_attr(_ATTR_CTL_NNP, 0) < 0:
                raise Unavailable("seccomp: cannot turn off libseccomp's no_new_privs handling")
            context.set_attr(_ATTR_API_SYSRAWRC, 1)  # raw kernel errno from seccomp_load; absent before 2.5
            context.set_attr(_ATTR_CTL_OPTIMIZE, 2)  # binary tree of syscalls; absent before 2.5
            for attr in flag_attrs:
                context.set_attr(attr, 1)  # unsupported by this kernel or libseccomp: ignored

        for rule in config.syscalls:
            action = _action_value(rule.action, rule.errno_ret)
            if action == default:
                continue
            comparison_sets = _comparison_sets(rule.args)
            for name in rule.names:
                number = int(lib.seccomp_syscall_resolve_name(name.encode()))
                targets = contexts
                if number == _NR_SCMP_ERROR:
                    table_number = _table_number(name, native)
                    if table_number is None:
                        continue
                    number, targets = table_number, [main]
                for target in targets:
                    for comparisons in comparison_sets:
                        target.add_rule(action, number, name, comparisons)

        if aux is not None:
            rc = int(lib.seccomp_merge(main.handle(), aux.handle()))
            if rc < 0:
                raise Unavailable(f"seccomp: cannot merge the architecture filters: {os.strerror(-rc)}")
            aux.ctx = None  # seccomp_merge freed it
    except BaseException:
        main.release()
        if aux is not None:
            aux.release()
        raise
    handle = main.handle()
    main.ctx = None
    return CompiledFilter(handle, lib.seccomp_load, lib.seccomp_release)


# --- Docker profiles --------------------------------------------------------------------------------------

# Machine or Go architecture name -> the name Docker profiles use in includes/excludes "arches".
_DOCKER_ARCH_NAMES: dict[str, str] = {
    "x86_64": "amd64", "amd64": "amd64",
    "i386": "x86", "i486": "x86", "i586": "x86", "i686": "x86", "386": "x86", "x86": "x86",
    "aarch64": "arm64", "arm64": "arm64",
    "arm": "arm", "armv6l": "arm", "armv7l": "arm", "armv8l": "arm",
    "loongarch64": "loongarch64", "loong64": "loongarch64",
    "mips": "mips", "mipsel": "mipsel", "mipsle": "mipsel",
    "mips64": "mips64", "mips64n32": "mips64n32", "mips64p32": "mips64n32",
    "mipsel64": "mipsel64", "mips64el": "mipsel64", "mips64le": "mipsel64",
    "mips3l64n32": "mips3l64n32", "mips64p32le": "mips3l64n32",
    "ppc": "ppc", "ppc64": "ppc64", "ppc64le": "ppc64le",
    "riscv64": "riscv64", "s390": "s390", "s390x": "s390x",
}  # fmt: skip

# Docker architecture name -> the OCI architecture whose archMap entry applies.
_DOCKER_ARCH_TO_OCI: dict[str, str] = {
    "amd64": "SCMP_ARCH_X86_64",
    "x86": "SCMP_ARCH_X86",
    "arm64": "SCMP_ARCH_AARCH64",
    "arm": "SCMP_ARCH_ARM",
    "loongarch64": "SCMP_ARCH_LOONGARCH64",
    "mips": "SCMP_ARCH_MIPS",
    "mipsel": "SCMP_ARCH_MIPSEL",
    "mips64": "SCMP_ARCH_MIPS64",
    "mips64n32": "SCMP_ARCH_MIPS64N32",
    "mipsel64": "SCMP_ARCH_MIPSEL64",
    "mips3l64n32": "SCMP_ARCH_MIPSEL64N32",
    "ppc": "SCMP_ARCH_PPC",
    "ppc64": "SCMP_ARCH_PPC64",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "riscv64": "SCMP_ARCH_RISCV64",
    "s390": "SCMP_ARCH_S390",
    "s390x": "SCMP_ARCH_S390X",
}

_OCI_TOP_LEVEL = (
    "defaultAction",
    "defaultErrnoRet",
    "architectures",
    "flags",
    "listenerPath",
    "listenerMetadata",
)
_OCI_RULE_FIELDS = ("names", "action", "errnoRet", "args")
_RELEASE = re.compile(r"(\d+)\.(\d+)")


def _docker_arch(arch: str | None) -> str:
    raw = platform.machine() if arch is None else arch
    name = _DOCKER_ARCH_NAMES.get(raw.lower())
    if name is None:
        raise InvalidParameter(f"seccomp profile: unknown architecture {_quote(raw)}")
    return name


@functools.cache
def _host_kernel() -> tuple[int, int]:
    """(version, major) of the running kernel. Raises Unavailable if the release cannot be parsed."""
    release = os.uname().release
    match = _RELEASE.match(release)
    if match is None:
        raise Unavailable(f"seccomp profile: cannot parse the kernel release {_quote(release)}")
    return int(match.group(1)), int(match.group(2))


def _normalize_cap(cap: str) -> str:
    upper = cap.upper()
    return upper if upper.startswith("CAP_") else f"CAP_{upper}"


def _min_kernel(value: object, where: str) -> tuple[int, int] | None:
    text = _expect_profile_str(value, where)
    if text == "":
        return None
    parts = text.split(".")
    if len(parts) != 2 or not all(part.isdigit() and len(part) <= 3 for part in parts):
        raise InvalidParameter(f'seccomp profile: {where} {_quote(text)} is not "<kernel>.<major>"')
    version = (int(parts[0]), int(parts[1]))
    if version == (0, 0) or max(version) > 255:
        raise InvalidParameter(f"seccomp profile: {where} {_quote(text)} is not a kernel version")
    return version


def _expect_profile_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidParameter(f"seccomp profile: {where} must be a string, got {_type_name(value)}")
    return value


def _expect_profile_strings(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise InvalidParameter(f"seccomp profile: {where} must be an array, got {_type_name(value)}")
    return [_expect_profile_str(item, f"{where}[{position}]") for position, item in enumerate(value)]


def _expect_profile_object(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise InvalidParameter(f"seccomp profile: {where} must be an object, got {_type_name(value)}")
    return value


def _json_copy(value: object) -> object:
    """A deep copy of JSON-like data, so the result shares nothing with the profile."""
    if isinstance(value, Mapping):
        return {str(key): _json_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_copy(item) for item in value]
    return value


def _rule_applies(
    rule: Mapping[str, object],
    where: str,
    arch: str,
    caps: frozenset[str],
    kernel: Callable[[], tuple[int, int]],
) -> bool:
    """Docker's selection: excludes match -> drop; includes must all hold."""
    excludes_raw = rule.get("excludes")
    if excludes_raw is not None:
        excludes = _expect_profile_object(excludes_raw, f"{where}.excludes")
        if arch in _expect_profile_strings(excludes.get("arches"), f"{where}.excludes.arches"):
            return False
        excluded_caps = _expect_profile_strings(excludes.get("caps"), f"{where}.excludes.caps")
        if any(_normalize_cap(cap) in caps for cap in excluded_caps):
            return False
        if excludes.get("minKernel") is not None:
            version = _min_kernel(excludes["minKernel"], f"{where}.excludes.minKernel")
            if version is not None and kernel() >= version:
                return False
    includes_raw = rule.get("includes")
    if includes_raw is not None:
        includes = _expect_profile_object(includes_raw, f"{where}.includes")
        arches = _expect_profile_strings(includes.get("arches"), f"{where}.includes.arches")
        if arches and arch not in arches:
            return False
        needed_caps = _expect_profile_strings(includes.get("caps"), f"{where}.includes.caps")
        if not all(_normalize_cap(cap) in caps for cap in needed_caps):
            return False
        if includes.get("minKernel") is not None:
            version = _min_kernel(includes["minKernel"], f"{where}.includes.minKernel")
            if version is not None and kernel() < version:
                return False
    return True


def oci_seccomp_from_docker_profile(
    profile: dict[str, object],
    capabilities: Iterable[str],
    arch: str | None = None,
    kernel: tuple[int, int] | None = None,
) -> dict[str, object]:
    """Turn a Docker seccomp profile into the OCI ``linux.seccomp`` object for one container.

    ``capabilities`` is the container's (bounding) capability set, e.g. ``"CAP_SYS_ADMIN"`` (a missing
    ``CAP_`` prefix is added). ``arch`` is a machine, Go or Docker architecture name (``x86_64``,
    ``amd64``, ``aarch64``...; default: this machine); ``kernel`` is ``(version, major)`` (default: this
    kernel). As Docker does: the architectures are the archMap entry of ``arch`` and its sub-architectures
    (or the profile's ``architectures`` list); a rule is dropped when ``excludes`` matches (arch listed,
    any listed capability held, kernel at least ``minKernel``) or ``includes`` does not (arch not listed,
    a listed capability missing, kernel older than ``minKernel``); ``name`` becomes ``names``; ``comment``,
    ``includes`` and ``excludes`` are removed. The result is new data; feed it to :func:`parse_seccomp`.

    Returns ``{}`` when the profile has neither a defaultAction nor syscalls (Docker: seccomp disabled).
    Raises InvalidParameter for a malformed profile (wrong types, both ``architectures`` and ``archMap``,
    both ``name`` and ``names``, a bad ``minKernel``) or an unknown ``arch``; Unavailable if the kernel
    version is needed, not given and cannot be read.
    """
    if not isinstance(profile, Mapping):
        raise InvalidParameter(f"seccomp profile: must be an object, got {_type_name(profile)}")
    docker_arch = _docker_arch(arch)
    caps = frozenset(_normalize_cap(_expect_profile_str(cap, "capability")) for cap in capabilities)
    rules_raw = profile.get("syscalls")
    rules = [] if rules_raw is None else rules_raw
    if not isinstance(rules, (list, tuple)):
        raise InvalidParameter(f"seccomp profile: syscalls must be an array, got {_type_name(rules_raw)}")
    if not profile.get("defaultAction") and not rules:
        return {}
    arch_map_raw = profile.get("archMap")
    arch_map = [] if arch_map_raw is None else arch_map_raw
    if not isinstance(arch_map, (list, tuple)):
        raise InvalidParameter(f"seccomp profile: archMap must be an array, got {_type_name(arch_map_raw)}")
    if arch_map and profile.get("architectures"):
        raise InvalidParameter("seccomp profile: both architectures and archMap are set; use one")

    result: dict[str, object] = {
        key: _json_copy(profile[key]) for key in _OCI_TOP_LEVEL if profile.get(key) is not None
    }
    if arch_map:
        wanted = _DOCKER_ARCH_TO_OCI.get(docker_arch)
        for position, entry_raw in enumerate(arch_map):
            entry = _expect_profile_object(entry_raw, f"archMap[{position}]")
            main_arch = _expect_profile_str(entry.get("architecture"), f"archMap[{position}].architecture")
            if main_arch == wanted:
                subs = _expect_profile_strings(
                    entry.get("subArchitectures"), f"archMap[{position}].subArchitectures"
                )
                result["architectures"] = [main_arch, *subs]
                break

    kernel_version = (lambda: kernel) if kernel is not None else _host_kernel
    syscalls: list[object] = []
    for position, rule_raw in enumerate(rules):
        where = f"syscalls[{position}]"
        rule = _expect_profile_object(rule_raw, where)
        if not _rule_applies(rule, where, docker_arch, caps, kernel_version):
            continue
        converted: dict[str, object] = {
            key: _json_copy(rule[key]) for key in _OCI_RULE_FIELDS if rule.get(key) is not None
        }
        if rule.get("name"):
            if rule.get("names"):
                raise InvalidParameter(f"seccomp profile: {where} sets both name and names; use one")
            converted["names"] = [_expect_profile_str(rule["name"], f"{where}.name")]
        syscalls.append(converted)
    result["syscalls"] = syscalls
    return result


def default_docker_profile() -> dict[str, object]:
    """Docker's default seccomp profile, read from ``resources/seccomp/default.json`` (a fresh dict per call).

    Raises Unavailable if the file is not installed, cannot be read or is not a JSON object.
    """
    try:
        path = resource_path("seccomp", "default.json")
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise Unavailable(f"seccomp: cannot read the default profile: {exc}") from exc
    if not isinstance(data, dict):
        raise Unavailable("seccomp: the default profile is not a JSON object")
    return data
