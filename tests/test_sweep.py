"""The sweep engine on a real local Ray: Optuna chooses, Tune runs, Parquet records."""
import itertools
import math
import time
from pathlib import Path

import optuna
import pytest
import ray
import yaml
from ray import tune
from ray.cluster_utils import Cluster

from hypersweep import frontier
from hypersweep.results import load_epochs, load_trials
from hypersweep.search import MAX_REPEATS, Exhausted, Search
from hypersweep.search_space import load
from hypersweep.sweep import StudyASHA, make_scheduler, run_sweep, trial_status

TEACHER = {"name": "teacher", "dim_x": 2, "dim_i": 4, "train_instances": 300, "points": 16}


def load_space(tmp_path, families, trials=3, **top):
    """A space on the small teacher task; trained in packs of up to 4 unless `budget` says otherwise."""
    data = {"experiment": "t", "task": TEACHER, "model": {"activation": "tanh"},
            "budget": {"trials": trials, "epochs": 3, "max_failures": 0}, "families": families, **top}
    data["budget"] = {"pack": 4, **data["budget"]}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load(str(path))


def sweep(tmp_path, families, trials, budgets=None, trainable=None, **top):
    """Run every study of a small space in one Tuner; return (spec, out, storage URL)."""
    spec = load_space(tmp_path, families, trials, **top)
    out, storage = str(tmp_path / "out"), f"sqlite:///{tmp_path / 'optuna.db'}"
    budgets = budgets or {s.study: spec.trials(s) for s in spec.studies}
    owed = run_sweep(spec, out, storage, "test-sweep", budgets, max_concurrent=2, log=lambda line: None,
                     trainable=trainable)
    assert owed == 0
    return spec, out, storage


