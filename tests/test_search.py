"""The Optuna side of a sweep, without Ray: real SQLite studies, real Parquet rows."""
import optuna
import yaml

from hypersweep.results import ResultStore, load_trials
from hypersweep.search import Search, model_count, open_study, rdb_storage, reconcile
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
