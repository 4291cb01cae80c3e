"""The HTML view: one self-contained file whose data says what the checker found.

The page is parsed with the standard library's HTML parser: it must reference nothing
outside itself (no src, no href, no @import, no URL but the SVG namespace), embed its data
as JSON that parses, and mark the witness or the failing region. When node is installed,
the page's script also runs against a minimal DOM stand-in, so a JavaScript error fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from checker import report
from checker import verdict as cli_check
from vrref import cli


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.external: list[tuple[str, str]] = []
        self.data_json = ""
        self._in_data = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") or (value and "://" in value and "w3.org" not in value):
                self.external.append((tag, name))
        self._in_data = tag == "script" and ("type", "application/json") in attrs

    def handle_endtag(self, tag: str) -> None:
        self._in_data = False

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data_json += data


def _history(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "h.edn"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


GOOD = [
    "{:process 0, :type :invoke, :f :write, :value 1}",
    "{:process 1, :type :invoke, :f :read, :value nil}",
    "{:process 0, :type :ok, :f :write, :value 1}",
    "{:process 1, :type :ok, :f :read, :value 1}",
    "{:process 2, :type :invoke, :f :cas, :value [1 2]}",
    "{:process 2, :type :info, :f :cas, :value [1 2]}",
]
BAD = [
    "{:process 0, :type :invoke, :f :write, :value 1}",
    "{:process 0, :type :ok, :f :write, :value 1}",
    "{:process 1, :type :invoke, :f :read, :value nil}",
]


def _render(path: str) -> tuple[str, dict[str, Any]]:
    loaded = cli_check.load([path], fmt="jepsen-edn")
    page = report.render(loaded, cli_check.run(loaded, timeout_s=5.0))
    parser = _Page()
    parser.feed(page)
    assert parser.external == []
    assert "@import" not in page and "url(" not in page
    assert parser.tags.count("svg") == 1 and parser.tags.count("style") == 1
    return page, json.loads(parser.data_json)


def test_linearizable_view_numbers_the_witness(tmp_path: Path) -> None:
    _, data = _render(_history(tmp_path, GOOD))
    assert data["verdict"] == "linearizable"
    by_text = {op["text"]: op for op in data["ops"]}
    assert by_text["write 1"]["order"] == 1 and by_text["read -> 1"]["order"] == 2
    assert by_text["write 1"]["state"] == "1"
    cas = by_text["cas 1 -> 2 (indeterminate)"]
    assert cas["indeterminate"] and cas["ret"] is None
    assert {op["lane"] for op in data["ops"]} == {0, 1, 2}


def test_violation_view_marks_the_failing_region(tmp_path: Path) -> None:
    bad = [*BAD[:3], "{:process 1, :type :ok, :f :read, :value 7}"]
    _page, data = _render(_history(tmp_path, bad))
    assert data["verdict"] == "not linearizable"
    roles = {op["text"]: op["role"] for op in data["ops"]}
    assert roles == {"write 1": "prefix", "read -> 7": "blocking"}
    blocking = next(op for op in data["ops"] if op["role"] == "blocking")
    assert blocking["state"] == "1"
    assert "NOT LINEARIZABLE" in data["summary"]


def test_hostile_values_cannot_break_out_of_the_data(tmp_path: Path) -> None:
    path = _history(tmp_path, [*BAD[:3], '{:process 1, :type :ok, :f :read, :value "</script>"}'])
    page, data = _render(path)
    assert page.count("</script>") == 2  # the data's and the code's own end tags
    assert any("</script>" in op["text"] for op in data["ops"])


def test_many_processes_are_packed_into_rows(tmp_path: Path) -> None:
    lines = []
    for p in range(100):
        lines += [
            f"{{:process {p}, :type :invoke, :f :write, :value {p}}}",
            f"{{:process {p}, :type :ok, :f :write, :value {p}}}",
        ]
    _, data = _render(_history(tmp_path, lines))
    assert data["lanes"] == 1
    assert data["ops"][0]["laneName"] == "row 0"


def test_view_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _history(tmp_path, GOOD)
    out = tmp_path / "out.html"
    assert cli.main(["view", path, "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert "linearizable" in capsys.readouterr().out
    assert cli.main(["view", str(tmp_path / "missing.edn"), "--format", "jepsen-edn"]) == 2
    assert "missing.edn" in capsys.readouterr().err
    assert cli.main(["view"]) == 2


STUB = r"""
const fs = require("fs");
const html = fs.readFileSync(process.argv[1], "utf8");
const data = html.match(/<script type="application\/json" id="data">([\s\S]*?)<\/script>/)[1];
const code = html.match(/<script>\n([\s\S]*?)<\/script>/)[1];
function node(tag) { return { tag, children: [], attrs: {}, style: {}, value: "12",
  textContent: "", offsetWidth: 100, offsetHeight: 50,
  setAttribute(k, v) { this.attrs[k] = v; }, appendChild(c) { this.children.push(c); return c; },
  removeChild(c) { this.children.splice(this.children.indexOf(c), 1); },
  get firstChild() { return this.children[0]; }, addEventListener() {} }; }
const els = {};
global.document = {
  getElementById(id) { if (!els[id]) { els[id] = node(id);
    if (id === "data") els[id].textContent = data; } return els[id]; },
  createElement: node, createElementNS: (ns, t) => node(t), createTextNode: t => ({t}) };
global.window = { innerWidth: 1000, innerHeight: 800 };
eval(code);
console.log(els["svg"].children.filter(c => c.tag === "rect").length);
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_page_script_runs(tmp_path: Path) -> None:
    path = _history(tmp_path, GOOD)
    out = tmp_path / "out.html"
    assert cli.main(["view", path, "-o", str(out)]) == 0
    done = subprocess.run(
        ["node", "-e", STUB, str(out)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 3  # one bar per operation, plus the lane stripes
