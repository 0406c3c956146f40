"""System routes: ``/_ping``, ``/version``, ``/info``, ``/events``, ``/system/df``."""

from __future__ import annotations

import datetime
from collections import Counter
from typing import Any

from aiohttp import web

from backend.engine.events import Event, EventFilter
from backend.engine.system import ENGINE_NAME, ENGINE_VERSION, HostInfo, SystemInfo
from backend.server.context import CONTEXT
from backend.server.params import parse_filters, parse_timestamp_ns
from backend.server.routes_images import image_summary_json
from backend.server.streams import encode_line, start_json_stream
from backend.server.versioning import API_VERSION_TEXT, MIN_API_VERSION_TEXT, add_route

_PING_HEADERS = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}


async def ping(request: web.Request) -> web.Response:
    """``GET /_ping``: ``OK``; ``HEAD /_ping``: no body (``Content-Length: 0``)."""
    body = b"" if request.method == "HEAD" else b"OK"
    response = web.Response(body=body, headers=_PING_HEADERS)
    response.content_type = "text/plain"
    response.charset = "utf-8"
    if request.method == "HEAD":
        response.headers["Content-Length"] = "0"
    return response


def version_json(host: HostInfo) -> dict[str, Any]:
    """``GET /version``'s document."""
    details = {
        "ApiVersion": API_VERSION_TEXT, "Arch": host.go_arch, "BuildTime": "", "Experimental": "false",
        "GitCommit": "", "GoVersion": f"python{host.python_version}", "KernelVersion": host.kernel_version,
        "MinAPIVersion": MIN_API_VERSION_TEXT, "Os": "linux",
    }
    return {
        "Platform": {"Name": f"{ENGINE_NAME} {ENGINE_VERSION}"},
        "Components": [{"Name": "Engine", "Version": ENGINE_VERSION, "Details": details}],
        "Version": ENGINE_VERSION, "ApiVersion": API_VERSION_TEXT, "MinAPIVersion": MIN_API_VERSION_TEXT,
        "GitCommit": "", "GoVersion": f"python{host.python_version}", "Os": "linux", "Arch": host.go_arch,
        "KernelVersion": host.kernel_version, "BuildTime": "",
    }


async def version(request: web.Request) -> web.Response:
    return web.json_response(version_json(request.app[CONTEXT].system.host))


def info_json(info: SystemInfo, engine_id: str) -> dict[str, Any]:
    """``GET /info``'s document (every SystemInfo field of API 1.41)."""
    host = info.host
    commit = {"ID": "", "Expected": ""}
    return {
        "ID": engine_id,
        "Containers": info.containers.total, "ContainersRunning": info.containers.running,
        "ContainersPaused": info.containers.paused, "ContainersStopped": info.containers.stopped,
        "Images": info.images, "Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "overlayfs layers"]],
        "DockerRootDir": info.root_dir,
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None,
                    "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": True, "KernelMemory": False, "KernelMemoryTCP": False,
        "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True, "PidsLimit": True,
        "OomKillDisable": host.cgroup_version == "1", "IPv4Forwarding": True, "BridgeNfIptables": False,
        "BridgeNfIp6tables": False, "Debug": False, "NFd": info.open_fds, "NGoroutines": info.tasks,
        "SystemTime": datetime.datetime.now(datetime.UTC).astimezone().isoformat(timespec="microseconds"),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": host.cgroup_version,
        "NEventsListener": info.event_listeners, "KernelVersion": host.kernel_version,
        "OperatingSystem": host.operating_system, "OSVersion": host.os_version, "OSType": host.os_type,
        "Architecture": host.architecture, "NCPU": host.ncpu, "MemTotal": host.mem_total,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": None, "AllowNondistributableArtifactsHostnames": None,
            "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"],
            "IndexConfigs": {"docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": True, "Official": True}},
            "Mirrors": [],
        },
        "GenericResources": None, "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Name": host.name,
        "Labels": [], "ExperimentalBuild": False, "ServerVersion": ENGINE_VERSION,
        "ClusterStore": "", "ClusterAdvertise": "",
        "Runtimes": {name: {"path": path} for name, path in info.runtimes.items()},
        "DefaultRuntime": info.default_runtime,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "",
        "ContainerdCommit": commit, "RuncCommit": dict(commit), "InitCommit": dict(commit),
        "SecurityOptions": ["name=seccomp,profile=default"] + (["name=cgroupns"] if host.cgroup_version == "2" else []),
        "ProductLicense": "Apache-2.0", "DefaultAddressPools": [], "Warnings": [],
    }


async def info(request: web.Request) -> web.Response:
    system = request.app[CONTEXT].system
    return web.json_response(info_json(await system.info(), system.engine_id))


def event_json(event: Event) -> dict[str, Any]:
    """An event on the wire; container and image events also carry the legacy ``status``/``id``/``from``."""
    out: dict[str, Any] = {}
    if event.Type in ("container", "image"):
        out["status"] = event.Action
        out["id"] = event.Actor.ID
        if event.Type == "container" and "image" in event.Actor.Attributes:
            out["from"] = event.Actor.Attributes["image"]
    out.update({
        "Type": event.Type, "Action": event.Action,
        "Actor": {"ID": event.Actor.ID, "Attributes": dict(event.Actor.Attributes)},
        "scope": event.scope, "time": event.time, "timeNano": event.timeNano,
    })
    return out


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /events``: kept events from ``since``, then live ones until ``until`` (or forever)."""
    since = parse_timestamp_ns(request.query["since"], "since") if request.query.get("since") else None
    until = parse_timestamp_ns(request.query["until"], "until") if request.query.get("until") else None
    filt = EventFilter.parse(parse_filters(request.query.get("filters")))
    subscription = request.app[CONTEXT].events.subscribe(filt, since_ns=since, until_ns=until)
    async with subscription:
        response = await start_json_stream(request)
        async for event in subscription:
            await response.write(encode_line(event_json(event), b"\n"))
        await response.write_eof()
    return response


async def system_df(request: web.Request) -> web.Response:
    """``GET /system/df``: images (with shared sizes and container counts), the providers' containers and
    volumes."""
    context = request.app[CONTEXT]
    containers = await context.containers()
    usage = context.system.image_disk_usage()
    users = Counter(str(row.get("ImageID", "")) for row in containers)
    images = []
    for image in usage.images:
        row = image_summary_json(image.summary)
        row["SharedSize"] = image.shared_size
        row["Containers"] = users.get(image.summary.id, 0)
        images.append(row)
    return web.json_response({"LayersSize": usage.layers_size, "Images": images, "Containers": containers,
                              "Volumes": context.volume_rows(), "BuildCache": []})


def setup(app: web.Application) -> None:
    """Register the system routes."""
    add_route(app, "GET", "/_ping", ping)
    add_route(app, "HEAD", "/_ping", ping)
    add_route(app, "GET", "/version", version)
    add_route(app, "GET", "/info", info)
    add_route(app, "GET", "/events", events)
    add_route(app, "GET", "/system/df", system_df)
