"""Runs a parsed Dockerfile as dockerd's classic builder does: step by step, each step a committed image.

- Only the stages the target needs are built (its FROM chain and ``COPY --from`` sources), in file order.
  Steps are numbered over those stages (meta ARGs included), as ``Step 2/9 : RUN make``.
- FROM: a local image (pulled when missing, or always with ``pull``), an earlier stage, or ``scratch``; the
  base's ONBUILD triggers run first and are not inherited.
- RUN: a container of the engine (same runtime, default network unless ``network_mode``) with the step's
  env (ENV, then the declared build args), user, working directory and SHELL; its output is streamed; a
  non-zero exit fails the build with dockerd's message; the container is always removed. Heredocs go to the
  shell as a script (one with a ``#!`` line is written to a file in the container's /dev tmpfs and run).
- COPY/ADD and WORKDIR write into a private overlay of the parent image (never a running container),
  through the descriptor-based extractor; the upper directory is committed as the layer.
- Metadata instructions change the config and commit an empty layer (``empty_layer`` in the history).
- The cache (``cache.BuildCache``) is probed before a step does any work; ``no_cache`` skips it; the first
  miss in a stage busts it for the rest of the stage.

Errors end the build: ``InvalidParameter`` for bad instructions or inputs (one line naming the step),
``BuildFailed`` for a failing RUN, anything the engine raises otherwise. Cleanup (containers, mounts,
temp dirs) runs on every exit, cancellation included, and never follows a symlink a step made.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import os
import posixpath
import re
import signal
import stat
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from backend.engine.builder import copying
from backend.engine.builder.cache import BuildCache, step_key
from backend.engine.builder.context import BuildContext, SourceTree, clean_relative
from backend.engine.builder.copying import Source
from backend.engine.builder.dockerfile import (
    AddInstruction,
    ArgInstruction,
    CmdInstruction,
    CopyInstruction,
    Dockerfile,
    EntrypointInstruction,
    EnvInstruction,
    ExposeInstruction,
    HealthcheckInstruction,
    Instruction,
    KeyValue,
    Kind,
    LabelInstruction,
    MaintainerInstruction,
    OnbuildInstruction,
    RunInstruction,
    ShellInstruction,
    Stage,
    StopSignalInstruction,
    UserInstruction,
    VolumeInstruction,
    WorkdirInstruction,
    parse_dockerfile,
)
from backend.engine.containers.filesystem import COPY_LIMITS, extract_archive
from backend.engine.containers.oci_spec import resolve_user
from backend.engine.containers.service import ContainerService
from backend.engine.errors import InvalidParameter, NotFound, Unavailable
from backend.engine.images import tarsafe
from backend.engine.images.image_store import ImageRecord
from backend.engine.images.layer_store import chain_ids
from backend.engine.images.overlay import mount_rootfs, unmount_rootfs
from backend.engine.images.reference import Reference
from backend.engine.images.service import ImageService, Progress
from backend.engine.registry.manifest import Platform

DEFAULT_SHELL = ("/bin/sh", "-c")
MAX_DOWNLOAD = 8 * 1024**3
_HEREDOC_FILE = "/dev/.berth-heredoc"
_PORT = re.compile(r"(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?")


class BuildFailed(InvalidParameter):
    """A RUN step exited non-zero (``code``); the message is dockerd's."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BuildOptions:
    """What a client asks of a build (``POST /build``'s query)."""

    tags: tuple[Reference, ...] = ()
    dockerfile: str = ""
    build_args: Mapping[str, str | None] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    pull: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    quiet: bool = False
    platform: Platform | None = None
    network_mode: str = "default"


@dataclass(frozen=True)
class BuildMessage:
    """One message of the build's output: text (``stream``), pull progress, or the built image (``aux_id``)."""

    stream: str = ""
    progress: Progress | None = None
    aux_id: str = ""


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tags: tuple[Reference, ...]


Emit = Callable[[BuildMessage], None]


