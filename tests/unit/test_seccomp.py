"""Unit tests of backend.engine.runtime.seccomp against the real libseccomp (no kernel filter is loaded)."""

from __future__ import annotations

import copy
import ctypes
import platform
import tempfile
import time

import pytest

from backend.engine.errors import InvalidParameter, NotImplementedByEngine
from backend.engine.runtime import seccomp
from backend.engine.runtime.seccomp import (
    CompiledFilter,
    SeccompArg,
    SeccompConfig,
    SeccompRule,
    compile_filter,
    default_docker_profile,
    oci_seccomp_from_docker_profile,
    parse_seccomp,
)

ALL_CAPS_DOCKER_DEFAULT = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]  # fmt: skip


def allowed_names(oci: dict[str, object]) -> set[str]:
    """Names given SCMP_ACT_ALLOW without argument conditions."""
    names: set[str] = set()
    for rule in oci["syscalls"]:  # type: ignore[attr-defined]
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args"):
            names.update(rule["names"])
    return names


def rules_for(oci: dict[str, object], name: str) -> list[dict[str, object]]:
    return [rule for rule in oci["syscalls"] if name in rule["names"]]  # type: ignore[attr-defined]


def minimal(**extra: object) -> dict[str, object]:
    obj: dict[str, object] = {"defaultAction": "SCMP_ACT_ERRNO"}
    obj.update(extra)
    return obj


def rule(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}
    base.update(fields)
    return base


# --- parse_seccomp ----------------------------------------------------------------------------------------


def test_parse_full_object() -> None:
    config = parse_seccomp(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "somethingNew": {"ignored": True},
            "syscalls": [
                {"names": ["getpid", "getppid", "getpid"], "action": "SCMP_ACT_ALLOW"},
                {
                    "names": ["clone"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
                },
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            ],
        }
    )
    assert config == SeccompConfig(
        default_action="SCMP_ACT_ERRNO",
        default_errno_ret=38,
        architectures=("SCMP_ARCH_X86_64", "SCMP_ARCH_X86"),
        flags=("SECCOMP_FILTER_FLAG_LOG",),
        syscalls=(
            SeccompRule(names=("getpid", "getppid"), action="SCMP_ACT_ALLOW", errno_ret=None, args=()),
            SeccompRule(
                names=("clone",),
                action="SCMP_ACT_ALLOW",
                errno_ret=None,
                args=(SeccompArg(index=0, value=2114060288, value_two=0, op="SCMP_CMP_MASKED_EQ"),),
            ),
            SeccompRule(names=("clone3",), action="SCMP_ACT_ERRNO", errno_ret=38, args=()),
        ),
    )


def test_parse_minimal_and_nulls() -> None:
    config = parse_seccomp(minimal(architectures=None, flags=None, syscalls=None, listenerPath=""))
    assert config == SeccompConfig("SCMP_ACT_ERRNO", None, (), (), ())


