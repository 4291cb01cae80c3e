"""``vrref view``: one self-contained HTML page that shows a history and its verdict.

A linearizability verdict is only as useful as its explanation, and the explanation of a
concurrent history is a picture: every operation a bar from its invocation to its
completion, one lane per process, in real-time order. On top of that the page draws what
the checker found: for a linearizable history the order of the witness (each bar numbered,
its partition in the tooltip); for a violation the failing partition, its longest partial
linearization (numbered, green), the operation that cannot be placed after it (red) and the
candidates that were tried (orange); everything else is dimmed. Hovering a bar shows the
operation, its file lines and the model state after it in the witness or the prefix.

The page is one file with inline CSS and JavaScript and the data as JSON in a script
element: no network, no CDN, no build step, so it can be attached to a bug report and opened
years later. The x axis is the order of events (not wall time: the order is what
linearizability is about, and it keeps short operations visible); a slider zooms. Big
histories are cut to ``VIEW_OPS_MAX`` operations (the failing partition is always kept) and
model states are embedded only up to ``VIEW_STATES_MAX`` operations.

``vrref view HISTORY [-o OUT.html]`` runs the check (same options as ``vrref check``) and
writes the page; it exits 0 once the page is written, whatever the verdict, and 2 when the
history cannot be read. ``vrref check --html OUT`` writes the same page.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Final

from checker import verdict as cli_check
from checker.lin import wgl as lin
from checker.lin.readers import ClientOp

VIEW_OPS_MAX: Final = 5_000
VIEW_STATES_MAX: Final = 2_000
LANES_BY_PROCESS_MAX: Final = 64
STATE_CHARS_MAX: Final = 4_000


def _lanes(ops: list[dict[str, Any]]) -> int:
    """Sets each op's "lane": one per process when there are few, else packed greedily."""
    processes = sorted({str(op["process"]) for op in ops})
    if len(processes) <= LANES_BY_PROCESS_MAX:
        index = {p: i for i, p in enumerate(processes)}
        for op in ops:
            op["lane"] = index[str(op["process"])]
            op["laneName"] = f"process {op['process']}"
        return len(processes)
    ends: list[float] = []  # the last end in each lane
    for op in sorted(ops, key=lambda o: o["call"]):
        end = op["ret"] if op["ret"] is not None else float("inf")
        for lane, last in enumerate(ends):
            if last < op["call"]:
                ends[lane] = end
                op["lane"] = lane
                break
        else:
            ends.append(end)
            op["lane"] = len(ends) - 1
        op["laneName"] = f"row {op['lane']}"
    return len(ends)


def _clip(text: str) -> str:
    if len(text) <= STATE_CHARS_MAX:
        return text
    return text[:STATE_CHARS_MAX] + f"\n... ({len(text) - STATE_CHARS_MAX} more characters)"


