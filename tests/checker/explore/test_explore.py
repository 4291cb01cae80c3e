"""The explorer on toy models whose answers are known in closed form or from networkx."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checker.explore import search as explore_module
from checker.explore.search import (
    EXIT_CODES,
    ExploreConfig,
    Explorer,
    GraphTooLarge,
    Kind,
    NondeterministicModel,
    Property,
    PropertyLike,
    canonical_bytes,
    explore,
    replay,
    shortest_path_to,
    stable_fingerprint,
)

Cell = tuple[int, int]


class Grid:
    """A walk on a size x size grid from (0, 0), moving right or up: size**2 states,
    1 + 2 * size * (size - 1) generated, depth 2 * size - 1, one deadlock (the far corner)."""

    def __init__(self, size: int, extra: Sequence[Property[Cell]] = ()) -> None:
        self.size = size
        self.extra = list(extra)

    def init_states(self) -> list[Cell]:
        return [(0, 0)]

    def actions(self, state: Cell) -> Iterator[str]:
        yield "right"
        yield "up"

    def next_state(self, state: Cell, action: str) -> Cell | None:
        x, y = state
        if action == "right":
            return (x + 1, y) if x + 1 < self.size else None
        return (x, y + 1) if y + 1 < self.size else None

    def properties(self) -> Sequence[PropertyLike[Cell]]:
        return [
            Property.always("the walker stays on the grid", lambda s: max(s) < self.size),
            Property.sometimes("the far corner is reached", lambda s: s == (self.size - 1,) * 2),
            *self.extra,
        ]


class Counter:
    """An unbounded counter (never exhausts), optionally bounded by within_bounds."""

    def __init__(self, bound: int | None = None) -> None:
        self.bound = bound

    def init_states(self) -> list[int]:
        return [0]

    def actions(self, state: int) -> list[str]:
        return ["inc", "double"]

    def next_state(self, state: int, action: str) -> int | None:
        return state + 1 if action == "inc" else 2 * state

    def properties(self) -> list[Property[int]]:
        return [Property.sometimes("a negative number is reached", lambda s: s < 0)]

    def within_bounds(self, state: int) -> bool:
        return self.bound is None or state <= self.bound


@dataclass(frozen=True)
class GraphModel:
    """A model over an explicit multigraph: actions are edge indices."""

    edges: tuple[tuple[int, int], ...]
    initial: tuple[int, ...]
    props: tuple[Property[int], ...] = ()
    forbidden: frozenset[int] = field(default_factory=frozenset)

    def init_states(self) -> list[int]:
        return list(self.initial)

    def actions(self, state: int) -> range:
        return range(len(self.edges))

    def next_state(self, state: int, action: int) -> int | None:
        source, target = self.edges[action]
        return target if source == state else None

    def properties(self) -> tuple[Property[int], ...]:
        return self.props

    def within_bounds(self, state: int) -> bool:
        return state not in self.forbidden


def quiet(**kwargs: object) -> ExploreConfig:
    return ExploreConfig(progress_seconds=None, **kwargs)  # type: ignore[arg-type]


def assert_valid_trace(model: Grid, trace: Sequence[explore_module.Step[Cell, str]]) -> None:
    assert trace[0].action is None and trace[0].state in model.init_states()
    for before, after in itertools.pairwise(trace):
        assert after.action is not None
        assert model.next_state(before.state, after.action) == after.state


# ---------------------------------------------------------------------- counts


@pytest.mark.parametrize("strategy", ["bfs", "dfs"])
@pytest.mark.parametrize("size", [1, 2, 5])
def test_grid_counts_match_closed_form(strategy: str, size: int) -> None:
    result = explore(Grid(size), quiet(strategy=strategy))
    assert result.distinct == size * size
    assert result.generated == 1 + 2 * size * (size - 1)
    assert result.deadlocks == 1
    assert result.complete and result.stopped_by is None and result.queue == 0
    assert result.verdict == "ok"
    if strategy == "bfs":
        assert result.depth == 2 * size - 1


@st.composite
def graph_models(draw: st.DrawFn) -> GraphModel:
    node_count = draw(st.integers(1, 9))
    node = st.integers(0, node_count - 1)
    edges = draw(st.lists(st.tuples(node, node), max_size=25))
    initial = draw(st.lists(node, min_size=1, max_size=3))
    forbidden = draw(st.frozensets(node, max_size=2))
    return GraphModel(tuple(edges), tuple(initial), forbidden=forbidden)


def reference_counts(model: GraphModel) -> tuple[int, int, int, int, dict[int, int]]:
    """(distinct, generated, depth, pruned, distance) computed independently of the explorer."""
    graph = nx.MultiDiGraph()
    graph.add_nodes_from(range(10))
    graph.add_edges_from(model.edges)
    allowed = [s for s in model.initial if s not in model.forbidden]
    distance: dict[int, int] = {s: 0 for s in allowed}
    queue = deque(allowed)
    while queue:
        s = queue.popleft()
        for _, t in graph.out_edges(s):
            if t not in model.forbidden and t not in distance:
                distance[t] = distance[s] + 1
                queue.append(t)
    out_edges = [t for s in distance for _, t in graph.out_edges(s)]
    generated = len(model.initial) + len(out_edges)
    pruned = sum(s in model.forbidden for s in model.initial) + sum(
        t in model.forbidden for t in out_edges
    )
    depth = 1 + max(distance.values()) if distance else 0
    return len(distance), generated, depth, pruned, distance


@settings(max_examples=150, deadline=None)
@given(graph_models())
def test_counts_match_an_independent_bfs(model: GraphModel) -> None:
    distinct, generated, depth, pruned, _ = reference_counts(model)
    for strategy in ("bfs", "dfs"):
        result = explore(model, quiet(strategy=strategy))
        assert (result.distinct, result.generated, result.pruned) == (distinct, generated, pruned)
        if strategy == "bfs":
            assert result.depth == depth


@settings(max_examples=150, deadline=None)
@given(graph_models(), st.integers(0, 8))
def test_bfs_counterexamples_are_shortest(model: GraphModel, target: int) -> None:
    _, _, _, _, distance = reference_counts(model)
    checked = GraphModel(
        model.edges,
        model.initial,
        (Property.always(f"node {target} is never reached", lambda s: s != target),),
        model.forbidden,
    )
    result = explore(checked, quiet())
    if target not in distance:
        assert result.verdict == "ok"
        return
    assert result.verdict == "violation" and result.stopped_by == "violation"
    (violation,) = result.violations
    assert violation.trace is not None
    assert len(violation.trace) == distance[target] + 1
    assert violation.trace[-1].state == target
    steps = violation.trace
    assert steps[0].state in model.initial
    for before, after in itertools.pairwise(steps):
        assert checked.next_state(before.state, after.action) == after.state  # type: ignore[arg-type]


# ---------------------------------------------------------------------- properties


def test_shortest_counterexample_on_the_grid() -> None:
    model = Grid(6, [Property.always("x + y stays below 5", lambda s: sum(s) < 5)])
    result = explore(model, quiet())
    assert result.verdict == "violation"
    assert [p.holds for p in result.properties] == [True, False, False]
    (violation,) = result.violations
    assert violation.trace is not None and len(violation.trace) == 6
    assert sum(violation.trace[-1].state) == 5
    assert_valid_trace(model, violation.trace)
    # DFS also finds it, with a valid (not necessarily shortest) trace.
    dfs = explore(model, quiet(strategy="dfs"))
    (found,) = dfs.violations
    assert found.trace is not None and len(found.trace) >= 6
    assert_valid_trace(model, found.trace)


def test_keep_going_finds_one_violation_per_property() -> None:
    model = Grid(
        4,
        [
            Property.always("x stays below 2", lambda s: s[0] < 2),
            Property.always("y stays below 3", lambda s: s[1] < 3),
        ],
    )
    first = explore(model, quiet())
    assert len(first.violations) == 1 and first.stopped_by == "violation"
    every = explore(model, quiet(stop_on_violation=False))
    assert [len(p.trace or ()) for p in every.violations] == [3, 4]
    assert every.distinct == 16 and every.complete


def test_an_unreached_sometimes_is_vacuous_and_fails() -> None:
    model = Grid(3, [Property.sometimes("the walker leaves the grid", lambda s: max(s) > 5)])
    result = explore(model, quiet())
    assert result.verdict == "vacuous" and EXIT_CODES[result.verdict] == 1
    assert [p.name for p in result.unreached] == ["the walker leaves the grid"]
    witness = result.properties[1]
    assert witness.holds and witness.trace is not None and len(witness.trace) == 5


def test_plain_tuple_properties_are_accepted() -> None:
    class Tupled(Grid):
        def properties(self) -> Sequence[PropertyLike[Cell]]:
            return [("y stays below 2", "always", lambda s: s[1] < 2)]

    result = explore(Tupled(4), quiet())
    assert result.properties[0].kind is Kind.ALWAYS and not result.properties[0].holds
    with pytest.raises(ValueError):
        explore_module.as_property(("bad", "often", lambda s: True))


# ---------------------------------------------------------------------- limits


def test_depth_max_counts_states_like_depth() -> None:
    result = explore(Grid(6), quiet(depth_max=3))
    assert result.distinct == 6  # x + y <= 2
    assert result.depth == 3
    only_initial = explore(Grid(6), quiet(depth_max=1))
    assert (only_initial.distinct, only_initial.generated, only_initial.depth) == (1, 1, 1)


def test_state_count_max_stops_with_unknown() -> None:
    result = explore(Counter(), quiet(state_count_max=500))
    assert result.distinct == 500 and result.stopped_by == "state_count_max"
    assert not result.complete and result.verdict == "unknown" and EXIT_CODES["unknown"] == 2


def test_an_interrupted_search_is_unknown_even_when_all_looks_well() -> None:
    class Near(Grid):
        def properties(self) -> Sequence[PropertyLike[Cell]]:
            return [Property.sometimes("(1, 1) is reached", lambda s: s == (1, 1))]

    result = explore(Near(10), quiet(state_count_max=60))
    assert result.properties[0].holds and not result.violations
    assert result.verdict == "unknown" and not result.complete
    finished = explore(Near(10), quiet(depth_max=4))
    assert finished.verdict == "ok" and finished.complete  # a finished bounded search


def test_time_limit_stops_an_endless_model() -> None:
    result = explore(Counter(), quiet(time_seconds_max=0.2))
    assert result.stopped_by == "time_seconds_max" and result.verdict == "unknown"
    assert 0.2 <= result.elapsed_seconds < 2.0
    assert result.distinct > 100


def test_within_bounds_prunes_like_a_tlc_constraint() -> None:
    result = explore(Counter(bound=100), quiet())
    assert result.distinct == 101 and result.complete
    # inc from 100 and double from 51..100 leave the bounds; counted, never stored.
    assert result.pruned == 1 + 50
    assert result.generated == 1 + 2 * 101
    assert result.verdict == "vacuous"


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        ExploreConfig(depth_max=0)
    with pytest.raises(ValueError):
        ExploreConfig(strategy="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ExploreConfig(time_seconds_max=0)
    with pytest.raises(ValueError, match="canonical"):
        Explorer(Grid(2), quiet(symmetry=True))


def test_progress_lines_go_to_the_stream() -> None:
    stream = io.StringIO()
    explore(Grid(12), ExploreConfig(progress_seconds=0.0), progress=stream)
    lines = stream.getvalue().splitlines()
    assert lines and all("states/s" in line and "queue" in line for line in lines)
    assert "144 distinct" in lines[-1]
    silent = io.StringIO()
    explore(Grid(12), ExploreConfig(progress_seconds=60.0), progress=silent)
    assert silent.getvalue() == ""


# ---------------------------------------------------------------------- random walks


class Lottery(Grid):
    """A 20 x 20 grid where reaching (7, 1) is the rare violation."""

    def properties(self) -> Sequence[PropertyLike[Cell]]:
        return [Property.always("(7, 1) is never reached", lambda s: s != (7, 1))]


def test_random_walks_are_reproducible_and_replayable() -> None:
    config = quiet(strategy="random", walk_count=400, walk_depth_max=30, seed=11)
    first = explore(Lottery(20), config)
    again = explore(Lottery(20), config)
    assert first.to_json()["properties"] == again.to_json()["properties"]
    assert (first.distinct, first.generated) == (again.distinct, again.generated)
    (violation,) = first.violations
    assert violation.walk_seed is not None and violation.trace is not None
    assert violation.trace[-1].state == (7, 1)
    alone = explore(Lottery(20), quiet(strategy="random", walk_count=1, seed=violation.walk_seed))
    assert alone.violations[0].trace == violation.trace
    other = explore(
        Lottery(20), quiet(strategy="random", walk_count=1, seed=violation.walk_seed + 1)
    )
    assert not other.violations or other.violations[0].trace != violation.trace


def test_random_walks_respect_their_depth_and_count() -> None:
    result = explore(Counter(), quiet(strategy="random", walk_count=7, walk_depth_max=12))
    assert result.depth == 12
    assert result.generated == 7 * 12  # one initial state and 11 successors a walk
    assert result.complete and result.verdict == "vacuous"


# ---------------------------------------------------------------------- graph and paths


def test_graphml_export_round_trips(tmp_path: Path) -> None:
    result = explore(Grid(4), quiet(graph=True))
    out = tmp_path / "grid.graphml"
    result.write_graphml(out)
    graph = nx.read_graphml(out)
    assert graph.number_of_nodes() == 16
    assert graph.number_of_edges() == result.generated - 1
    depths = nx.get_node_attributes(graph, "depth")
    assert max(depths.values()) == result.depth == 7
    assert sum(nx.get_node_attributes(graph, "initial").values()) == 1
    assert {a for *_, a in graph.edges(data="action")} == {"right", "up"}


def test_graph_is_refused_past_the_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(explore_module, "GRAPH_STATE_COUNT_MAX", 10)
    result = explore(Grid(4), quiet(graph=True))
    assert result.graph is None and result.distinct == 16
    with pytest.raises(GraphTooLarge):
        result.write_graphml(tmp_path / "nope.graphml")
    assert explore(Grid(3), quiet(graph=True)).graph is not None


def test_shortest_path_to_a_predicate() -> None:
    trace = shortest_path_to(Grid(5), lambda s: s == (2, 3))
    assert trace is not None and len(trace) == 6 and trace[-1].state == (2, 3)
    assert_valid_trace(Grid(5), trace)
    assert shortest_path_to(Grid(5), lambda s: s == (9, 9)) is None
    doubling = shortest_path_to(Counter(), lambda s: s == 64)  # endless: stops at the goal
    assert doubling is not None and len(doubling) == 8  # 0 1 2 4 8 16 32 64


def test_replay_runs_actions_and_names_a_disabled_one() -> None:
    trace = replay(Grid(3), ["up", "right", "right"])
    assert trace[-1].state == (2, 1)
    with pytest.raises(ValueError, match="step 3"):
        replay(Grid(3), ["right", "right", "right"])


def test_a_nondeterministic_model_is_detected() -> None:
    class Flaky(Grid):
        flaky = False

        def next_state(self, state: Cell, action: str) -> Cell | None:
            if self.flaky and action == "up":
                return None  # changed its mind since the search
            return super().next_state(state, action)

    model = Flaky(3)
    explorer = Explorer(model, quiet())
    assert explorer.run().distinct == 9
    corner = explorer.key((2, 2))
    assert explorer.trace_to(corner)[-1].state == (2, 2)
    model.flaky = True
    with pytest.raises(NondeterministicModel):
        explorer.trace_to(corner)


def test_json_is_serializable_and_has_the_counts() -> None:
    result = explore(Grid(3, [Property.always("y < 1", lambda s: s[1] < 1)]), quiet())
    document = json.loads(json.dumps(result.to_json()))
    assert {"distinct", "generated", "depth", "verdict", "properties"} <= set(document)
    assert document["verdict"] == "violation"
    assert document["properties"][2]["trace"][-1] == {"action": "up", "state": "(0, 1)"}


# ---------------------------------------------------------------------- fingerprints


class Colour:
    def __init__(self, name: str) -> None:
        self.name = name


@dataclass(frozen=True)
class Tagged:
    value: int
    cache: str = field(default="", compare=False)


def test_canonical_encoding_separates_what_differs_and_merges_what_is_equal() -> None:
    distinct_values: list[object] = [
        1, True, "1", 1.0, b"1", None, (1,), [1], frozenset({1}), {1: 1}, (1, 2), (2, 1), ("1",),
    ]  # fmt: skip
    encodings = {canonical_bytes(v) for v in distinct_values}
    assert len(encodings) == len(distinct_values)
    words = [f"w{i}" for i in range(200)]
    assert stable_fingerprint(frozenset(words)) == stable_fingerprint(frozenset(reversed(words)))
    assert canonical_bytes({"a": 1, "b": 2}) == canonical_bytes({"b": 2, "a": 1})
    assert stable_fingerprint(Tagged(1, "x")) == stable_fingerprint(Tagged(1, "y"))
    assert stable_fingerprint(Tagged(1)) != stable_fingerprint(Tagged(2))
    with pytest.raises(TypeError, match="fingerprint"):
        stable_fingerprint(Colour("red"))
    assert 0 <= stable_fingerprint(words) < 2**64


def test_fingerprints_are_stable_across_processes() -> None:
    value = (frozenset({"prepared", "aborted", ("rm", 3)}), Kind.ALWAYS, "x")
    program = (
        "from checker.explore.search import stable_fingerprint, Kind;"
        "print(stable_fingerprint((frozenset({'prepared', 'aborted', ('rm', 3)}),"
        " Kind.ALWAYS, 'x')))"
    )
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(int(done.stdout))
    assert outputs == {stable_fingerprint(value)}


def test_model_fingerprint_hook_is_used() -> None:
    class Coarse(Grid):
        def fingerprint(self, state: Cell) -> int:
            return state[0]  # merges every column into one state

    result = explore(Coarse(4), quiet())
    assert result.distinct == 4


def test_symmetry_merges_orbits() -> None:
    class Mirror(Grid):
        def canonical(self, state: Cell) -> Cell:
            return (min(state), max(state))

    plain = explore(Mirror(5), quiet())
    reduced = explore(Mirror(5), quiet(symmetry=True))
    assert (plain.distinct, reduced.distinct) == (25, 15)
    assert reduced.depth == plain.depth == 9
    model = Mirror(5, [Property.always("x stays below 3", lambda s: s[0] < 3)])
    (violation,) = explore(model, quiet(symmetry=True)).violations
    assert violation.trace is not None and len(violation.trace) == 4
    assert_valid_trace(model, violation.trace)