def test_names_known_only_to_the_builtin_table_or_other_arches_parse() -> None:
    names = ["mseal", "listmount", "statmount", "uretprobe", "riscv_hwprobe", "lsm_list_modules"]
    names += ["socketcall", "arm_fadvise64_64", "s390_runtime_instr", "cachestat", "fchmodat2"]
    config = parse_seccomp(minimal(syscalls=[rule(names=names)]))
    assert config.syscalls[0].names == tuple(names)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ("nope", "seccomp: linux.seccomp must be an object, got string"),
        ({}, "seccomp: defaultAction is missing"),
        ({"defaultAction": 1}, "seccomp: defaultAction must be a string, got integer"),
        ({"defaultAction": "SCMP_ACT_MAYBE"}, 'seccomp: defaultAction has unknown action "SCMP_ACT_MAYBE"'),
        (
            minimal(defaultErrnoRet="1"),
            "seccomp: defaultErrnoRet must be an integer, got string",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1},
            "seccomp: defaultErrnoRet is set but action SCMP_ACT_ALLOW takes no errno",
        ),
        (minimal(defaultErrnoRet=-1), "seccomp: defaultErrnoRet must be from 0 to 65535, got -1"),
        (minimal(architectures="SCMP_ARCH_X86_64"), "seccomp: architectures must be an array, got string"),
        (minimal(architectures=[1]), "seccomp: architectures[0] must be a string, got integer"),
        (
            minimal(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]),
            'seccomp: architectures[1] is unknown: "SCMP_ARCH_Z80"',
        ),
        (
            minimal(flags=["SECCOMP_FILTER_FLAG_FAST"]),
            'seccomp: flags[0] is unknown: "SECCOMP_FILTER_FLAG_FAST"',
        ),
        (minimal(flags={"a": 1}), "seccomp: flags must be an array, got object"),
        (minimal(syscalls={}), "seccomp: syscalls must be an array, got object"),
        (minimal(syscalls=[["getpid"]]), "seccomp: syscalls[0] must be an object, got array"),
        (
            minimal(syscalls=[{"action": "SCMP_ACT_ALLOW"}]),
            "seccomp: syscalls[0].names must be an array, got null",
        ),
        (minimal(syscalls=[rule(names=[])]), "seccomp: syscalls[0].names is empty"),
        (minimal(syscalls=[rule(names="getpid")]), "seccomp: syscalls[0].names must be an array, got string"),
        (minimal(syscalls=[rule(names=[None])]), "seccomp: syscalls[0].names[0] must be a string, got null"),
        (minimal(syscalls=[rule(names=["getpid", "foo"])]), 'seccomp: unknown syscall name "foo"'),
        (minimal(syscalls=[rule(names=["GETPID"])]), 'seccomp: unknown syscall name "GETPID"'),
        (minimal(syscalls=[rule(names=["getpid\x00x"])]), 'seccomp: unknown syscall name "getpid\\u0000x"'),
        (minimal(syscalls=[rule(names=["foo\nbar"])]), 'seccomp: unknown syscall name "foo\\nbar"'),
        (
            minimal(syscalls=[rule(names=["x" * 100_000])]),
            "seccomp: syscalls[0].names[0] is too long to be a syscall name (100000 characters)",
        ),
        (minimal(syscalls=[{"names": ["getpid"]}]), "seccomp: syscalls[0].action is missing"),
        (minimal(syscalls=[rule(action="ALLOW")]), 'seccomp: syscalls[0].action has unknown action "ALLOW"'),
        (
            minimal(syscalls=[rule(errnoRet=1)]),
            "seccomp: syscalls[0].errnoRet is set but action SCMP_ACT_ALLOW takes no errno",
        ),
        (
            minimal(syscalls=[rule(action="SCMP_ACT_ERRNO", errnoRet=True)]),
            "seccomp: syscalls[0].errnoRet must be an integer, got boolean",
        ),
        (
            minimal(syscalls=[rule(action="SCMP_ACT_ERRNO", errnoRet=70000)]),
            "seccomp: syscalls[0].errnoRet must be from 0 to 65535, got 70000",
        ),
        (minimal(syscalls=[rule(args={})]), "seccomp: syscalls[0].args must be an array, got object"),
        (minimal(syscalls=[rule(args=[3])]), "seccomp: syscalls[0].args[0] must be an object, got integer"),
        (
            minimal(syscalls=[rule(args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}])]),
            "seccomp: syscalls[0].args[0].index must be from 0 to 5 (syscalls have 6 arguments), got 6",
        ),
        (
            minimal(syscalls=[rule(args=[{"index": -1, "value": 1, "op": "SCMP_CMP_EQ"}])]),
            "seccomp: syscalls[0].args[0].index must be from 0 to 5 (syscalls have 6 arguments), got -1",
        ),
        (
            minimal(syscalls=[rule(args=[{"index": "0", "value": 1, "op": "SCMP_CMP_EQ"}])]),
            "seccomp: syscalls[0].args[0].index must be an integer, got string",
        ),
        (
            minimal(syscalls=[rule(args=[{"value": 1, "op": "SCMP_CMP_EQ"}])]),
            "seccomp: syscalls[0].args[0].index is missing",
        ),
        (
            minimal(syscalls=[rule(args=[{"index": 0, "op": "SCMP_CMP_EQ"}])]),
            "seccomp: syscalls[0].args[0].value is missing",
        ),
        (
            minimal(syscalls=[rule(args=[{"index": 0, "value": 1.5, "op": "SCMP_CMP_EQ"}])]),
            "seccomp: syscalls[0].args[0].value must be an integer, got number",
        ),
        (
            minimal(syscalls=[rule(args=[{"index": 0, "value": 2**64, "op": "SCMP_CMP_EQ"}])]),
            f"seccomp: syscalls[0].args[0].value must be from 0 to {2**64 - 1}, got {2**64}",
        ),
        (
            minimal(syscalls=[rule(args=[{"index": 0, "value": 1, "valueTwo": -2, "op": "SCMP_CMP_EQ"}])]),
            f"seccomp: syscalls[0].args[0].valueTwo must be from 0 to {2**64 - 1}, got -2",
        ),
        (
            minimal(syscalls=[rule(args=[{"index": 0, "value": 1}])]),
            "seccomp: syscalls[0].args[0].op is missing",
        ),
        (
            minimal(syscalls=[rule(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}])]),
            'seccomp: syscalls[0].args[0].op has unknown operator "SCMP_CMP_LIKE"',
        ),
        (
            minimal(syscalls=[rule(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}] * 65)]),
            "seccomp: syscalls[0].args has 65 entries, at most 64",
        ),
        (minimal(syscalls=[rule()] * 8193), "seccomp: syscalls has 8193 rules, at most 8192"),
    ],
)
def test_parse_rejects(obj: object, message: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_seccomp(obj)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_notify_and_listener_are_unsupported() -> None:
    with pytest.raises(NotImplementedByEngine, match="SCMP_ACT_NOTIFY is not supported"):
        parse_seccomp({"defaultAction": "SCMP_ACT_NOTIFY"})
    with pytest.raises(NotImplementedByEngine, match="SCMP_ACT_NOTIFY is not supported"):
        parse_seccomp(minimal(syscalls=[rule(action="SCMP_ACT_NOTIFY")]))
    with pytest.raises(NotImplementedByEngine, match="listenerPath is not supported"):
        parse_seccomp(minimal(listenerPath="/run/seccomp.sock"))


def test_huge_names_list_is_fast() -> None:
    valid = ["getpid", "read", "write", "mseal"] * 250_000
    started = time.perf_counter()
    config = parse_seccomp(minimal(syscalls=[rule(names=valid)]))
    assert config.syscalls[0].names == ("getpid", "read", "write", "mseal")
    with pytest.raises(InvalidParameter, match='unknown syscall name "nosuchcall_1"'):
        parse_seccomp(minimal(syscalls=[rule(names=[f"nosuchcall_{n}" for n in range(1, 1_000_000)])]))
    assert time.perf_counter() - started < 5


# --- oci_seccomp_from_docker_profile ----------------------------------------------------------------------


def test_default_profile_loads_fresh_copies() -> None:
    first = default_docker_profile()
    first["defaultAction"] = "changed"
    assert default_docker_profile()["defaultAction"] == "SCMP_ACT_ERRNO"


def test_convert_amd64_architectures_and_shape() -> None:
    profile = default_docker_profile()
    before = copy.deepcopy(profile)
    oci = oci_seccomp_from_docker_profile(profile, ALL_CAPS_DOCKER_DEFAULT, arch="amd64", kernel=(6, 1))
    assert profile == before  # input untouched
    assert oci["defaultAction"] == "SCMP_ACT_ERRNO"
    assert oci["defaultErrnoRet"] == 1
    assert oci["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert "archMap" not in oci
    for converted in oci["syscalls"]:  # type: ignore[attr-defined]
        assert set(converted) <= {"names", "action", "errnoRet", "args"}
    # x86_64 is an alias of amd64
    assert oci_seccomp_from_docker_profile(profile, [], arch="x86_64", kernel=(6, 1))["architectures"] == [
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
    ]
    assert parse_seccomp(oci).architectures == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")


def test_convert_arm64_arches() -> None:
    oci = oci_seccomp_from_docker_profile(default_docker_profile(), [], arch="aarch64", kernel=(6, 1))
    assert oci["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    allowed = allowed_names(oci)
    assert "arm_fadvise64_64" in allowed
    assert "arch_prctl" not in allowed
    amd = allowed_names(oci_seccomp_from_docker_profile(default_docker_profile(), [], "amd64", (6, 1)))
    assert {"arch_prctl", "modify_ldt"} <= amd
    assert "arm_fadvise64_64" not in amd


def test_cap_sys_admin_allows_mount_and_unshare() -> None:
    profile = default_docker_profile()
    without = oci_seccomp_from_docker_profile(profile, ALL_CAPS_DOCKER_DEFAULT, "amd64", (6, 1))
    with_admin = oci_seccomp_from_docker_profile(
        profile, [*ALL_CAPS_DOCKER_DEFAULT, "CAP_SYS_ADMIN"], "amd64", (6, 1)
    )
    for name in ("mount", "unshare", "setns", "umount2", "sethostname"):
        assert name in allowed_names(with_admin)
        assert not rules_for(without, name), name
    # clone: unconditional with CAP_SYS_ADMIN, only without namespace flags otherwise
    assert "clone" in allowed_names(with_admin)
    clone_rules = rules_for(without, "clone")
    assert clone_rules == [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
        }
    ]
    assert rules_for(without, "clone3") == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    assert not [r for r in rules_for(with_admin, "clone3") if r["action"] != "SCMP_ACT_ALLOW"]
    # capability names without the CAP_ prefix are accepted
    short = oci_seccomp_from_docker_profile(profile, ["sys_admin"], "amd64", (6, 1))
    assert "mount" in allowed_names(short)


def test_s390x_clone_uses_second_argument() -> None:
    oci = oci_seccomp_from_docker_profile(default_docker_profile(), [], "s390x", (6, 1))
    assert oci["architectures"] == ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]
    assert [r["args"] for r in rules_for(oci, "clone")] == [
        [{"index": 1, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]
    ]


def test_min_kernel_selects_rules() -> None:
    profile = default_docker_profile()
    old = oci_seccomp_from_docker_profile(profile, [], "amd64", (4, 7))
    new = oci_seccomp_from_docker_profile(profile, [], "amd64", (4, 8))
    assert "ptrace" not in allowed_names(old)
    assert "ptrace" in allowed_names(new)
    assert "ptrace" in allowed_names(oci_seccomp_from_docker_profile(profile, [], "amd64", (5, 0)))
    # excludes.minKernel drops a rule on new kernels
    custom: dict[str, object] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.10"}}],
    }
    assert oci_seccomp_from_docker_profile(custom, [], "amd64", (5, 4))["syscalls"]
    assert not oci_seccomp_from_docker_profile(custom, [], "amd64", (5, 10))["syscalls"]
    # the host kernel is used by default
    assert oci_seccomp_from_docker_profile(custom, [], "amd64")["syscalls"] is not None


def test_convert_legacy_fields_and_disabled_profile() -> None:
    legacy: dict[str, object] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"name": "acct", "action": "SCMP_ACT_ERRNO", "comment": "x"}],
    }
    oci = oci_seccomp_from_docker_profile(legacy, [], "amd64", (6, 1))
    assert oci == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_ERRNO"}],
    }
    assert oci_seccomp_from_docker_profile({}, [], "amd64", (6, 1)) == {}
    assert oci_seccomp_from_docker_profile({"syscalls": []}, [], "amd64", (6, 1)) == {}