def view_data(loaded: cli_check.Loaded, result: lin.Result) -> dict[str, Any]:
    """Everything the page shows, as JSON-able data."""
    model = loaded.model
    checked = {op.id: op for op in loaded.ops}
    info: dict[int, dict[str, Any]] = {}
    for raw in loaded.history.ops:
        op = checked.get(raw.index)
        indeterminate = raw.outcome in (None, "info") or (op is not None and not op.definite)
        info[raw.index] = {
            "id": raw.index,
            "process": raw.process,
            "call": raw.call,
            "ret": None if indeterminate else raw.ret,  # drawn to the end: +infinity
            "indeterminate": indeterminate,
            "outcome": raw.outcome or "no completion",
            "text": (
                model.describe_operation(op.input, op.output)
                if op is not None
                else f"{raw.f} {_short(raw.value)} -> {_short(raw.result)}"
            ),
            "lines": _lines(raw),
            "role": "checked" if op is not None else "left out",
        }
    keep: set[int] | None = None
    notes: list[str] = []
    if isinstance(result, lin.Ok) and result.linearization is not None:
        states: list[Any] = []
        if len(result.linearization) <= VIEW_STATES_MAX:
            states = lin.replay(model, result.linearization, states=True)
        for k, op in enumerate(result.linearization):
            item = info[op.id]
            item["order"] = k + 1
            item["role"] = "linearized"
            if states:
                item["state"] = _clip(model.describe_state(states[k + 1]))
        for p, part in enumerate(result.partitions or ()):
            for op in part:
                info[op.id]["partition"] = p
        unused = [op for op in loaded.ops if info[op.id].get("order") is None]
        for op in unused:
            info[op.id]["role"] = "never took effect"
    elif isinstance(result, lin.Illegal):
        keep = {op.id for op in result.partition}
        for op in result.partition:
            info[op.id]["role"] = "failing partition"
        prefix = result.longest[0] if result.longest else ()
        for k, op in enumerate(prefix):
            info[op.id]["order"] = k + 1
            info[op.id]["role"] = "prefix"
            if k + 1 < len(result.states):
                info[op.id]["state"] = _clip(result.states[k + 1])
        for candidate in result.candidates:
            info[candidate.op.id]["role"] = "candidate"
            info[candidate.op.id]["why"] = candidate.why
        if result.blocking is not None:
            info[result.blocking.id]["role"] = "blocking"
            info[result.blocking.id]["state"] = _clip(result.state_after)
    ops = sorted(info.values(), key=lambda o: o["call"])
    if len(ops) > VIEW_OPS_MAX:
        kept = [o for o in ops[:VIEW_OPS_MAX] if keep is None or o["id"] not in keep]
        if keep is not None:
            kept += [o for o in ops if o["id"] in keep]
        notes.append(f"showing {len(kept)} of {len(ops)} operations")
        ops = sorted(kept, key=lambda o: o["call"])
    lanes = _lanes(ops)
    end = max([o["ret"] for o in ops if o["ret"] is not None] + [o["call"] for o in ops] + [0])
    return {
        "title": loaded.history.path,
        "verdict": result.verdict,
        "summary": cli_check.describe(loaded, result),
        "notes": notes,
        "lanes": lanes,
        "end": end + 1,
        "ops": ops,
    }


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _lines(raw: ClientOp) -> str:
    lines = f"{raw.path}:{raw.call_line}"
    if raw.ret_line is not None:
        lines += f"-{raw.ret_line}"
    return lines


def render(loaded: cli_check.Loaded, result: lin.Result) -> str:
    data = view_data(loaded, result)
    payload = (
        json.dumps(data, default=str)
        .replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
    )
    title = html.escape(f"vrref view: {loaded.history.path}")
    return _PAGE.replace("__TITLE__", title).replace("__DATA__", payload)


def write(path: str | Path, loaded: cli_check.Loaded, result: lin.Result) -> None:
    Path(path).write_text(render(loaded, result), encoding="utf-8")


