"""The Optuna side of a sweep, without Ray: real SQLite studies, real Parquet rows."""
import math

import numpy as np
import optuna
import yaml

from hypersweep.results import ResultStore, load_trials
import pytest

from hypersweep.search import (Bound, Exhausted, Search, model_count, open_study, params_key, rdb_storage, reconcile,
                                tpe_best)
from hypersweep.search_space import load

TEACHER = {"name": "teacher", "dim_x": 2, "dim_i": 4, "train_instances": 50, "points": 8}


def load_space(tmp_path, objective=None, sampler=None, **family):
    data = {"experiment": "s", "task": TEACHER, "model": {"activation": "tanh"}, "budget": {"trials": 6, "epochs": 2},
            "families": {"standard": family or {"primary": {"width": {"low": 1, "high": 8}, "depth": 1}}}}
    if objective:
        data["objective"] = objective
    if sampler:
        data["sampler"] = sampler
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load(str(path))


def trained(error: float, size: int) -> dict:
    """What a trial that trained to the end reports."""
    return {"val_error": error, "test_error": error, "params_primary": size, "params_total": size,
            "epoch": 2, "final": True, "status": "ok"}


def test_a_trial_running_when_the_driver_died_is_marked_interrupted_and_queued_again(tmp_path):
    spec = load_space(tmp_path)
    space = spec.studies[0]
    storage = rdb_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = open_study(spec, space, storage, "sweep-1", 6)
    search = Search(study, space, spec.objective, model_count(spec, space))
    finished, running = search.ask(), search.ask()
    search.tell(finished, "ok", trained(0.2, 30))
    # The driver dies here: `running` is still RUNNING in the study, `finished` has no row yet.
    store, lines = ResultStore(str(tmp_path / "out")), []
    done = reconcile(spec, space, storage, store, lines.append)

    assert done == 1 and list(load_trials(str(tmp_path / "out"))["trial"]) == [finished.number]
    trials = optuna.load_study(study_name=space.study, storage=storage).trials
    interrupted = trials[running.number]
    assert interrupted.state == optuna.trial.TrialState.FAIL
    assert interrupted.user_attrs["status"] == "interrupted"
    assert f"trial #{running.number} was interrupted: queued again" in "\n".join(lines)
    resumed = optuna.load_study(study_name=space.study, storage=storage)
    retry = Search(resumed, space, spec.objective, model_count(spec, space)).ask()  # the resumed sweep's first
    assert retry.params == running.params
    assert resumed.trials[retry.number].user_attrs["retry_of"] == running.number


SPACE = {"primary": {"width": {"low": 1, "high": 64, "log": True}, "depth": {"choices": [1, 2]}},
         "train": {"lr": {"low": 0.001, "high": 0.01, "log": True}}}


def teacher_result(params: dict) -> dict:
    """A made-up but deterministic result: the error falls with the size and is best near lr 3e-3."""
    size = params["model.primary.width"] * params["model.primary.depth"]
    error = size ** -0.5 * (1 + abs(math.log10(params["train.lr"] / 3e-3)))
    return trained(error, size)


def tpe() -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(n_startup_trials=5, seed=3, multivariate=True)


def searched(tmp_path, objective: dict, trials: int, bound: Bound, name: str = "optuna") -> Search:
    spec = load_space(tmp_path, objective=objective, **SPACE)
    space = spec.studies[0]
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / name}.db", sampler=tpe(),
                                directions=["minimize"] * (2 if objective["type"] == "pareto" else 1))
    search = Search(study, space, spec.objective, model_count(spec, space), bound)
    for k in range(trials):
        trial = search.ask()
        result = teacher_result(trial.params)
        search.tell(trial, "pruned" if k % 7 == 3 else "ok", result)
    return search


def test_below_its_bound_the_search_proposes_what_plain_tpe_proposes(tmp_path):
    objective = {"type": "constrained", "target": 0.3}
    bounded = searched(tmp_path, objective, 10, Bound(limit=12, best=4, slack=5), "bounded")
    plain = searched(tmp_path, objective, 10, None, "plain")
    assert [t.params for t in bounded.study.trials] == [t.params for t in plain.study.trials]
    assert len(bounded.modelled) == 10  # every trained trial, none cut yet


