"""Load real seccomp filters into forked children and check what the kernel does with them."""

from __future__ import annotations

import ctypes
import errno
import json
import os
from collections.abc import Callable

import pytest

from backend.engine.errors import Forbidden
from backend.engine.runtime.seccomp import (
    compile_filter,
    default_docker_profile,
    oci_seccomp_from_docker_profile,
    parse_seccomp,
)

pytestmark = pytest.mark.root

PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWUTS = 0x04000000
SIGCHLD = 17
SYS_CLONE_X86_64 = 56
DOCKER_DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]  # fmt: skip


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the test compares seccomp's EPERM with what root (CAP_SYS_ADMIN) may do")


def run_in_child(body: Callable[[], tuple[int, dict[str, object]]]) -> tuple[int, dict[str, object]]:
    """Run ``body()`` in a forked child; return its exit code and the JSON object it wrote."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 250
        try:
            os.close(read_end)
            code, report = body()
            os.write(write_end, json.dumps(report).encode())
        except BaseException as exc:
            try:
                os.write(write_end, json.dumps({"exception": repr(exc)}).encode())
            finally:
                code = 251
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode()
    return os.waitstatus_to_exitcode(status), (json.loads(text) if text else {})


def test_default_profile_without_sys_admin_blocks_unshare() -> None:
    require_root()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.unshare.argtypes = [ctypes.c_int]
    libc.syscall.restype = ctypes.c_long
    oci = oci_seccomp_from_docker_profile(default_docker_profile(), DOCKER_DEFAULT_CAPS)
    machine = os.uname().machine

    def body() -> tuple[int, dict[str, object]]:
        pid_before = os.getpid()
        compiled = compile_filter(parse_seccomp(oci))
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return 252, {"prctl_errno": ctypes.get_errno()}
        compiled.load()
        compiled.release()
        report: dict[str, object] = {}
        ctypes.set_errno(0)
        rc = libc.unshare(CLONE_NEWUTS)
        unshare_errno = ctypes.get_errno() if rc != 0 else 0
        report["unshare_rc"] = rc
        report["getpid_ok"] = os.getpid() == pid_before
        with open("/proc/self/status", encoding="ascii") as status:
            report["seccomp"] = [
                line.split(":", 1)[1].strip() for line in status if line.startswith("Seccomp:")
            ]
        # plain fork (clone without namespace flags) passes the MASKED_EQ rule
        child = os.fork()
        if child == 0:
            os._exit(7)
        report["fork_exit"] = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
        if machine == "x86_64":
            # clone with a namespace flag does not
            ctypes.set_errno(0)
            rc = libc.syscall(
                ctypes.c_long(SYS_CLONE_X86_64), ctypes.c_ulong(CLONE_NEWUTS | SIGCHLD), 0, 0, 0, 0
            )
            if rc == 0:
                os._exit(0)
            report["clone_newuts"] = [rc, ctypes.get_errno()]
        return unshare_errno, report

    code, report = run_in_child(body)
    assert "exception" not in report, report
    assert code == errno.EPERM, report
    assert report["unshare_rc"] == -1
    assert report["getpid_ok"] is True
    assert report["seccomp"] == ["2"]
    assert report["fork_exit"] == 7
    if machine == "x86_64":
        assert report["clone_newuts"] == [-1, errno.EPERM]


def test_with_sys_admin_unshare_is_allowed() -> None:
    require_root()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.unshare.argtypes = [ctypes.c_int]
    oci = oci_seccomp_from_docker_profile(default_docker_profile(), [*DOCKER_DEFAULT_CAPS, "CAP_SYS_ADMIN"])

    def body() -> tuple[int, dict[str, object]]:
        compiled = compile_filter(parse_seccomp(oci))
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        compiled.load()
        rc = libc.unshare(CLONE_NEWUTS)
        return (0 if rc == 0 else ctypes.get_errno()), {}

    code, report = run_in_child(body)
    assert code == 0, report


def test_errno_ret_is_returned() -> None:
    require_root()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    config = parse_seccomp(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOTSUP}],
        }
    )

    def body() -> tuple[int, dict[str, object]]:
        compiled = compile_filter(config)
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        compiled.load()
        try:
            os.getcwd()
        except OSError as exc:
            return exc.errno or 0, {}
        return 0, {}

    code, report = run_in_child(body)
    assert code == errno.ENOTSUP, report


def test_load_without_privilege_is_forbidden() -> None:
    require_root()
    config = parse_seccomp({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []})

    def body() -> tuple[int, dict[str, object]]:
        compiled = compile_filter(config)
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)  # drops CAP_SYS_ADMIN; no_new_privs stays unset
        try:
            compiled.load()
        except Forbidden as exc:
            cause = exc.__cause__
            return 0, {"message": str(exc), "cause_errno": getattr(cause, "errno", None)}
        return 1, {}

    code, report = run_in_child(body)
    assert code == 0, report
    assert report["cause_errno"] == errno.EACCES
    assert str(report["message"]).startswith("seccomp: loading the filter was refused")