_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { font: 13px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { padding: 10px 16px; background: #fff; border-bottom: 1px solid #ddd; }
h1 { font-size: 16px; margin: 0 0 4px; }
.verdict { font-weight: bold; padding: 2px 8px; border-radius: 3px; color: #fff; }
.v-linearizable { background: #2e7d32; }
.v-not-linearizable { background: #c62828; }
.v-unknown { background: #6d6d6d; }
details pre { background: #f3f3f3; padding: 8px; overflow: auto; max-height: 320px; }
#controls { margin: 6px 0; }
#legend span { display: inline-block; margin-right: 12px; }
#legend i { display: inline-block; width: 14px; height: 10px; margin-right: 4px;
  vertical-align: middle; border: 1px solid #555; }
#scroll { overflow: auto; height: calc(100vh - 190px); background: #fff; }
svg text { font: 11px system-ui, sans-serif; pointer-events: none; }
.op { stroke: #333; stroke-width: 0.6; cursor: pointer; }
.op:hover { stroke-width: 2; }
.r-linearized { fill: #90caf9; background: #90caf9; }
.r-prefix { fill: #81c784; background: #81c784; }
.r-blocking { fill: #e53935; background: #e53935; }
.r-candidate { fill: #ffb74d; background: #ffb74d; }
.r-failing-partition { fill: #cfd8dc; background: #cfd8dc; }
.r-checked { fill: #e0e0e0; background: #e0e0e0; opacity: 0.5; }
.r-left-out { fill: #fff; background: #fff; stroke-dasharray: 3 2; opacity: 0.6; }
.r-never-took-effect { fill: #eee; background: #eee; stroke-dasharray: 2 2; }
.indeterminate { fill-opacity: 0.45; }
#tip { position: fixed; display: none; max-width: 560px; background: #fffde7;
  border: 1px solid #aaa; padding: 6px 8px; white-space: pre-wrap; font: 12px monospace;
  pointer-events: none; box-shadow: 0 2px 6px rgba(0,0,0,.2); max-height: 70vh;
  overflow: hidden; }
</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <div><span id="verdict" class="verdict"></span> <span id="notes"></span></div>
  <details><summary>checker output</summary><pre id="summary"></pre></details>
  <div id="controls">zoom <input id="zoom" type="range" min="1" max="40" value="12">
    <span id="legend"></span></div>
</header>
<div id="scroll"><svg id="svg" xmlns="http://www.w3.org/2000/svg"></svg></div>
<div id="tip"></div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const NS = "http://www.w3.org/2000/svg";
const LANE_H = 22, LEFT = 110, TOP = 20;
document.getElementById("title").textContent = data.title;
const verdict = document.getElementById("verdict");
verdict.textContent = data.verdict;
verdict.className = "verdict v-" + data.verdict.replace(/ /g, "-");
document.getElementById("summary").textContent = data.summary;
document.getElementById("notes").textContent = data.notes.join("; ");
const roles = {
  "linearized": "in the witness (numbered)", "prefix": "longest partial linearization",
  "blocking": "cannot be placed", "candidate": "tried next, failed",
  "failing-partition": "failing partition", "checked": "other partitions",
  "left-out": "left out (failed, local or unobservable)",
  "never-took-effect": "indeterminate, never took effect"};
const legend = document.getElementById("legend");
for (const [role, text] of Object.entries(roles)) {
  if (!data.ops.some(o => o.role.replace(/ /g, "-") === role)) continue;
  const span = document.createElement("span");
  const box = document.createElement("i");
  box.className = "r-" + role;
  span.appendChild(box);
  span.appendChild(document.createTextNode(text));
  legend.appendChild(span);
}
const tip = document.getElementById("tip");
function show(op, event) {
  let text = op.text + "\\n" + op.laneName + ", " + op.outcome + ", " + op.lines;
  if (op.partition !== undefined) text += "\\npartition " + op.partition;
  if (op.order !== undefined) text += "\\nposition " + op.order + " in the " +
    (data.verdict === "linearizable" ? "witness" : "longest partial linearization");
  if (op.why) text += "\\nfails here: " + op.why;
  if (op.role === "blocking") text += "\\n\\nstate when it had to be placed:\\n" + op.state;
  else if (op.state !== undefined) text += "\\n\\nstate after it:\\n" + op.state;
  tip.textContent = text;
  tip.style.display = "block";
  move(event);
}
function move(event) {
  const x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  const y = Math.min(event.clientY + 14, window.innerHeight - tip.offsetHeight - 8);
  tip.style.left = Math.max(0, x) + "px";
  tip.style.top = Math.max(0, y) + "px";
}
function el(name, attrs, parent) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  parent.appendChild(node);
  return node;
}
function draw() {
  const scale = Number(document.getElementById("zoom").value);
  const svg = document.getElementById("svg");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const width = LEFT + (data.end + 2) * scale;
  svg.setAttribute("width", width);
  svg.setAttribute("height", TOP + data.lanes * LANE_H + 10);
  const names = {};
  for (const op of data.ops) names[op.lane] = op.laneName;
  for (let lane = 0; lane < data.lanes; lane++) {
    const y = TOP + lane * LANE_H;
    if (lane % 2) el("rect", {x: 0, y: y, width: width, height: LANE_H, fill: "#f6f6f6"}, svg);
    const label = el("text", {x: 4, y: y + 15}, svg);
    label.textContent = names[lane] || "";
  }
  for (const op of data.ops) {
    const x1 = LEFT + op.call * scale;
    const x2 = LEFT + ((op.ret === null ? data.end : op.ret) + 0.6) * scale;
    const y = TOP + op.lane * LANE_H + 3;
    const role = op.role.replace(/ /g, "-");
    const rect = el("rect", {x: x1, y: y, width: Math.max(2, x2 - x1), height: LANE_H - 6,
      rx: 2, class: "op r-" + role + (op.indeterminate ? " indeterminate" : "")}, svg);
    rect.addEventListener("mouseenter", e => show(op, e));
    rect.addEventListener("mousemove", move);
    rect.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    if (x2 - x1 > 24) {
      const label = el("text", {x: x1 + 3, y: y + 12}, svg);
      label.textContent = (op.order !== undefined ? "#" + op.order + " " : "") +
        op.text.slice(0, Math.floor((x2 - x1) / 6.5));
    }
  }
}
const initial = Math.max(1, Math.min(12, Math.floor(8000 / Math.max(1, data.end))));
document.getElementById("zoom").value = initial;
document.getElementById("zoom").addEventListener("input", draw);
draw();
</script>
</body>
</html>
"""