def test_every_trial_lands_in_parquet_and_in_its_optuna_study(ray_address, tmp_path):
    _, out, storage = sweep(tmp_path, {"hyper": {"primary": {"width": {"low": 1, "high": 8}}},
                                          "standard": {"primary": {"width": {"low": 2, "high": 32}}}}, trials=3)
    trials = load_trials(out)
    assert len(trials) == 6 and set(trials["status"]) == {"ok"} and set(trials["threads"]) == {1}
    assert sorted(trials["family"].unique()) == ["hyper", "standard"]
    for family in ("hyper", "standard"):
        study = optuna.load_study(study_name=f"t-{family}", storage=storage)
        assert len(study.directions) == 2  # pareto: error and size
        done = {t.number: t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
        mine = trials[trials["family"] == family].set_index("trial")
        assert set(done) == set(mine.index)
        for number, t in done.items():
            assert t.values == [pytest.approx(mine.loc[number, "val_error"]), mine.loc[number, "params_primary"]]
            assert t.params["model.primary.width"] == mine.loc[number, "config.model.primary.width"]
    assert (load_epochs(out).groupby(["family", "trial"]).size() == 4).all()  # as initialised, then 3 epochs
    for kind in ("trials", "epochs"):  # merged when the sweep ended: one file per family
        assert sorted(p.parent.name for p in Path(out, kind).glob("*/*.parquet")) == ["family=hyper", "family=standard"]


def test_a_proposal_already_trained_or_training_is_not_trained_again(ray_address, tmp_path):
    # Three widths, three trials, two at a time: random sampling (TPE's start) repeats widths.
    _, out, storage = sweep(tmp_path, {"hyper": {"primary": {"width": {"choices": [1, 2, 3]}}}}, trials=3)
    trials = load_trials(out)
    assert sorted(trials["config.model.primary.width"]) == [1, 2, 3]
    study = optuna.load_study(study_name="t-hyper", storage=storage)
    # The study shows the three trained trials and nothing else: repeats never reach it.
    assert sorted(t.number for t in study.trials) == sorted(trials["trial"]) == [0, 1, 2]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_sampler_stuck_on_one_point_gets_an_untried_one_until_the_space_is_exhausted(tmp_path):
    stuck = optuna.samplers.PartialFixedSampler({"model.primary.width": 1}, optuna.samplers.RandomSampler(seed=0))
    study = optuna.create_study(sampler=stuck, directions=["minimize", "minimize"])
    spec = load_space(tmp_path, {"hyper": {"primary": {"width": {"choices": [1, 2, 3]}}}})
    search = Search(study, spec.studies[0], spec.objective)

    widths = []
    for _ in range(3):
        trial = search.ask()
        widths.append(trial.params["model.primary.width"])
        search.tell(trial, "ok", {"val_error": 0.1, "params_primary": 1})
    assert widths[0] == 1 and sorted(widths) == [1, 2, 3]  # each width once, then
    with pytest.raises(Exhausted, match="3 distinct points trained"):  # nothing is left: no point trains again
        search.ask()
    assert search.skipped == {"repeat": 2 * MAX_REPEATS} and search.proposals == 3 + 2 * MAX_REPEATS
    assert [t.params["model.primary.width"] for t in study.trials] == widths  # the study holds what trained


def test_each_study_gets_its_own_asha_and_reports_only_at_its_rungs(tmp_path):
    families = {"hyper": {"primary": {"width": {"low": 1, "high": 8}}}, "standard": {"train": {"epochs": 3}}}
    spec = load_space(tmp_path, families, objective={"type": "constrained", "target": 0.1},
                      budget={"trials": 2, "epochs": 20, "grace_epochs": 1})
    scheduler, rungs = make_scheduler(spec)
    assert isinstance(scheduler, StudyASHA) and set(scheduler.schedulers) == {"t-hyper", "t-standard"}
    assert rungs == {"t-hyper": {1, 4, 16}, "t-standard": {1}}  # grace x 4^k up to each study's last epoch
    pareto = load_space(tmp_path / "p", families)  # no early stopping under pareto: no reports before the end
    assert make_scheduler(pareto) == (None, {"t-hyper": frozenset(), "t-standard": frozenset()})
    assert trial_status({"final": True, "status": "diverged"}, error=False) == "diverged"
    assert trial_status({"epoch": 4}, error=False) == "pruned"  # stopped by the scheduler before its end
    assert trial_status(None, error=True) == "failed"


def test_diverged_and_broken_trials_are_recorded_and_the_sweep_goes_on(ray_address, tmp_path):
    families = {"hyper": {"train": {"optimizer": "sgd", "lr": {"choices": [0.003, 1e12]},
                                    "device": {"choices": ["cpu", "cuda:7"]}}}}
    _, out, storage = sweep(tmp_path, families, trials=4, sampler={"name": "grid"}, resources={"cpus": 2})
    trials = load_trials(out).sort_values("trial")
    assert set(trials["threads"].dropna()) == {2}  # torch threads follow the trial's CPUs
    by_case = {(r["config.train.lr"], r["config.train.device"]): r for _, r in trials.iterrows()}
    assert by_case[(0.003, "cpu")]["status"] == "ok"
    assert by_case[(1e12, "cpu")]["status"] == "diverged" and math.isnan(by_case[(1e12, "cpu")]["val_error"])
    for lr in (0.003, 1e12):  # no GPU here: the trial raises, and its message is kept
        failed = by_case[(lr, "cuda:7")]
        assert failed["status"] == "failed" and failed["error"]
        assert failed["params_primary"] > 0  # counts come from the config, even for a failed trial
    states = {t.user_attrs["status"]: t.state for t in optuna.load_study(study_name="t-hyper", storage=storage).trials}
    assert states["ok"] == optuna.trial.TrialState.COMPLETE
    assert states["diverged"] == states["failed"] == optuna.trial.TrialState.FAIL


def test_the_constrained_objective_prefers_the_smallest_model_that_meets_the_target(ray_address, tmp_path):
    families = {"standard": {"primary": {"width": {"low": 1, "high": 256, "log": True}, "depth": 1},
                             "train": {"batch_size": 16}}}
    _, out, storage = sweep(tmp_path, families, trials=10, objective={"type": "constrained", "target": 0.3},
                               sampler={"name": "tpe", "seed": 0, "startup_trials": 5},
                               budget={"trials": 10, "epochs": 4, "max_failures": 0, "early_stopping": False})
    trials = load_trials(out)
    study = optuna.load_study(study_name="t-standard", storage=storage)
    trained = study.trials  # only trained trials: a larger model or a repeat never reaches the study
    assert sorted(t.number for t in trained) == sorted(trials["trial"]) == list(range(10))
    for t in trained:  # the error target reached Optuna's own constraint handling
        row = trials[trials["trial"] == t.number].iloc[0]
        assert t.constraints == {"error_target": pytest.approx(row["val_error"] - 0.3)}
        assert t.value == row["params_primary"]  # the objective is the size alone
    # A model no smaller than one known to meet the target when it was asked was not trained.
    for t in trained:
        earlier = [u for u in trained if u.datetime_complete < t.datetime_start and u.constraints["error_target"] <= 0]
        assert all(t.params["model.primary.width"] < u.params["model.primary.width"] for u in earlier)
    feasible, infeasible = trials[trials["val_error"] <= 0.3], trials[trials["val_error"] > 0.3]
    assert len(feasible) >= 2 and len(infeasible) >= 1
    # Optuna's best is the smallest feasible model: neither the smallest nor the most accurate one.
    best = study.best_trial
    assert best.value == feasible["params_primary"].min()
    assert best.value > infeasible["params_primary"].min()
    assert best.number != trials.loc[trials["val_error"].idxmin(), "trial"]
    assert frontier.smallest(trials, [0.3]).iloc[0]["trial"] == best.number


def test_asha_stops_weak_trials_early_and_they_are_recorded_as_pruned(ray_address, tmp_path):
    families = {"standard": {"primary": {"width": {"low": 1, "high": 64, "log": True}}}}
    spec, out, storage = sweep(tmp_path, families, trials=8, objective={"type": "constrained", "target": 0.05},
                               sampler={"name": "random"},
                               budget={"trials": 8, "epochs": 8, "grace_epochs": 1, "max_failures": 0})
    trials = load_trials(out)
    pruned = trials[trials["status"] == "pruned"]
    assert spec.early_stopping and len(pruned) >= 1
    assert (pruned["epochs"] < 8).all() and pruned["test_error"].isna().all()
    study = optuna.load_study(study_name="t-standard", storage=storage)
    assert {t.number for t in study.trials if t.state == optuna.trial.TrialState.PRUNED} == set(pruned["trial"])


@pytest.fixture
def two_nodes():
    """A head with 1 CPU and a worker node with 1 CPU and a (declared) GPU."""
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster, gpu_node
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.multinode
@pytest.mark.slow
def test_gpu_trials_land_on_the_gpu_node_and_cpu_trials_spread(two_nodes, tmp_path):
    _, gpu_node = two_nodes
    families = {"hyper": {"primary": {"width": {"low": 1, "high": 8}}}}
    one = {"budget": {"trials": 2, "epochs": 3, "max_failures": 0, "pack": 1}}  # where Tune places each trial
    _, out, _ = sweep(tmp_path / "gpu", families, trials=2, resources={"cpus": 0.5, "gpus": 0.5}, **one)
    gpu = load_trials(out)
    assert set(gpu["node_id"]) == {gpu_node.node_id}
    assert set(gpu["device"]) == {"cpu"}  # a declared GPU without CUDA: `auto` falls back to the CPU

    _, out, _ = sweep(tmp_path / "cpu", families, trials=4, resources={"cpus": 1, "gpus": 0},
                      budget={**one["budget"], "trials": 4})
    assert load_trials(out)["node_id"].nunique() == 2


def intervals(trials):
    return [(r["study"], r["started_at"], r["finished_at"]) for _, r in trials.iterrows()]


def test_the_studies_of_an_experiment_run_side_by_side_in_one_tuner(ray_address, tmp_path):
    families = {"hyper": {"primary": {"width": {"low": 1, "high": 8}}},
                "standard": {"primary": {"width": {"low": 2, "high": 32}}}}
    # One trial per Tune trial: a pack of 4 trains in a fraction of a second, before the other starts.
    _, out, _ = sweep(tmp_path, families, trials=4, budget={"trials": 4, "epochs": 20, "max_failures": 0, "pack": 1})
    spans = intervals(load_trials(out))
    assert any(a[0] != b[0] and a[1] < b[2] and b[1] < a[2] for a in spans for b in spans)  # overlap in time


def sleeping(seconds: dict[str, float], meet: tuple[str, Path] | None = None):
    """A trainable that sleeps `seconds[study]` and reports a made-up result: scheduling, not training.

    With `meet=(study, directory)`, a trial of that study instead waits (up to 30 s) until a second
    one runs beside it: "two ran at once" then holds however long Ray takes to start a worker on a
    loaded machine, and fails only if the scheduler never gives the study two slots together.
    """
    def trainable(config, spaces, report_epochs):
        started = time.time()
        if meet and config["study"] == meet[0]:
            Path(meet[1], tune.get_context().get_trial_id()).touch()
            while len(list(Path(meet[1]).iterdir())) < 2 and time.time() - started < 30:
                time.sleep(0.05)
        else:
            time.sleep(seconds[config["study"]])
        tune.report({"final": True, "status": "ok", "epoch": 1, "val_error": 0.1, "test_error": 0.1,
                     "params_primary": config["model.primary.width"], "started_at": started,
                     "wall_s": time.time() - started})
    return trainable


def asks(storage: str, studies: list[str]) -> list[tuple]:
    """(when it was asked for, study) of each trial of `studies`, in the order the sweep asked for them."""
    return sorted((t.datetime_start, name) for name in studies
                  for t in optuna.load_study(study_name=name, storage=storage).trials)


def test_without_a_concurrency_cap_every_free_slot_starts_a_trial_at_once(ray_address, tmp_path):
    # No max_concurrent, four half-CPU slots: Tune would keep one trial pending at a time, and each
    # slot would wait for the trial before it to start.
    spec = load_space(tmp_path, {"hyper": {"primary": {"width": {"low": 1, "high": 8}}}}, trials=4,
                      resources={"cpus": 0.5, "gpus": 0}, budget={"trials": 4, "epochs": 3, "pack": 1})
    out, storage = str(tmp_path / "out"), f"sqlite:///{tmp_path / 'optuna.db'}"
    assert run_sweep(spec, out, storage, "test-sweep", {"t-hyper": 4},
                     log=lambda line: None, trainable=sleeping({"t-hyper": 3.0})) == 0
    # The last three are asked for together, not each once the one before has its worker (about 1 s
    # apart then; the first ask comes a step earlier, when Tune starts). When a trial starts after
    # that is up to Ray, seconds apart on a loaded machine, so the asks are what is timed.
    asked = [t for t, _ in asks(storage, ["t-hyper"])]
    print("asked after the first:", [(t - asked[0]).total_seconds() for t in asked])
    assert len(asked) == 4 and max((b - a).total_seconds() for a, b in itertools.pairwise(asked[1:])) < 0.5


def test_a_study_that_finishes_early_leaves_its_slots_to_the_others(ray_address, tmp_path):
    # hyper owes 3 trials of 0.1 s, standard 2 that wait for each other: the slots go to hyper twice
    # (most owed, then the tie goes to the study listed first), then standard, then hyper's last
    # trial; once hyper is done, its slot goes to standard's second trial, which meets the first.
    families = {"hyper": {"primary": {"width": {"low": 1, "high": 8}}},
                "standard": {"primary": {"width": {"low": 2, "high": 32}}}}
    (tmp_path / "met").mkdir()
    _, out, storage = sweep(tmp_path, families, trials=3, budgets={"t-hyper": 3, "t-standard": 2},
                            trainable=sleeping({"t-hyper": 0.1}, meet=("t-standard", tmp_path / "met")),
                            budget={"trials": 3, "epochs": 3, "max_failures": 0, "pack": 1})
    assert [study for _, study in asks(storage, ["t-hyper", "t-standard"])] == [
        "t-hyper", "t-hyper", "t-standard", "t-hyper", "t-standard"]
    trials = load_trials(out).sort_values("started_at")
    hyper_done = trials[trials["study"] == "t-hyper"]["finished_at"].max()
    (_, start_a, end_a), (_, start_b, _) = intervals(trials[trials["study"] == "t-standard"])
    # Standard's second trial starts once hyper is done, while its first still runs.
    assert hyper_done < start_b < end_a and (end_a - start_a).total_seconds() < 30