@dataclass
class _State:
    """One stage while it builds: the current image and its container config, ARGs in scope."""

    image: ImageRecord | None
    config: dict[str, Any]
    args: dict[str, str | None] = field(default_factory=dict)
    author: str = ""
    cmd_set: bool = False
    busted: bool = False

    @property
    def parent_id(self) -> str:
        return self.image.id if self.image else ""

    def env(self) -> dict[str, str]:
        """Variables for expansion: build args in scope, then ENV (which wins, as Docker's)."""
        values = {k: v for k, v in self.args.items() if v is not None}
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            values[key] = value
        return values

    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _go_quote(items: Sequence[str]) -> str:
    """Go's ``%q`` of a string slice: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(i, ensure_ascii=False) for i in items) + "]"


def _set_env(env: list[str], key: str, value: str) -> list[str]:
    out = [item for item in env if item.partition("=")[0] != key]
    index = next((i for i, item in enumerate(env) if item.partition("=")[0] == key), len(out))
    out.insert(index, f"{key}={value}")
    return out


def _ports(specs: Sequence[str]) -> list[str]:
    ports: list[str] = []
    for spec in specs:
        match = _PORT.fullmatch(spec.lower())
        if not match:
            raise InvalidParameter(f"Invalid containerPort: {spec}")
        low, high, proto = int(match.group(1)), int(match.group(2) or match.group(1)), match.group(3) or "tcp"
        if not 0 < low <= high <= 65535:
            raise InvalidParameter(f"Invalid containerPort: {spec}")
        ports.extend(f"{p}/{proto}" for p in range(low, high + 1))
    return ports


def _signal(text: str) -> str:
    name = text.upper()
    if text.isdigit() and 0 < int(text) < 65:
        return text
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name not in signal.Signals.__members__ and not re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name):
        raise InvalidParameter(f"Invalid signal: {text}")
    return text


def _duration(ns: int) -> str:
    return f"{ns / 1e9:g}s"


def remove_tree(path: str) -> None:
    """Remove ``path`` and everything below it without following a symlink; missing is fine."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        tarsafe.clear_directory(fd)
    finally:
        os.close(fd)
    os.rmdir(path)


@contextlib.asynccontextmanager
async def private_rootfs(images: ImageService, image: ImageRecord | None, tmp: str) -> AsyncIterator[tuple[str, str]]:
    """A writable overlay of ``image`` (or an empty directory for no layers) under ``tmp``: (root, upper).
    Unmounted and removed afterwards, without following symlinks. Raises Unavailable."""
    work = tempfile.mkdtemp(dir=tmp, prefix="rootfs-")
    chain = list(reversed(chain_ids(image.diff_ids))) if image else []
    mounted = False
    try:
        if chain:
            root = await asyncio.to_thread(mount_rootfs, images.layers, chain, work)
            mounted = True
        else:
            root = os.path.join(work, "upper")
            os.mkdir(root, 0o755)
        yield root, os.path.join(work, "upper")
    finally:
        if mounted:
            await asyncio.to_thread(unmount_rootfs, work)
        await asyncio.to_thread(remove_tree, work)


