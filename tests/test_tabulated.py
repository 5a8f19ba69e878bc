"""Tabulated benchmarks: a grid trained once, searches replayed from it."""
from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest
import yaml

from hypersweep import search_space, tabulated
from hypersweep.counts import param_counts
from hypersweep.tasks import load_config

SPACE = {
    "experiment": "tiny",
    "task": {"name": "teacher", "dim_x": 2, "dim_i": 4, "seed": 0, "train_instances": 32, "val_instances": 16,
             "test_instances": 16, "points": 8},
    "model": {"activation": "tanh"},
    "train": {"batch_size": 16, "epochs": 1},
    "objective": {"type": "constrained", "metric": "val_error", "count": "params_primary", "target": 0.5},
    "sampler": {"name": "tpe", "seed": 0},
    "budget": {"trials": 20},
    "families": {"standard": {"primary": {"width": {"low": 1, "high": 3}, "depth": {"choices": [1, 2]}}}},
}


def load(tmp_path, **changes) -> search_space.SweepSpec:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**SPACE, **changes}))
    return search_space.load(str(path))


def synthetic_table(spec: search_space.SweepSpec, error) -> pd.DataFrame:
    """A table without training: `error(width, depth)` as every point's val_error."""
    (space,) = spec.studies
    rows = []
    for values in tabulated.grid_points(space):
        width, depth = values["model.primary.width"], values["model.primary.depth"]
        count = param_counts(load_config(space.config(values)).model, *space.dims).primary
        rows.append({"study": space.study, "key": tabulated.config_key(space.config(values)), "status": "ok",
                     "val_error": error(width, depth), "params_primary": count, "params_total": count})
    return pd.DataFrame(rows)


WIDE = {"standard": {"primary": {"width": {"low": 1, "high": 64, "log": True}, "depth": {"choices": [1, 2, 3]}}}}


def needs_width_20(width: int, depth: int) -> float:
    """Meets 0.5 from width 20 at depth >= 2: the answer is the depth-2 net of width 20 or 21."""
    return 0.4 if depth >= 2 and width >= 20 else 0.9


def test_build_trains_every_grid_point_once(tmp_path):
    spec = load(tmp_path)
    table = tabulated.build(spec, log=lambda _: None)
    (space,) = spec.studies
    assert len(table) == space.grid_size() == 6
    assert table["key"].is_unique and set(table["status"]) == {"ok"}
    assert sorted(zip(table["config.model.primary.width"], table["config.model.primary.depth"], strict=True)) == [
        (w, d) for w in (1, 2, 3) for d in (1, 2)]
    for _, row in table.iterrows():
        values = {"model.primary.width": row["config.model.primary.width"],
                  "model.primary.depth": row["config.model.primary.depth"]}
        assert row["key"] == tabulated.config_key(space.config(values))
        assert row["params_primary"] == param_counts(load_config(space.config(values)).model, *space.dims).primary
        assert 0 < row["val_error"] < math.inf


def test_the_build_cli_writes_the_same_table_as_build(tmp_path):
    spec = load(tmp_path)
    assert tabulated.main(["build", str(tmp_path / "space.yaml"), str(tmp_path / "t.parquet")]) == 0
    written = pd.read_parquet(tmp_path / "t.parquet").drop(columns="wall_s")
    pd.testing.assert_frame_equal(written, tabulated.build(spec, log=lambda _: None).drop(columns="wall_s"))


@pytest.mark.parametrize("objective", [
    {"type": "constrained", "metric": "val_error", "count": "params_primary", "target": 0.5},
    {"type": "pareto", "metric": "val_error", "count": "params_primary", "targets": [0.8, 0.5]},
])
@pytest.mark.parametrize("sampler", ["tpe", "random", "nsga2"])
def test_a_replay_stops_at_an_answer_within_10_percent(tmp_path, objective, sampler):
    spec = load(tmp_path, objective=objective, families=WIDE)
    (space,) = spec.studies
    table = synthetic_table(spec, needs_width_20)
    best = tabulated.smallest_meeting(table, "val_error", "params_primary", 0.5)
    study = tabulated.replay(spec, space, table, sampler=sampler, seed=1, max_trials=1000)
    tried = study.trials  # the study holds only what was tried: passed-over proposals never reach it
    assert study.user_attrs["found_at"] == len(tried)
    assert len({tuple(sorted(t.params.items())) for t in tried}) == len(tried)  # none tried twice
    last = study.trials[-1].params
    assert last["model.primary.depth"] == 2 and last["model.primary.width"] in (20, 21)
    assert best == 20 * 6 + 20 + 20 * 20 + 20 + 20 + 1
    if objective["type"] == "constrained":  # told as a sweep tells it: count, constraint error - target
        rows = table.set_index("key")
        first = study.trials[0]
        row = rows.loc[tabulated.config_key(space.config(first.params))]
        assert first.values == [row["params_primary"]]
        assert first.constraints == {"error_target": pytest.approx(row["val_error"] - 0.5)}
        smallest_meeting = math.inf
        for t in tried:  # nothing trained that is no smaller than a model known to meet the target
            row = rows.loc[tabulated.config_key(space.config(t.params))]
            assert row["params_primary"] < smallest_meeting
            if row["val_error"] <= 0.5:
                smallest_meeting = row["params_primary"]
    else:
        assert len(study.directions) == 2 and len(study.trials[0].values) == 2