def test_past_its_bound_tpe_models_the_best_and_the_latest_trials_and_proposes_as_tpe_on_them(tmp_path):
    bound = Bound(limit=12, best=4, slack=5)
    search = searched(tmp_path, {"type": "constrained", "target": 0.3}, 26, bound)
    assert bound.limit <= len(search.modelled) <= bound.limit + bound.slack  # cut back to 12, grown by at most 5
    trials = search.study.trials
    feasible = sorted((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE
                       and t.constraints["error_target"] <= 0), key=lambda t: (t.value, t.number))
    modelled = {params_key(t.params) for t in search.modelled}
    assert {params_key(t.params) for t in feasible[:bound.best]} <= modelled  # the smallest meeting the target stay
    assert params_key(trials[-1].params) in modelled  # and so does the latest trial
    # A new driver (same seed) trims the study the same way, and its next proposal is plain TPE's
    # on exactly the trials it kept.
    resumed = Search(optuna.load_study(study_name=search.study.study_name, storage=f"sqlite:///{tmp_path}/optuna.db",
                                       sampler=tpe()), search.space, search.objective, search.count, bound)
    kept = resumed.modelled
    assert len(kept) == bound.limit
    assert {params_key(t.params) for t in feasible[:bound.best]} <= {params_key(t.params) for t in kept}
    twin = optuna.create_study(sampler=tpe(), directions=["minimize"])
    twin.add_trials(kept)
    for _ in range(3):
        expected, proposal = twin.ask(), resumed.view.ask()  # the view: what the search's sampler proposes on
        resumed.suggest(expected)
        resumed.suggest(proposal)
        assert proposal.params == expected.params
        twin.tell(expected, state=optuna.trial.TrialState.FAIL)
        resumed.view.tell(proposal, state=optuna.trial.TrialState.FAIL)


def test_a_two_objective_tie_at_the_cut_is_kept_whole_for_tpe_to_break(tmp_path):
    bound = Bound(limit=10, best=3, slack=4)
    search = searched(tmp_path, {"type": "pareto", "targets": [0.3]}, 30, bound)
    complete = [t for t in search.trained if t.state == optuna.trial.TrialState.COMPLETE]
    values = np.array([t.values for t in complete])
    front = {params_key(t.params) for t, v in zip(complete, values, strict=True)
             if not ((values <= v).all(1) & (values < v).any(1)).any()}
    assert len(front) > bound.best  # the front is wider than the best kept: a tie at the cut
    best = tpe_best(complete, search.study.directions, bound.best)
    assert {params_key(complete[k].params) for k in best} == front  # all of the front, not the most accurate 3
    assert front <= {params_key(t.params) for t in search.modelled}


def test_a_trial_interrupted_before_its_parameters_were_set_is_not_queued(tmp_path):
    spec = load_space(tmp_path)
    space = spec.studies[0]
    storage = rdb_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = open_study(spec, space, storage, "sweep-1", 6)
    half_asked = study.ask()  # the driver died before setting its parameters
    lines = []
    assert reconcile(spec, space, storage, ResultStore(str(tmp_path / "out")), lines.append) == 0
    (only,) = optuna.load_study(study_name=space.study, storage=storage).trials  # nothing queued
    assert only.user_attrs["status"] == "interrupted" and only.state == optuna.trial.TrialState.FAIL
    assert lines == [f"[{space.study}] trial #{half_asked.number} was interrupted before its parameters were set"]
    # A trial queued without parameters (by an older version) still gets a full set when asked.
    study.enqueue_trial({}, user_attrs={"retry_of": half_asked.number})
    trial = Search(study, space, spec.objective, model_count(spec, space)).ask()
    assert set(trial.params) == {"model.primary.width"}


def small_search(tmp_path, sampler=None) -> Search:
    """A Search on an 8-point space (width 1..8, one layer), under the default two-objective objective."""
    spec = load_space(tmp_path, sampler=sampler)
    space = spec.studies[0]
    study = open_study(spec, space, rdb_storage(f"sqlite:///{tmp_path / 'optuna.db'}"), "sweep-1", 8)
    return Search(study, space, spec.objective, model_count(spec, space))


def width_result(params: dict) -> dict:
    width = params["model.primary.width"]
    return trained(1 / width, 10 * width)


def test_a_batch_is_k_distinct_parameter_sets_none_tried_before(tmp_path):
    search = small_search(tmp_path)
    for _ in range(3):
        trial = search.ask()
        search.tell(trial, "ok", width_result(trial.params))
    told = {t.params["model.primary.width"] for t in search.study.trials}
    batch = search.ask_batch(4)
    widths = [t.params["model.primary.width"] for t in batch]
    # 4 of the 5 points left of 8 (TPE, unaware of the batch, re-proposes a few): each once, none trained.
    assert len(set(widths)) == 4 and set(widths) <= set(range(1, 9)) - told
    assert [search.study.trials[t.number].state for t in batch] == [optuna.trial.TrialState.RUNNING] * 4


