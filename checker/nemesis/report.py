"""The nemesis's HTML report: one self-contained page (inline CSS, SVG and a little JS; no
network), in the style of checker/report.py.

On it: the verdict and each check's (with its violations, each "file:line: what", and the
checker's own text folded away); a timeline whose x axis is seconds since the run began,
with one lane a replica carrying its fault bars (a whole-cluster restart spans the three),
the answered updates per second stacked by client below, and every window of a second or
more without an answered update shaded (the longest one named); and the figures: operations
by kind and outcome, update rcodes, faults by kind, the longest unavailability overall and
by fault kind. Hovering a bar shows what it is (SVG titles); a checkbox hides the per-client
colours.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from checker.nemesis.result import NemesisResult

WIDTH: Final = 1100
LEFT: Final = 90
RIGHT: Final = 20
LANE: Final = 24
CHART: Final = 150
GAP_SHOWN_S: Final = 1.0
BARS_MAX: Final = 300
FAULT_COLOURS: Final = {
    "kill": "#d32f2f",
    "pause": "#f9a825",
    "partition": "#7b1fa2",
    "restart-all": "#455a64",
}
CLIENT_COLOURS: Final = (
    "#1e88e5",
    "#43a047",
    "#fb8c00",
    "#8e24aa",
    "#00acc1",
    "#c0ca33",
    "#6d4c41",
    "#d81b60",
)
STATUS_CLASS: Final = {"pass": "ok", "fail": "bad", "unknown": "unk", "info": "info"}

CSS: Final = """
body { font: 13px/1.45 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { padding: 10px 16px; background: #fff; border-bottom: 1px solid #ddd; }
h1 { font-size: 17px; margin: 0 0 4px; }
h2 { font-size: 14px; margin: 18px 0 6px; }
main { padding: 0 16px 24px; }
.badge { font-weight: bold; padding: 2px 8px; border-radius: 3px; color: #fff; }
.ok { background: #2e7d32; } .bad { background: #c62828; }
.unk { background: #6d6d6d; } .info { background: #1565c0; }
.check { background: #fff; border: 1px solid #ddd; border-radius: 4px; margin: 6px 0;
  padding: 6px 10px; }
.check ul { margin: 4px 0; padding-left: 20px; }
.check li { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
details pre { background: #f3f3f3; padding: 8px; overflow: auto; max-height: 360px;
  font-size: 12px; }
table { border-collapse: collapse; background: #fff; margin: 4px 12px 4px 0; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
th { background: #f0f0f0; }
.tables { display: flex; flex-wrap: wrap; align-items: flex-start; }
svg { background: #fff; border: 1px solid #ddd; }
svg text { font: 11px system-ui, sans-serif; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
  vertical-align: -2px; }
.mono { font-family: ui-monospace, monospace; }
"""

JS: Final = """
document.getElementById('byclient').addEventListener('change', function (e) {
  document.querySelectorAll('rect.upd').forEach(function (r) {
    r.setAttribute('fill', e.target.checked ? r.dataset.c : '#1e88e5');
  });
});
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _timeline(result: NemesisResult) -> str:
    start = result.started_ns
    seconds = max(result.run_s, 1e-3)
    plot = WIDTH - LEFT - RIGHT
    replicas = 3

    def x(ns: int) -> float:
        return LEFT + max(0.0, min(seconds, (ns - start) / 1e9)) / seconds * plot

    lanes_top = 24
    chart_top = lanes_top + replicas * LANE + 30
    height = chart_top + CHART + 34
    parts: list[str] = [
        f'<svg width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    # the unavailability windows, behind everything
    longest = result.longest_gap
    from checker.nemesis.checks import gaps

    successes = [op.complete_ns for op in result.ops if op.f == "update" and op.outcome == "ok"]
    for gap in gaps(successes, result.started_ns, result.ended_ns):
        if gap.seconds < GAP_SHOWN_S:
            continue
        is_longest = longest is not None and gap == longest
        fill = "#ef9a9a" if is_longest else "#ffcdd2"
        x0, x1 = x(gap.start), x(gap.end)
        parts.append(
            f'<rect x="{x0:.1f}" y="{lanes_top - 6}" width="{max(1.0, x1 - x0):.1f}" '
            f'height="{chart_top + CHART - lanes_top + 6}" fill="{fill}" opacity="0.55">'
            f"<title>{gap.seconds:.2f} s without an answered update "
            f"({(gap.start - start) / 1e9:.2f}-{(gap.end - start) / 1e9:.2f} s)"
            f"{' - the longest' if is_longest else ''}</title></rect>"
        )
        if is_longest:
            anchor, at = ("end", x1 - 2) if x0 > WIDTH - 260 else ("start", x0 + 2)
            parts.append(
                f'<text x="{at:.1f}" y="{lanes_top - 10}" text-anchor="{anchor}" '
                f'fill="#b71c1c">longest unavailability {gap.seconds:.2f} s</text>'
            )
    # the lanes and their faults
    for i in range(replicas):
        y = lanes_top + i * LANE
        parts.append(f'<text x="6" y="{y + 15}">replica {i}</text>')
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y + LANE - 2}" y2="{y + LANE - 2}" '
            'stroke="#eee"/>'
        )
    for fault in result.faults:
        end = fault.end_ns if fault.end_ns is not None else result.ended_ns
        x0, x1 = x(fault.start_ns), x(end)
        colour = FAULT_COLOURS.get(fault.kind, "#999")
        title = (
            f"{fault.kind} of replica(s) {', '.join(map(str, fault.replicas))} ({fault.target}) "
            f"{(fault.start_ns - start) / 1e9:.2f}-{(end - start) / 1e9:.2f} s"
            + (f": {fault.detail}" if fault.detail else "")
        )
        for i in fault.replicas:
            y = lanes_top + i * LANE + 3
            parts.append(
                f'<rect x="{x0:.1f}" y="{y}" width="{max(2.0, x1 - x0):.1f}" height="{LANE - 8}" '
                f'fill="{colour}" rx="2"><title>{_e(title)}</title></rect>'
            )
    for at, mode in result.read_modes:
        xm = x(at)
        parts.append(
            f'<text x="{xm + 2:.1f}" y="{lanes_top + replicas * LANE + 12}" fill="#555">'
            f"reads: {mode}</text>"
        )
    # answered updates per second, stacked by client (a bar a second; a bar several seconds
    # in a long run, so that there are at most BARS_MAX of them)
    width_s = max(1, math.ceil(seconds / BARS_MAX))
    buckets = max(1, math.ceil(seconds / width_s))
    counts: list[Counter[int]] = [Counter() for _ in range(buckets)]
    for op in result.ops:
        if op.f == "update" and op.outcome == "ok":
            b = min(buckets - 1, max(0, int((op.complete_ns - start) / 1e9 / width_s)))
            counts[b][op.client] += 1
    peak = max((sum(c.values()) for c in counts), default=1) / width_s or 1
    parts.append(
        f'<text x="6" y="{chart_top + 12}">updates/s</text>'
        f'<text x="6" y="{chart_top + 26}" fill="#777">(peak {peak:g})</text>'
    )
    if width_s > 1:
        parts.append(f'<text x="6" y="{chart_top + 40}" fill="#777">(a bar {width_s} s)</text>')
    bar = plot / seconds * width_s
    for b, counter in enumerate(counts):
        base: float = chart_top + CHART
        t0 = b * width_s
        for client in sorted(counter):
            h = counter[client] / width_s / peak * (CHART - 10)
            base -= h
            colour = CLIENT_COLOURS[client % len(CLIENT_COLOURS)]
            parts.append(
                f'<rect class="upd" data-c="{colour}" x="{LEFT + b * bar:.1f}" y="{base:.1f}" '
                f'width="{max(1.0, bar - 1):.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{t0}-{t0 + width_s} s: client {client}: {counter[client]} answered "
                f"updates ({sum(counter.values())} in all)</title></rect>"
            )
    # the axis
    axis_y = chart_top + CHART
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{axis_y}" y2="{axis_y}" stroke="#999"/>'
    )
    step = 1 if seconds <= 20 else 5 if seconds <= 120 else 30 if seconds <= 900 else 120
    t = 0
    while t <= seconds + 1e-9:
        xt = LEFT + t / seconds * plot
        parts.append(
            f'<line x1="{xt:.1f}" x2="{xt:.1f}" y1="{axis_y}" y2="{axis_y + 4}" stroke="#999"/>'
            f'<text x="{xt:.1f}" y="{axis_y + 16}" text-anchor="middle">{t}</text>'
        )
        t += step
    parts.append(
        f'<text x="{WIDTH - RIGHT}" y="{axis_y + 30}" text-anchor="end" fill="#555">'
        "seconds since the start of the run</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def _table(title: str, rows: list[tuple[str, object]]) -> str:
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table><tr><th colspan=2>{_e(title)}</th></tr>{body}</table>"


def _checks(result: NemesisResult) -> str:
    out: list[str] = []
    for check in result.checks:
        cls = STATUS_CLASS.get(check.status, "unk")
        items = "".join(f"<li>{_e(v)}</li>" for v in check.violations)
        violations = f"<ul>{items}</ul>" if items else ""
        detail_text = check.text or "\n".join(check.details)
        details = (
            f"<details><summary>details</summary><pre>{_e(detail_text)}</pre></details>"
            if detail_text
            else ""
        )
        out.append(
            f'<div class="check"><span class="badge {cls}">{_e(check.status.upper())}</span> '
            f"<b>{_e(check.title)}</b> ({check.seconds:.1f} s)<br>{_e(check.summary)}"
            f"{violations}{details}</div>"
        )
    return "".join(out)


def page(result: NemesisResult) -> str:
    o = result.options
    figures = result.figures()
    cls = STATUS_CLASS.get(result.status, "unk")
    by_kind = sorted(figures["by kind and outcome"].items())
    kinds = sorted({k.split(" ")[0] for k, _ in by_kind})
    outcome_rows: list[tuple[str, object]] = []
    for kind in kinds:
        cells = {k.split(" ")[1]: v for k, v in by_kind if k.split(" ")[0] == kind}
        outcome_rows.append(
            (kind, ", ".join(f"{outcome} {cells[outcome]}" for outcome in sorted(cells)))
        )
    fault_rows: list[tuple[str, object]] = [(k, v) for k, v in figures["faults"].items()]
    fault_rows += [(f"{k} (skipped)", why) for k, why in result.skipped.items()]
    gap_rows: list[tuple[str, object]] = [
        ("overall", f"{figures['longest unavailability s']} s"),
        *[
            (f"around a {k}", f"{v} s")
            for k, v in figures["longest unavailability by fault s"].items()
        ],
    ]
    run_rows: list[tuple[str, object]] = [
        ("seed", o.seed),
        ("clients", o.clients),
        ("seconds", o.seconds),
        ("read mode", o.read_mode),
        ("faults", ",".join(o.faults) or "none"),
        ("server mutant", o.server_mutant or "none (the real code)"),
        ("disk", "diskless" if o.diskless else "durable"),
        ("operations", f"{figures['operations']} ({figures['operations per second']}/s)"),
        ("answered updates", figures["answered updates"]),
        ("wall time", f"{figures['wall s']} s (checks {figures['check s']} s)"),
        ("settled in", f"{figures['settle s']} s"),
        ("directory", str(result.directory)),
    ]
    faults_list = "".join(
        f"<tr><td>{(f.start_ns - result.started_ns) / 1e9:.2f}</td>"
        f"<td>{'' if f.end_ns is None else f'{(f.end_ns - result.started_ns) / 1e9:.2f}'}</td>"
        f"<td>{_e(f.kind)}</td><td>{_e(','.join(map(str, f.replicas)))}</td>"
        f"<td>{_e(f.target)}</td><td>{_e(f.detail)}</td>"
        f"<td>{'' if g is None else f'{g.seconds:.2f}'}</td></tr>"
        for f, g in result.gaps_per_fault
    )
    legend = "".join(
        f'<span><i style="background:{c}"></i>{_e(k)}</span>' for k, c in FAULT_COLOURS.items()
    )
    problems = "".join(f"<li>{_e(p)}</li>" for p in result.problems)
    error = f"<p><b>could not run:</b> {_e(result.error)}</p>" if result.error else ""
    data = json.dumps({"figures": figures, "checks": [c.to_json() for c in result.checks]})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>vrref nemesis: {_e(result.status.upper())} (seed {o.seed})</title>
<style>{CSS}</style></head>
<body>
<header><h1>vrref nemesis <span class="badge {cls}">{_e(result.status.upper())}</span></h1>
<div class="mono">seed {o.seed}, {o.clients} clients, {o.seconds:g} s, faults
{_e(",".join(o.faults) or "none")}, read mode {_e(o.read_mode)},
{_e(o.server_mutant or "the real code")}{", diskless" if o.diskless else ""};
exit status {result.exit_status}</div></header>
<main>
{error}
<h2>Checks</h2>
{_checks(result)}
{f"<h2>Problems of the run</h2><ul>{problems}</ul>" if problems else ""}
<h2>Timeline</h2>
<div class="legend">{legend}<span><i style="background:#ffcdd2"></i>no answered update for
{GAP_SHOWN_S:g} s or more</span>
<label><input type="checkbox" id="byclient" checked> colour updates by client</label></div>
{_timeline(result)}
<h2>Figures</h2>
<div class="tables">
{_table("run", run_rows)}
{_table("operations by kind and outcome", outcome_rows)}
{_table("update rcodes", list(figures["update rcodes"].items()))}
{_table("faults by kind", fault_rows or [("none", "")])}
{_table("longest unavailability", gap_rows)}
</div>
<h2>Faults</h2>
<table><tr><th>start s</th><th>end s</th><th>fault</th><th>replicas</th><th>target</th>
<th>detail</th><th>longest gap s</th></tr>{faults_list}</table>
<script type="application/json" id="data">{_e(data)}</script>
<script>{JS}</script>
</main></body></html>
"""


def write(result: NemesisResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(result), encoding="utf-8")