class Executor:
    """One build. ``run`` builds the target of ``dockerfile`` from ``context``; messages go to ``emit``."""

    def __init__(self, *, images: ImageService, containers: ContainerService, cache: BuildCache, tmp: str,
                 options: BuildOptions, emit: Emit) -> None:
        self.images = images
        self.containers = containers
        self.cache = cache
        self.tmp = tmp
        self.options = options
        self._emit = emit
        self._step = 0
        self._total = 0
        self._results: dict[int, ImageRecord | None] = {}
        self._used_args: set[str] = set()
        self._context: SourceTree | None = None
        self._dockerfile: Dockerfile | None = None
        self._meta_env: Mapping[str, str] = {}

    def say(self, text: str) -> None:
        if not self.options.quiet:
            self._emit(BuildMessage(stream=text))

    # -- the whole build -------------------------------------------------------------------------------

    async def run(self, context: BuildContext) -> BuildResult:
        """Build and tag. Raises InvalidParameter (Dockerfile, options, steps), BuildFailed, NotFound,
        Unavailable."""
        dockerfile = parse_dockerfile(context.dockerfile)
        self._dockerfile = dockerfile
        meta_env = dockerfile.meta_env(self._declared_build_args())
        self._meta_env = meta_env
        self._used_args.update(a.name for a in dockerfile.meta_args)
        target = dockerfile.stage(self.options.target) if self.options.target else dockerfile.stages[-1]
        stages = [s.expanded(meta_env, dockerfile.escape) for s in dockerfile.stages]
        needed = self._needed(stages, target.index, meta_env)
        labels = self._label_step()
        self._total = len(dockerfile.meta_args) + sum(1 + len(stages[i].instructions) for i in needed) + bool(labels)
        for arg in dockerfile.meta_args:
            self._print_step(f"ARG {arg.name}" + (f"={arg.default}" if arg.default is not None else ""))
        with SourceTree(context.root, "the build context") as tree:
            self._context = tree
            state = _State(None, {})
            for index in needed:
                state = await self._stage(stages[index], meta_env, extra=labels if index == target.index else None)
                self._results[index] = state.image
                if state.image is not None:
                    self._emit(BuildMessage(aux_id=state.image.id))
        unused = sorted(set(self.options.build_args) - self._used_args)
        if unused:
            self.say(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        if state.image is None:
            raise InvalidParameter("No image was generated. Is your Dockerfile empty?")
        self.say(f"Successfully built {_short(state.image.id)}\n")
        for ref in self.options.tags:
            self.images.tag(state.image.id, str(ref))
            self.say(f"Successfully tagged {ref.familiar()}\n")
        return BuildResult(state.image.id, self.options.tags)

    def _declared_build_args(self) -> dict[str, str]:
        return {k: v for k, v in self.options.build_args.items() if v is not None}

    def _label_step(self) -> LabelInstruction | None:
        if not self.options.labels:
            return None
        pairs = tuple(KeyValue(k, v) for k, v in sorted(self.options.labels.items()))
        text = "LABEL " + " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in sorted(self.options.labels.items()))
        return LabelInstruction(Kind.LABEL, 0, 0, text, {}, pairs=pairs)

    def _needed(self, stages: list[Stage], target: int, meta_env: Mapping[str, str]) -> list[int]:
        """Indexes of the stages ``target`` depends on (itself included), in file order."""
        by_name = {s.name: s.index for s in stages if s.name}
        needed: set[int] = set()
        pending = [target]
        while pending:
            index = pending.pop()
            if index in needed:
                continue
            needed.add(index)
            deps = [by_name.get(stages[index].base.lower())]
            for ins in stages[index].instructions:
                if isinstance(ins, CopyInstruction) and ins.from_:
                    with contextlib.suppress(InvalidParameter):
                        ref = ins.expanded(meta_env).from_.lower()
                        deps.append(by_name.get(ref, int(ref) if ref.isdecimal() else None))
            pending.extend(dep for dep in deps if dep is not None and dep < index)
        return sorted(needed)

    def _print_step(self, text: str) -> None:
        self._step += 1
        self.say(f"Step {self._step}/{self._total} : {text}\n")

    # -- stages --------------------------------------------------------------------------------------------

    async def _stage(self, stage: Stage, meta_env: Mapping[str, str], extra: Instruction | None) -> _State:
        self._print_step(stage.original)
        state = await self._from(stage, meta_env)
        for ins in [*stage.instructions, *([extra] if extra is not None else [])]:
            self._print_step(ins.original)
            await self._dispatch(state, ins)
        return state

    async def _from(self, stage: Stage, meta_env: Mapping[str, str]) -> _State:
        base = stage.base
        if not base:
            raise InvalidParameter(f"Dockerfile line {stage.line}: FROM requires an image name")
        by_name = {s.name: s.index for s in (self._dockerfile.stages if self._dockerfile else ()) if s.name}
        if base.lower() == "scratch":
            image = None
        elif base.lower() in by_name and by_name[base.lower()] < stage.index:
            image = self._results[by_name[base.lower()]]
        else:
            image = await self._image(base, stage.platform)
        doc = self.images.config(image) if image else {}
        state = _State(image, dict(doc.get("config") or {}), author=str(doc.get("author") or ""))
        if image is not None:
            self.say(f" ---> {_short(image.id)}\n")
        triggers = list(state.config.get("OnBuild") or [])
        if triggers:
            state.config["OnBuild"] = None
            self.say(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            for trigger in triggers:
                try:
                    parsed = parse_dockerfile(f"FROM scratch\n{trigger}\n").stages[0].instructions[0]
                except (InvalidParameter, IndexError) as exc:
                    raise InvalidParameter(f"invalid ONBUILD trigger {trigger!r} in the base image: {exc}") from None
                await self._dispatch(state, parsed)
        return state

    async def _image(self, name: str, platform_text: str) -> ImageRecord:
        """A local image, pulled when missing (or always with ``pull``). Raises NotFound, InvalidParameter..."""
        platform = self.options.platform
        if platform_text:
            parts = platform_text.split("/")
            platform = Platform(parts[0], parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else None)
        if not self.options.pull:
            with contextlib.suppress(NotFound):
                return self.images.resolve(name)
        return await self.images.pull(name, platform=platform,
                                      progress=lambda p: self._emit(BuildMessage(progress=p)))

    # -- instructions ----------------------------------------------------------------------------------------

    async def _dispatch(self, state: _State, ins: Instruction) -> None:
        escape = self._dockerfile.escape if self._dockerfile else "\\"
        env = state.env()
        ins = ins.expanded(env, escape)
        if isinstance(ins, RunInstruction):
            await self._run(state, ins)
        elif isinstance(ins, CopyInstruction):
            await self._copy(state, ins)
        elif isinstance(ins, WorkdirInstruction):
            await self._workdir(state, ins)
        elif isinstance(ins, ArgInstruction):
            self._arg(state, ins)
            await self._commit_config(state, state.config, "ARG " + " ".join(
                a.name + (f"={state.args[a.name]}" if a.default is not None else "") for a in ins.args))
        else:
            config, comment = self._metadata(state, ins)
            await self._commit_config(state, config, comment)

    def _arg(self, state: _State, ins: ArgInstruction) -> None:
        for arg in ins.args:
            self._used_args.add(arg.name)
            if arg.name in self.options.build_args and self.options.build_args[arg.name] is not None:
                state.args[arg.name] = self.options.build_args[arg.name]
            elif arg.default is not None:
                state.args[arg.name] = arg.default
            else:
                state.args[arg.name] = self._meta_env.get(arg.name)

    def _metadata(self, state: _State, ins: Instruction) -> tuple[dict[str, Any], str]:
        """The config after a metadata instruction, and its history comment."""
        config = copy.deepcopy(state.config)
        if isinstance(ins, CmdInstruction):
            cmd = [*state.shell(), ins.command] if isinstance(ins.command, str) else list(ins.command)
            config["Cmd"] = cmd
            state.cmd_set = True
            return config, f"CMD {_go_quote(cmd)}"
        if isinstance(ins, EntrypointInstruction):
            entry = [*state.shell(), ins.command] if isinstance(ins.command, str) else list(ins.command)
            config["Entrypoint"] = entry
            if not state.cmd_set:
                config["Cmd"] = None
            return config, f"ENTRYPOINT {_go_quote(entry)}"
        if isinstance(ins, LabelInstruction):
            config["Labels"] = dict(config.get("Labels") or {}) | {p.key: p.value for p in ins.pairs}
            return config, "LABEL " + " ".join(f"{p.key}={p.value}" for p in ins.pairs)
        if isinstance(ins, EnvInstruction):
            env = list(config.get("Env") or [])
            for pair in ins.pairs:
                env = _set_env(env, pair.key, pair.value)
            config["Env"] = env
            return config, "ENV " + " ".join(f"{p.key}={p.value}" for p in ins.pairs)
        if isinstance(ins, ExposeInstruction):
            config["ExposedPorts"] = dict(config.get("ExposedPorts") or {}) | {p: {} for p in _ports(ins.ports)}
            return config, "EXPOSE " + " ".join(ins.ports)
        if isinstance(ins, VolumeInstruction):
            config["Volumes"] = dict(config.get("Volumes") or {}) | {p: {} for p in ins.paths}
            return config, f"VOLUME [{' '.join(ins.paths)}]"
        if isinstance(ins, UserInstruction):
            config["User"] = ins.user
            return config, f"USER {ins.user}"
        if isinstance(ins, StopSignalInstruction):
            config["StopSignal"] = _signal(ins.signal)
            return config, f"STOPSIGNAL {ins.signal}"
        if isinstance(ins, ShellInstruction):
            config["Shell"] = list(ins.shell)
            return config, f"SHELL {_go_quote(ins.shell)}"
        if isinstance(ins, OnbuildInstruction):
            config["OnBuild"] = [*(config.get("OnBuild") or []), ins.expression]
            return config, f"ONBUILD {ins.expression}"
        if isinstance(ins, MaintainerInstruction):
            state.author = ins.maintainer
            return config, f"MAINTAINER {ins.maintainer}"
        if isinstance(ins, HealthcheckInstruction):
            check: dict[str, Any] = {"Test": list(ins.test)}
            for key, value in (("Interval", ins.interval), ("Timeout", ins.timeout),
                               ("StartPeriod", ins.start_period), ("StartInterval", ins.start_interval),
                               ("Retries", ins.retries)):
                if value:
                    check[key] = value
            config["Healthcheck"] = check
            return config, (f"HEALTHCHECK &{{{_go_quote(ins.test)} \"{_duration(ins.interval)}\" "
                            f"\"{_duration(ins.timeout)}\" \"{_duration(ins.start_period)}\" "
                            f"\"{_duration(ins.start_interval)}\" '\\x{ins.retries:02x}'}}")
        raise InvalidParameter(f"Dockerfile line {ins.line}: {ins.kind} is not supported")

    # -- commits and the cache ---------------------------------------------------------------------------

    def _created_by(self, state: _State, comment: str, *, two_args: bool = True) -> str:
        """dockerd's history line of a step that runs nothing: ``/bin/sh -c #(nop)  CMD ...``."""
        nop = "#(nop) " if two_args else "#(nop)"
        return " ".join([*state.shell(), nop, comment]) if two_args else " ".join([*state.shell(), f"{nop} {comment}"])

    def _probe(self, state: _State, key: str) -> ImageRecord | None:
        if self.options.no_cache or state.busted:
            return None
        hit = self.cache.get(key)
        if hit is None:
            state.busted = True
            return None
        self.say(" ---> Using cache\n")
        return hit

    def _advance(self, state: _State, image: ImageRecord, config: dict[str, Any]) -> None:
        state.image, state.config = image, config
        self.say(f" ---> {_short(image.id)}\n")

    async def _commit_config(self, state: _State, config: dict[str, Any], comment: str) -> None:
        created_by = self._created_by(state, comment)
        key = step_key(state.parent_id, created_by, config)
        image = self._probe(state, key)
        if image is None:
            image = await self.images.commit(state.image, None, config=config, created_by=created_by,
                                             author=state.author)
            self.cache.put(key, image.id)
        self._advance(state, image, config)

    async def _commit_upper(self, state: _State, key: str, created_by: str, upper: str,
                            container: Mapping[str, Any] | None = None, container_id: str = "") -> None:
        image = await self.images.commit(state.image, upper, config=state.config, created_by=created_by,
                                         author=state.author, container_id=container_id, container=container)
        self.cache.put(key, image.id)
        self._advance(state, image, state.config)

    # -- WORKDIR -------------------------------------------------------------------------------------------

    async def _workdir(self, state: _State, ins: WorkdirInstruction) -> None:
        path = posixpath.normpath(posixpath.join(str(state.config.get("WorkingDir") or "/"), ins.path))
        path = "/" + path.lstrip("/")
        state.config = dict(state.config) | {"WorkingDir": path}
        created_by = self._created_by(state, f"WORKDIR {path}", two_args=False)
        key = step_key(state.parent_id, created_by, state.config)
        hit = self._probe(state, key)
        if hit is not None:
            self._advance(state, hit, state.config)
            return
        async with private_rootfs(self.images, state.image, self.tmp) as (root, upper):
            await asyncio.to_thread(_make_directory, root, path)
            await self._commit_upper(state, key, created_by, upper)

    # -- COPY and ADD --------------------------------------------------------------------------------------

    async def _copy(self, state: _State, ins: CopyInstruction) -> None:
        name = ins.kind.value
        add = isinstance(ins, AddInstruction)
        if isinstance(ins, AddInstruction) and ins.checksum and not all(_is_url(s) for s in ins.sources):
            raise InvalidParameter(f"{name} --checksum can only be used with HTTP(S) sources")
        chmod = _chmod(ins.chmod, name)
        workdir = str(state.config.get("WorkingDir") or "/")
        dest = ins.dest if ins.dest.startswith("/") else posixpath.join(workdir, ins.dest)
        if ins.dest.endswith("/") and not dest.endswith("/"):
            dest += "/"
        async with contextlib.AsyncExitStack() as stack:
            tree = await self._source_tree(ins, stack)
            sources = await self._sources(ins, tree, stack, add)
            if len(sources) > 1 and not dest.endswith("/"):
                raise InvalidParameter(f"When using {name} with more than one source file, the destination must be "
                                       "a directory and end with a /")
            digest = await asyncio.to_thread(copying.checksum, sources, chmod)
            kind = "multi" if len(sources) > 1 else ("dir" if _is_dir(sources[0]) else "file")
            created_by = self._created_by(state, f"{name} {kind}:{digest} in {ins.dest} ", two_args=False)
            key = step_key(state.parent_id, created_by, state.config, extra=f"{ins.chown}|{ins.chmod}")
            hit = self._probe(state, key)
            if hit is not None:
                self._advance(state, hit, state.config)
                return
            root, upper = await stack.enter_async_context(private_rootfs(self.images, state.image, self.tmp))
            await asyncio.to_thread(self._write_copy, root, sources, dest, ins.chown, chmod)
            await self._commit_upper(state, key, created_by, upper)

    async def _source_tree(self, ins: CopyInstruction, stack: contextlib.AsyncExitStack) -> SourceTree:
        """The context, or with ``--from`` the root of a stage's or an image's filesystem (mounted here)."""
        if not ins.from_:
            assert self._context is not None
            return self._context
        ref = ins.from_.lower()
        stages = self._dockerfile.stages if self._dockerfile else ()
        index = next((s.index for s in stages if s.name == ref), int(ref) if ref.isdecimal() else None)
        if index is not None:
            if index not in self._results:
                raise InvalidParameter(f"{ins.kind} --from={ins.from_}: stage not built (only earlier stages can be "
                                       "copied from)")
            image = self._results[index]
        else:
            image = await self._image(ins.from_, "")
        root, _ = await stack.enter_async_context(private_rootfs(self.images, image, self.tmp))
        return stack.enter_context(SourceTree(root, f"--from={ins.from_}"))

    async def _sources(self, ins: CopyInstruction, tree: SourceTree, stack: contextlib.AsyncExitStack,
                       add: bool) -> list[Source]:
        sources: list[Source] = [Source(h.name, data=h.content.encode()) for h in ins.heredocs]
        for pattern in ins.sources:
            if add and _is_url(pattern):
                sources.append(await self._download(pattern, ins, stack))
                continue
            if any(c in pattern for c in "*?["):
                matches = tree.glob(pattern)
                if not matches:
                    raise InvalidParameter(f"{ins.kind} failed: no source files were specified")
            else:
                rel = clean_relative(pattern, "source")
                if tree.locate(rel) is None:
                    where = "build context or excluded by .dockerignore" if not ins.from_ else ins.from_
                    raise InvalidParameter(f"{ins.kind} failed: file not found in {where}: stat {pattern}: "
                                           "file does not exist")
                matches = [rel]
            for rel in matches:
                archive = add and not ins.from_ and await asyncio.to_thread(copying.is_archive, tree, rel)
                sources.append(Source(posixpath.basename(rel), tree, rel, extract=archive))
        if not sources:
            raise InvalidParameter(f"{ins.kind} failed: no source files were specified")
        return sources

    async def _download(self, url: str, ins: CopyInstruction, stack: contextlib.AsyncExitStack) -> Source:
        """ADD <url>: fetched into a private directory (size-capped), checked against ``--checksum``."""
        import httpx  # loaded by the builds that fetch

        assert isinstance(ins, AddInstruction)
        name = posixpath.basename(urllib.parse.urlparse(url).path) or "index.html"
        if not ins.dest.endswith("/"):
            name = posixpath.basename(ins.dest.rstrip("/")) or name
        directory = stack.enter_context(tempfile.TemporaryDirectory(dir=self.tmp, prefix="add-"))
        path = os.path.join(directory, name)
        digest = hashlib.sha256()
        mtime: float | None = None
        try:
            async with httpx.AsyncClient(follow_redirects=True, timeout=60, trust_env=False) as client, \
                    client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise InvalidParameter(f"ADD failed: {url}: HTTP {response.status_code}")
                with open(path, "xb") as out:
                    size = 0
                    async for chunk in response.aiter_bytes(1 << 20):
                        size += len(chunk)
                        if size > MAX_DOWNLOAD:
                            raise InvalidParameter(f"ADD failed: {url} is larger than {MAX_DOWNLOAD} bytes")
                        digest.update(chunk)
                        out.write(chunk)
                with contextlib.suppress(TypeError, ValueError):
                    mtime = parsedate_to_datetime(response.headers.get("Last-Modified", "")).timestamp()
        except httpx.HTTPError as exc:
            raise InvalidParameter(f"ADD failed: {url}: {exc}") from exc
        if ins.checksum:
            algorithm, _, expected = ins.checksum.partition(":")
            if algorithm != "sha256" or not expected:
                raise InvalidParameter(f"ADD --checksum={ins.checksum}: unsupported digest (want sha256:<hex>)")
            if expected.lower() != digest.hexdigest():
                raise InvalidParameter(f"ADD failed: checksum of {url} does not match: expected {ins.checksum}, got "
                                       f"sha256:{digest.hexdigest()}")
        os.chmod(path, 0o600)
        os.utime(path, (mtime or time.time(), mtime or time.time()))
        return Source(name, stack.enter_context(SourceTree(directory, "ADD download")), name)

    def _write_copy(self, root: str, sources: list[Source], dest: str, chown: str, chmod: int | None) -> None:
        """Place ``sources`` at ``dest`` in the root filesystem at ``root`` (Docker's directory rules)."""
        owner = _owner(root, chown)
        with SourceTree(root, "the image") as image:
            found = image.locate(clean_relative(dest))
            exists_dir = found is not None and stat.S_ISDIR(found.st.st_mode)
            if found is not None:
                os.close(found.dir_fd)
        into_dir = dest.endswith("/") or exists_dir or len(sources) > 1
        plan = []
        for source in sources:
            if source.extract or _is_dir(source):
                plan.append((source, dest))
            else:
                plan.append((source, posixpath.join(dest, source.name) if into_dir else dest))
        directories = [dest] if (into_dir or any(s.extract or _is_dir(s) for s in sources)) and not exists_dir else []
        with tempfile.TemporaryFile(dir=self.tmp) as spool:
            copying.write_tar(spool, plan, owner=owner, chmod=chmod, directories=directories)
            spool.seek(0)
            extract_archive(root, "the image", "/", spool, limits=COPY_LIMITS, whiteouts=False)
        for source in sources:
            if source.extract and source.tree is not None:
                found = source.tree.locate(source.rel)
                if found is None:
                    continue
                try:
                    with os.fdopen(found.open_file(), "rb") as archive:
                        extract_archive(root, "the image", dest, archive, limits=COPY_LIMITS, whiteouts=False)
                finally:
                    os.close(found.dir_fd)

    # -- RUN -----------------------------------------------------------------------------------------------

    async def _run(self, state: _State, ins: RunInstruction) -> None:
        if ins.mounts or ins.flags.get("network") or ins.flags.get("security"):
            raise InvalidParameter(f"Dockerfile line {ins.line}: RUN --mount, --network and --security need "
                                   "BuildKit")
        cmd = self._run_command(state, ins)
        allowed = {k: v for k, v in state.args.items() if v is not None
                   and not any(e.partition("=")[0] == k for e in state.config.get("Env") or [])}
        build_env = sorted(f"{k}={v}" for k, v in allowed.items())
        save_cmd = [f"|{len(build_env)}", *build_env, *cmd] if build_env else cmd
        created_by = " ".join(save_cmd)
        key = step_key(state.parent_id, created_by, state.config)
        hit = self._probe(state, key)
        if hit is not None:
            self._advance(state, hit, state.config)
            return
        if state.image is None or not state.image.diff_ids:
            raise InvalidParameter(f"{ins.kind} needs a base image with a filesystem (the stage has none)")
        body = {"Image": state.image.id, "Cmd": cmd, "Entrypoint": [], "User": state.config.get("User") or "",
                "WorkingDir": state.config.get("WorkingDir") or "",
                "Env": [*(state.config.get("Env") or []), *build_env], "AttachStdout": True, "AttachStderr": True,
                "HostConfig": {"NetworkMode": self.options.network_mode or "default"}}
        cid, _ = await self.containers.create(body)
        try:
            self.say(f" ---> Running in {cid[:12]}\n")
            _, reader, writer = await self.containers.attach(cid, stdin=False, stdout=True, stderr=True)
            try:
                await self.containers.start(cid)
                await self._relay(reader)
            finally:
                writer.close()
            code = await self.containers.wait(cid)
            if code != 0:
                raise BuildFailed(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}", code)
            probe = dict(state.config) | {"Cmd": save_cmd}
            await self._commit_upper(state, key, created_by, self.containers.filesystem(cid)[2], probe, cid)
        finally:
            with contextlib.suppress(NotFound):
                await asyncio.shield(self.containers.remove(cid, force=True))
            self.say(f"Removing intermediate container {cid[:12]}\n")

    def _run_command(self, state: _State, ins: RunInstruction) -> list[str]:
        if not isinstance(ins.command, str):
            return list(ins.command)
        script = ins.command
        if ins.heredocs:
            first = ins.heredocs[0]
            bare = len(ins.heredocs) == 1 and re.fullmatch(r"\s*\d?<<-?\s*['\"]?" + re.escape(first.name)
                                                             + r"['\"]?\s*", ins.command)
            if bare and first.content.startswith("#!"):
                # /dev is the container's own tmpfs: the script runs from there and never lands in a layer
                script = (f"cat > {_HEREDOC_FILE} <<'BERTH_HEREDOC'\n{first.content}BERTH_HEREDOC\n"
                          f"chmod +x {_HEREDOC_FILE} && exec {_HEREDOC_FILE}")
            elif bare:
                script = first.content
            else:
                script += "\n" + "".join(f"{h.content}{h.name}\n" for h in ins.heredocs)
        return [*state.shell(), script]

    async def _relay(self, reader: asyncio.StreamReader) -> None:
        """Forward the container's multiplexed output as build output until it ends."""
        while True:
            try:
                header = await reader.readexactly(8)
                payload = await reader.readexactly(int.from_bytes(header[4:], "big"))
            except asyncio.IncompleteReadError:
                return
            self.say(payload.decode("utf-8", "replace"))


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _is_dir(source: Source) -> bool:
    if source.tree is None or source.data is not None:
        return False
    found = source.tree.locate(source.rel)
    if found is None:
        return False
    os.close(found.dir_fd)
    return stat.S_ISDIR(found.st.st_mode)


def _chmod(text: str, name: str) -> int | None:
    if not text:
        return None
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise InvalidParameter(f"{name} --chmod={text}: invalid mode (want octal, e.g. 755)")
    return mode


def _owner(root: str, chown: str) -> tuple[int, int]:
    """``--chown`` as (uid, gid) from the image's /etc/passwd and /etc/group; a user alone gives gid = uid."""
    if not chown:
        return 0, 0
    uid, gid, _ = resolve_user(root, chown)
    return uid, (gid if ":" in chown else uid)


def _make_directory(root: str, path: str) -> None:
    """Create ``path`` (and parents) inside the root at ``root``, symlinks resolved inside it."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    tree = tarsafe.LayerTree(fd)
    try:
        tree.directory([os.fsencode(p) for p in path.split("/") if p])
    except tarsafe.ResolveError as exc:
        raise InvalidParameter(f"WORKDIR {path}: {exc}") from None
    except OSError as exc:
        raise Unavailable(f"WORKDIR {path}: {exc.strerror or exc}") from exc
    finally:
        tree.close()
        os.close(fd)