def test_retries_queued_in_the_study_come_first_in_a_batch(tmp_path):
    spec = load_space(tmp_path)
    space = spec.studies[0]
    storage = rdb_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    search = Search(open_study(spec, space, storage, "sweep-1", 8), space, spec.objective)
    done, *running = search.ask_batch(3)
    search.tell(done, "ok", width_result(done.params))
    reconcile(spec, space, storage, ResultStore(str(tmp_path / "out")), lambda _: None)  # the driver died
    resumed = optuna.load_study(study_name=space.study, storage=storage)
    batch = Search(resumed, space, spec.objective).ask_batch(4)
    assert [t.params for t in batch[:2]] == [t.params for t in running]
    assert [resumed.trials[t.number].user_attrs.get("retry_of") for t in batch] == [
        running[0].number, running[1].number, None, None]
    assert len({params_key(t.params) for t in [done, *batch]}) == 5  # the new two are new points


def test_a_batch_told_out_of_order_reaches_the_study_and_the_sampler(tmp_path):
    search = small_search(tmp_path)
    batch = search.ask_batch(4)
    for k in (2, 0, 3, 1):
        search.tell(batch[k], "ok", width_result(batch[k].params))
    for trial in batch:  # each trial got its own result
        told = search.study.trials[trial.number]
        assert told.state == optuna.trial.TrialState.COMPLETE
        assert told.values == [1 / trial.params["model.primary.width"], 10 * trial.params["model.primary.width"]]
    seen = {params_key(t.params): t.values for t in search.view.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert seen == {params_key(t.params): search.study.trials[t.number].values for t in batch}
    assert not search.pending
    assert not {params_key(t.params) for t in search.ask_batch(4)} & set(seen)  # and the next batch is new


def test_a_study_fingerprint_ignores_the_order_of_the_searched_keys_and_accepts_its_legacy_form(tmp_path):
    import dataclasses

    from hypersweep.search import fingerprint, made_for
    from hypersweep.vocab import SPACE_ATTR

    spec = load_space(tmp_path, primary={"width": {"low": 1, "high": 8}}, conditioner={"width": {"low": 8, "high": 16}})
    (space,) = spec.studies
    reordered = dataclasses.replace(space, params=tuple(reversed(space.params)))
    assert fingerprint(space, spec.objective) == fingerprint(reordered, spec.objective)
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.set_user_attr(SPACE_ATTR, fingerprint(space, spec.objective, legacy=True))  # a study made before
    assert made_for(study, space, spec.objective)
    study.set_user_attr(SPACE_ATTR, fingerprint(dataclasses.replace(space, base={}), spec.objective))
    assert not made_for(study, space, spec.objective)


def test_an_exhausted_space_says_so_instead_of_training_a_point_again(tmp_path):
    search = small_search(tmp_path)  # 8 points
    for _ in range(8):
        trial = search.ask()
        search.tell(trial, "ok", width_result(trial.params))
    assert sorted(t.params["model.primary.width"] for t in search.study.trials) == list(range(1, 9))
    with pytest.raises(Exhausted, match="search space exhausted: 8 distinct points trained"):
        search.ask()
    assert len(search.study.trials) == 8  # no trial asked for it


def test_under_the_constrained_objective_a_space_runs_out_of_points_worth_training(tmp_path):
    # Width 3 already meets the target: only widths 1 and 2 could still be the answer.
    spec = load_space(tmp_path, objective={"type": "constrained", "target": 0.5})
    space = spec.studies[0]
    study = open_study(spec, space, rdb_storage(f"sqlite:///{tmp_path / 'optuna.db'}"), "sweep-1", 8)
    study.enqueue_trial({"model.primary.width": 3})  # asked first
    search = Search(study, space, spec.objective, model_count(spec, space))
    first = search.ask()
    search.tell(first, "ok", width_result(first.params))
    batch = search.ask_batch(4)  # the two smaller widths, then nothing worth training
    assert sorted(t.params["model.primary.width"] for t in batch) == [1, 2]
    with pytest.raises(Exhausted, match="3 distinct points trained .the others are no smaller"):
        search.ask()