@pytest.mark.parametrize(
    ("profile", "arch", "message"),
    [
        ({"defaultAction": "SCMP_ACT_ERRNO"}, "z80", 'seccomp profile: unknown architecture "z80"'),
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{}]},
            "amd64",
            "seccomp profile: both architectures and archMap are set; use one",
        ),
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "a", "names": ["b"], "action": "x"}]},
            "amd64",
            "seccomp profile: syscalls[0] sets both name and names; use one",
        ),
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": "all"},
            "amd64",
            "seccomp profile: syscalls must be an array, got string",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": ["a"], "includes": {"minKernel": "4"}}],
            },
            "amd64",
            'seccomp profile: syscalls[0].includes.minKernel "4" is not "<kernel>.<major>"',
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": ["a"], "includes": {"minKernel": 4.8}}],
            },
            "amd64",
            "seccomp profile: syscalls[0].includes.minKernel must be a string, got number",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": ["a"], "includes": {"caps": "CAP_X"}}],
            },
            "amd64",
            "seccomp profile: syscalls[0].includes.caps must be an array, got string",
        ),
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["a"], "excludes": []}]},
            "amd64",
            "seccomp profile: syscalls[0].excludes must be an object, got array",
        ),
    ],
)
def test_convert_rejects(profile: dict[str, object], arch: str, message: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        oci_seccomp_from_docker_profile(profile, [], arch, (6, 1))
    assert str(info.value) == message


# --- compile_filter ---------------------------------------------------------------------------------------


def test_compile_full_default_profile_is_fast() -> None:
    oci = oci_seccomp_from_docker_profile(default_docker_profile(), ALL_CAPS_DOCKER_DEFAULT)
    config = parse_seccomp(oci)
    compile_filter(config).release()  # warm up: libseccomp loaded, names cached
    started = time.perf_counter()
    compiled = compile_filter(parse_seccomp(oci))
    elapsed = time.perf_counter() - started
    assert isinstance(compiled, CompiledFilter)
    compiled.release()
    compiled.release()  # idempotent
    assert elapsed < 0.1, f"compile took {elapsed * 1000:.1f} ms"


def test_compile_with_every_capability_and_flags() -> None:
    oci = oci_seccomp_from_docker_profile(
        default_docker_profile(), [*ALL_CAPS_DOCKER_DEFAULT, "CAP_SYS_ADMIN"]
    )
    oci["flags"] = ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"]
    with compile_filter(parse_seccomp(oci)):
        pass


def test_compile_every_action_and_op() -> None:
    rules: list[dict[str, object]] = [
        {"names": ["getpid"], "action": "SCMP_ACT_KILL"},
        {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["gettid"], "action": "SCMP_ACT_KILL_THREAD"},
        {"names": ["getuid"], "action": "SCMP_ACT_TRAP"},
        {"names": ["getgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["geteuid"], "action": "SCMP_ACT_TRACE", "errnoRet": 1},
        {"names": ["getegid"], "action": "SCMP_ACT_LOG"},
        {"names": ["uretprobe", "mseal", "riscv_hwprobe", "socketcall"], "action": "SCMP_ACT_ALLOW"},
    ]
    for number, op in enumerate(seccomp._OPS, start=1):
        rules.append(
            {
                "names": ["ioctl"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": number % 6, "value": number, "valueTwo": number, "op": op}],
            }
        )
    config = parse_seccomp(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
            "syscalls": rules,
        }
    )
    # the ALLOW rule equals the default action and is skipped; names libseccomp lacks use the table
    compile_filter(config).release()


def test_compile_splits_comparisons_of_one_argument() -> None:
    args = [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
    ]
    config = parse_seccomp(
        minimal(syscalls=[{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": args}])
    )
    assert [len(group) for group in seccomp._comparison_sets(config.syscalls[0].args)] == [1, 1, 1]
    compile_filter(config).release()


def test_compile_rejects_rule_libseccomp_refuses() -> None:
    # parse_seccomp never yields this (index 6 is rejected there); built by hand it reaches libseccomp,
    # which refuses it, and the error names the syscall
    config = SeccompConfig(
        default_action="SCMP_ACT_ERRNO",
        default_errno_ret=None,
        architectures=("SCMP_ARCH_X86_64", "SCMP_ARCH_X86"),
        flags=(),
        syscalls=(
            SeccompRule(
                names=("read",),
                action="SCMP_ACT_ALLOW",
                errno_ret=None,
                args=(SeccompArg(index=6, value=1, value_two=0, op="SCMP_CMP_EQ"),),
            ),
        ),
    )
    with pytest.raises(InvalidParameter, match='libseccomp rejected the rule for syscall "read"'):
        compile_filter(config)


def test_load_after_release_is_refused() -> None:
    from backend.engine.errors import Unavailable

    compiled = compile_filter(parse_seccomp(minimal()))
    compiled.release()
    with pytest.raises(Unavailable, match="released"):
        compiled.load()


def test_builtin_table_numbers() -> None:
    table = seccomp._NEWER_SYSCALLS
    assert table["mseal"] == (462, 462)
    assert table["listmount"] == (458, 458)
    assert table["statmount"] == (457, 457)
    assert table["uretprobe"] == (335, None)
    assert table["riscv_hwprobe"] == (None, None)
    # where this libseccomp knows a table name, it agrees with the table
    lib = seccomp._libseccomp()
    x86_64 = lib.seccomp_arch_resolve_name(b"x86_64")
    aarch64 = lib.seccomp_arch_resolve_name(b"aarch64")
    for name, (n_x86_64, n_aarch64) in table.items():
        for token, expected in ((x86_64, n_x86_64), (aarch64, n_aarch64)):
            known = lib.seccomp_syscall_resolve_name_arch(token, name.encode())
            if known >= 0:
                assert known == expected, name


def test_compile_skips_architectures_that_cannot_run_here() -> None:
    every = sorted(seccomp._ARCHES)
    config = parse_seccomp(
        minimal(architectures=every, syscalls=[rule(names=["getpid", "mseal", "socketcall"])])
    )
    compile_filter(config).release()
    compile_filter(parse_seccomp(minimal(architectures=["SCMP_ARCH_S390X", "SCMP_ARCH_PPC64"]))).release()


def pseudo_filter_code(compiled: CompiledFilter) -> str:
    """libseccomp's human-readable dump of a compiled filter (test-only helper)."""
    lib = seccomp._libseccomp()
    lib.seccomp_export_pfc.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_export_pfc.restype = ctypes.c_int
    with tempfile.TemporaryFile() as dump:
        assert lib.seccomp_export_pfc(compiled._ctx, dump.fileno()) == 0
        dump.seek(0)
        return dump.read().decode()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="checks x86_64 syscall numbers")
def test_table_only_names_are_filtered_by_number_on_the_native_arch() -> None:
    config = parse_seccomp(
        minimal(
            architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            syscalls=[rule(names=["getpid", "mseal", "uretprobe", "riscv_hwprobe"])],
        )
    )
    with compile_filter(config) as compiled:
        code = pseudo_filter_code(compiled)
    native, _, others = code.partition("# filter for arch x86 ")
    assert "if ($syscall == 462)" in native  # mseal
    assert "if ($syscall == 335)" in native  # uretprobe
    assert "if ($syscall == 39)" in native  # getpid
    assert "if ($syscall == 20)" in others  # getpid on i386
    assert "if ($syscall == 462)" not in others  # unknown to libseccomp there: default action