def test_same_seed_same_search_and_a_capped_search_gives_up(tmp_path):
    spec = load(tmp_path, families=WIDE)
    (space,) = spec.studies
    table = synthetic_table(spec, needs_width_20)
    first, again = (tabulated.replay(spec, space, table, seed=0, max_trials=25) for _ in range(2))
    assert len(first.trials) > 5 and [t.params for t in first.trials] == [t.params for t in again.trials]
    assert tabulated.trials_to_find(spec, space, table, sampler="random", seed=0, max_trials=1) is None
    assert tabulated.median_trials([1, None, None]) == math.inf
    assert tabulated.median_trials([3, 1, None]) == 3


def is_answer(params: dict) -> bool:
    """Within 10% of the smallest net meeting `needs_width_20`'s target: depth 2, width 20 or 21."""
    return params["model.primary.depth"] == 2 and params["model.primary.width"] in (20, 21)


def test_a_batched_replay_finds_the_answer_counting_trials_one_by_one(tmp_path):
    spec = load(tmp_path, families=WIDE)
    (space,) = spec.studies
    study = tabulated.replay(spec, space, synthetic_table(spec, needs_width_20), seed=1, max_trials=1000, batch=8)
    tried, found_at = study.trials, study.user_attrs["found_at"]
    assert len(tried) % 8 == 0 and len(tried) - 8 < found_at <= len(tried)  # the answer's whole batch was told
    assert is_answer(tried[found_at - 1].params)
    assert not any(is_answer(t.params) for t in tried[:found_at - 1])  # found where it was first tried
    assert len({tuple(sorted(t.params.items())) for t in tried}) == len(tried)  # none tried twice


@pytest.mark.parametrize(("sampler", "seed", "found_at"), [("tpe", 1, 22), ("tpe", 2, 6), ("nsga2", 0, 44),
                                                           ("nsga2", 1, 20)])
def test_batches_of_one_replay_as_before_batches(tmp_path, sampler, seed, found_at):
    spec = load(tmp_path, families=WIDE)
    (space,) = spec.studies
    # found_at: what replay gave (one ask, one tell) before it had batches.
    study = tabulated.replay(spec, space, synthetic_table(spec, needs_width_20), sampler, seed, 1000, batch=1)
    assert study.user_attrs["found_at"] == len(study.trials) == found_at


def test_diverged_points_are_failed_trials(tmp_path):
    spec = load(tmp_path)
    (space,) = spec.studies
    table = synthetic_table(spec, lambda w, d: 0.1 if (w, d) == (3, 2) else math.nan)
    table.loc[table["val_error"].isna(), "status"] = "diverged"
    study = tabulated.replay(spec, space, table, sampler="random", seed=0, max_trials=100)
    states = {t.state for t in study.trials[:-1]}
    assert states <= {optuna.trial.TrialState.FAIL}
    assert study.trials[-1].params == {"model.primary.width": 3, "model.primary.depth": 2}


def test_no_answer_and_a_stale_table_are_errors(tmp_path):
    spec = load(tmp_path)
    (space,) = spec.studies
    with pytest.raises(ValueError, match=r"no architecture in the table reaches val_error <= 0\.5"):
        tabulated.replay(spec, space, synthetic_table(spec, lambda w, d: 0.9))
    stale = load(tmp_path, train={**SPACE["train"], "lr": 0.01})
    with pytest.raises(KeyError, match="not in the table"):
        tabulated.replay(stale, stale.studies[0], synthetic_table(spec, lambda w, d: 0.1 * w))


@pytest.mark.slow  # spawns two worker processes, each importing torch
def test_replay_cli_prints_each_studys_median(tmp_path, capsys):
    spec = load(tmp_path, families=WIDE)
    synthetic_table(spec, needs_width_20).to_parquet(tmp_path / "t.parquet")
    code = tabulated.main(["replay", str(tmp_path / "space.yaml"), str(tmp_path / "t.parquet"),
                           "--sampler", "random", "--repetitions", "3", "--jobs", "2"])
    assert code == 0
    costs = tabulated.search_cost(spec, spec.studies[0], pd.read_parquet(tmp_path / "t.parquet"), 3, "random")
    out = capsys.readouterr().out
    assert out.startswith("tiny-standard: median ") and out.rstrip().endswith(f": {costs}")  # same in parallel


def test_replay_cli_asks_batches(tmp_path, capsys):
    spec = load(tmp_path, families=WIDE)
    synthetic_table(spec, needs_width_20).to_parquet(tmp_path / "t.parquet")
    assert tabulated.main(["replay", str(tmp_path / "space.yaml"), str(tmp_path / "t.parquet"),
                           "--sampler", "random", "--repetitions", "3", "--batch", "8"]) == 0
    costs = tabulated.search_cost(spec, spec.studies[0], pd.read_parquet(tmp_path / "t.parquet"), 3, "random",
                                  batch=8)
    assert costs != tabulated.search_cost(spec, spec.studies[0], pd.read_parquet(tmp_path / "t.parquet"), 3,
                                          "random")  # batches of 8 search differently
    assert capsys.readouterr().out.rstrip().endswith(f": {costs}")
