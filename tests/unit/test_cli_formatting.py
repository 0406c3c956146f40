"""berth's output helpers: the Go-template subset, docker's tables, sizes, durations and time flags."""

from __future__ import annotations

import pytest

from backend.api.errors import APIError
from backend.api.hijack import FrameDecoder, encode_frame
from backend.cli.context import UsageError
from backend.cli.formatting import (
    Formatter,
    Template,
    TemplateError,
    ago,
    bytes_size,
    ellipsis,
    go_quote,
    human_duration,
    human_size,
    render_items,
    short_id,
    tabwrite,
    timestamp_arg,
)

DOC = {"Name": "/web", "State": {"Status": "running", "Pid": 42, "Running": True},
       "Config": {"Labels": {"a": "1", "b.c": "2"}, "Env": ["A=1", "B=2"], "Cmd": None}}


@pytest.mark.parametrize(("source", "expected"), [
    ("{{.Name}}", "/web"),
    ("{{.State.Status}} {{.State.Pid}} {{.State.Running}}", "running 42 true"),
    ("{{json .Config.Labels}}", '{"a":"1","b.c":"2"}'),
    ('{{index .Config.Labels "b.c"}}', "2"),
    ("{{index .Config.Env 1}}", "B=2"),
    ('{{join .Config.Env ","}}', "A=1,B=2"),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.Config.Labels}}", "map[a:1 b.c:2]"),
    ("{{.Config.Cmd}}", "<no value>"),
    ("{{.State.Status | upper}}", "RUNNING"),
    ("{{upper .State.Status}}", "RUNNING"),
    ("x\\ty", "x\ty"),
    ("{{ .Name -}}  |  {{- .State.Pid }}", "/web|42"),
    ("{{json .}}", '{"Config":{"Cmd":null,"Env":["A=1","B=2"],"Labels":{"a":"1","b.c":"2"}},"Name":"/web",'
                   '"State":{"Pid":42,"Running":true,"Status":"running"}}'),
])
def test_template_renders(source: str, expected: str) -> None:
    assert Template(source).render(DOC) == expected


@pytest.mark.parametrize(("source", "message"), [
    ("{{.Nope}}", 'map has no entry for key "Nope"'),
    ("{{.State.Nope}}", 'map has no entry for key "Nope"'),
    ("{{.Name.Deeper}}", "can't evaluate field Deeper"),
    ("{{frobnicate .Name}}", 'function "frobnicate" not defined'),
    ("{{range .Config.Env}}{{.}}{{end}}", "not supported"),
    ("{{.Name", "unclosed action"),
    ('{{index .Config.Env 5}}', "index out of range"),
])
def test_template_errors_are_one_line(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        Template(source).render(DOC)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_table_format_aligns_like_docker() -> None:
    rows = [{"ID": "0123456789ab", "Names": "web", "Image": "busybox"},
            {"ID": "ba9876543210", "Names": "a-much-longer-name", "Image": "x"}]
    out = Formatter("table {{.ID}}\t{{.Names}}\t{{.Image}}", "", {"ID": "CONTAINER ID"}).render(rows)
    assert out.splitlines() == [
        "CONTAINER ID   NAMES                IMAGE",
        "0123456789ab   web                  busybox",
        "ba9876543210   a-much-longer-name   x",
    ]


def test_default_table_json_and_plain_template() -> None:
    rows = [{"ID": "abc", "Names": "web"}]
    formatter = Formatter(None, "table {{.ID}}\t{{.Names}}", {"ID": "CONTAINER ID"})
    assert formatter.render(rows) == "CONTAINER ID   NAMES\nabc            web\n"
    assert Formatter("json", "", {}).render(rows) == '{"ID":"abc","Names":"web"}\n'
    assert Formatter("{{.Names}}", "", {}).render(rows + rows) == "web\nweb\n"
    assert Formatter("table", "table {{.Names}}", {}).render([]) == "NAMES\n"


def test_render_items_json_and_template() -> None:
    assert render_items("json", [{"b": 1, "a": 2}]) == '{"a":2,"b":1}\n'
    assert render_items("{{.a}}", [{"a": 1}, {"a": 2}]) == "1\n2\n"


def test_tabwrite_minimum_width_and_last_column() -> None:
    first, second = tabwrite(["A\tB\tC", "long-cell-here\tb\tlast"]).splitlines()
    assert first == "A".ljust(17) + "B".ljust(10) + "C"
    assert second == "long-cell-here   " + "b".ljust(10) + "last"


@pytest.mark.parametrize(("seconds", "text"), [
    (0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (120, "2 minutes"), (3600, "About an hour"), (7200, "2 hours"),
    (47 * 3600, "47 hours"), (3 * 86400, "3 days"), (20 * 86400, "2 weeks"), (90 * 86400, "3 months"),
    (3 * 365 * 86400, "3 years"),
])
def test_human_duration_matches_go_units(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_sizes_ids_and_quotes() -> None:
    assert human_size(1982298, 3) == "1.98MB"
    assert human_size(512) == "512B"
    assert human_size(0, 3) == "0B"
    assert human_size(4_260_000, 3) == "4.26MB"
    assert bytes_size(1536 * 1024) == "1.5MiB"
    assert short_id("sha256:747ee9f7cb3443f20dd44134221a4a37") == "747ee9f7cb34"
    assert ellipsis('"sleep 1000 and a long tail"', 20) == '"sleep 1000 and a l…'
    assert go_quote('sh -c "x"') == '"sh -c \\"x\\""'
    assert ago(100.0, now=105.0) == "5 seconds ago"


def test_timestamp_arg() -> None:
    assert timestamp_arg("1700000000", "--since") == "1700000000"
    assert float(timestamp_arg("10m", "--since", now=1000.0)) == 400.0
    assert float(timestamp_arg("1h30m", "--since", now=10000.0)) == 4600.0
    assert float(timestamp_arg("2024-01-02T03:04:05Z", "--since")) == 1704164645.0
    with pytest.raises(UsageError):
        timestamp_arg("yesterday", "--since")


def test_frame_decoder_handles_split_frames() -> None:
    data = encode_frame(1, b"hello\n") + encode_frame(2, b"oops\n") + encode_frame(1, b"")
    decoder = FrameDecoder()
    frames = []
    for i in range(0, len(data), 3):
        frames += decoder.feed(data[i:i + 3])
    assert frames == [(1, b"hello\n"), (2, b"oops\n"), (1, b"")]
    assert decoder.pending == 0
    assert decoder.feed(encode_frame(1, b"partial")[:10]) == []
    assert decoder.pending == 10


def test_frame_decoder_rejects_unframed_bytes() -> None:
    with pytest.raises(APIError):
        FrameDecoder().feed(b"plain text, no frames")
