"""The Tune side of a sweep: one Tuner runs every study of an experiment at once.

`SweepSearcher` (a Ray Tune searcher) owns the experiment's Optuna studies through
`hypersweep.search.Search`: each time Tune has a free slot it asks the study with the most
trials still owed, so no slot idles while any study has work. `StudyASHA` stops weak
trials early, comparing a trial only with trials of its own study. `run_trial` trains one
configuration on a worker; `Recorder` writes each finished trial to Parquet on the driver
and prints progress per study and overall.

The studies are the source of truth; a resumed sweep first reconciles them with the
Parquet rows (`hypersweep.search.reconcile`). Resuming does not use `Tuner.restore`: each (re)start runs
a fresh Tuner for the trials still owed, whose searcher loads the studies, so the studies
can never be older than the searcher's state.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher

from hypersweep import cluster, failpoints
from hypersweep.config import TrainConfig
from hypersweep.counts import param_counts
from hypersweep.results import ResultStore, is_remote, source_id, trial_row
from hypersweep.search import Search, model_count, open_study, rdb_storage, reconcile
from hypersweep.search_space import StudySpace, SweepSpec
from hypersweep.tasks import build_task, load_config
from hypersweep.train import train
from hypersweep.vocab import FAILED, PRUNED, RAY_TRIAL_ATTR, TrainedStatus

ASHA_REDUCTION = 4  # ASHA keeps the best quarter of the trials at each rung
STUDY_KEY = "study"  # the key of a Tune trial's config that names its Optuna study
PENDING_ENV = "TUNE_MAX_PENDING_TRIALS_PG"  # Ray Tune's (documented) limit on trials waiting for a slot


@dataclasses.dataclass
class Owed:
    """One study's trial budget in this run of the sweep."""

    search: Search
    budget: int  # trials the study must end with
    done: int  # trials with a row, before and during this run
    running: int = 0

    @property
    def owed(self) -> int:
        return self.budget - self.done - self.running


class SweepSearcher(Searcher):
    """Ray Tune's searcher for a whole experiment: every study's proposals, one slot at a time.

    Fairness: the next free slot goes to the study with the most trials still owed (not yet
    finished nor running); ties go to the study listed first. Studies with equal budgets
    thus advance together, and a study that finishes early leaves its slots to the others.
    """

    def __init__(self, studies: dict[str, Owed], metric: str):
        super().__init__(metric=metric, mode="min")
        self.studies = studies
        self.trials: dict[str, tuple[str, optuna.Trial]] = {}  # Tune trial id -> (study name, Optuna trial)
        self.numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number, kept for the Recorder

    def __getstate__(self) -> dict:
        """Tune pickles the searcher into OUT/ray (tuner.pkl). The studies stay out: their storage URL
        may hold a database password, and a sweep resumes from the studies, never from Tune's state."""
        return {**self.__dict__, "studies": {}, "trials": {}}

    def suggest(self, trial_id: str) -> dict | None:
        name, owed = max(self.studies.items(), key=lambda item: item[1].owed)
        if owed.owed <= 0:
            return Searcher.FINISHED
        trial = owed.search.ask()
        trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
        owed.running += 1
        self.trials[trial_id] = (name, trial)
        self.numbers[trial_id] = trial.number
        return {STUDY_KEY: name, **trial.params}

    def optuna_number(self, trial_id: str) -> int:
        return self.numbers[trial_id]

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Intermediate values are not sent: early stopping is the scheduler's job."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.trials:
            return
        name, trial = self.trials.pop(trial_id)
        owed = self.studies[name]
        owed.search.tell(trial, trial_status(result, error), result)
        owed.running -= 1
        owed.done += 1
        failpoints.reached("after_tell", trial.number)


class StudyASHA(FIFOScheduler):
    """ASHA per study: a trial is compared only with trials of its own study (its own rungs)."""

    def __init__(self, schedulers: dict[str, ASHAScheduler]):
        super().__init__()
        self.schedulers = schedulers

    def _of(self, trial) -> ASHAScheduler:
        return self.schedulers[trial.config[STUDY_KEY]]

    def on_trial_add(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{name}: {s.debug_string()}" for name, s in self.schedulers.items())


def trial_status(result: dict | None, error: bool) -> TrainedStatus:
    """ok | diverged (from the trainer), pruned (stopped early by the scheduler), failed."""
    if error or not result:
        return FAILED
    if result.get("final"):
        return result["status"]
    return PRUNED


def run_trial(config: dict, spaces: dict[str, StudySpace], report_epochs: dict[str, frozenset[int]]) -> None:
    """One Ray Tune trial: train the configuration the searcher chose.

    Each `tune.report` is a round trip through the driver, so the trial reports only at the
    epochs the scheduler decides on (`report_epochs` of its study) and at the end; every
    report carries the epochs since the previous one as `history`, so the learning curve
    stays whole.
    """
    study = config[STUDY_KEY]
    space, rungs = spaces[study], report_epochs[study]
    cfg = load_config(space.config({k: v for k, v in config.items() if k != STUDY_KEY}))
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=cfg.train.threads or max(1, int(cpus))))
    meta = {"node": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id(),
            "threads": cfg.train.threads, "started_at": time.time()}
    task = build_task(cfg.task)
    counts = param_counts(cfg.model, task.dim_i, task.dim_x, task.dim_out).as_dict()
    history: list[dict] = []

    def on_epoch(metrics: dict) -> None:
        history.append(metrics)
        if metrics["epoch"] in rungs:
            tune.report({**metrics, **counts, **meta, "history": history.copy()})
            history.clear()

    final = train(cfg, on_epoch=on_epoch, task=task)
    tune.report({**final, **meta, "final": True, "history": history})


@contextlib.contextmanager
def _pending_trials(limit: int | None):
    """Let Tune keep up to `limit` trials pending (proposed, waiting for a slot) while the Tuner runs.

    Unless a concurrency cap is set, Tune keeps one trial pending at a time for a searcher of
    its own, so free slots fill one after another, each waiting for the previous trial's
    worker to start (4 half-CPU slots here: the last trial started 3.6 s after the first, with
    this 0.5 s). The limit is Tune's documented TUNE_MAX_PENDING_TRIALS_PG; a value the user
    set wins.
    """
    if limit is None or PENDING_ENV in os.environ:
        yield
        return
    os.environ[PENDING_ENV] = str(max(1, limit))
    try:
        yield
    finally:
        os.environ.pop(PENDING_ENV, None)


def rung_epochs(grace: int, max_t: int) -> frozenset[int]:
    """The epochs at which ASHA compares trials: grace x reduction^k up to max_t."""
    rungs, epoch = set(), grace
    while epoch <= max_t:
        rungs.add(epoch)
        epoch *= ASHA_REDUCTION
    return frozenset(rungs)


def study_epochs(space: StudySpace) -> int:
    """Epochs a trial of `space` trains: its fixed config's, else the trainer's default."""
    return space.base["train"].get("epochs", TrainConfig.epochs)


class Recorder(tune.Callback):
    """Writes each finished trial to Parquet and prints one progress line for it."""

    def __init__(self, spec: SweepSpec, store: ResultStore, searcher: SweepSearcher,
                 log: Callable[[str], None] = print):
        self.spec, self.store, self.searcher, self.log = spec, store, searcher, log
        self.spaces = {s.study: s for s in spec.studies}
        self.live: dict[str, list[dict]] = {}
        self.commit = source_id()
        self.done = {name: min(o.done, o.budget) for name, o in searcher.studies.items()}
        self.total = sum(o.budget for o in searcher.studies.values())
        self.started, self.finished = time.monotonic(), 0  # trials finished in this run, for the ETA
        # Tune wraps an exception raised in a callback in a TuneError holding only its text; the
        # OSError of a full disk is kept here so that run_sweep can raise it as what it is.
        self.write_error: OSError | None = None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.live.setdefault(trial.trial_id, []).extend(result.get("history", []))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.live.pop(trial.trial_id, None)  # the retry trains from the first epoch again

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._record(trial, trial.last_result, error=None)

    def on_trial_error(self, iteration, trials, trial, **info):
        message = "unknown error"
        if trial.error_file and Path(trial.error_file).exists():
            lines = [ln for ln in Path(trial.error_file).read_text().splitlines() if ln.strip()]
            message = lines[-1] if lines else message
        self._record(trial, trial.last_result, error=message)

    def _record(self, trial, result: dict, error: str | None) -> None:
        space = self.spaces[trial.config[STUDY_KEY]]
        number = self.searcher.optuna_number(trial.trial_id)
        status = trial_status(result, error is not None)
        params = {k: v for k, v in trial.config.items() if k != STUDY_KEY}
        cfg = load_config(space.config(params))
        row = trial_row(self.spec, space, cfg, number, trial.trial_id, status, result, error)
        # Each failure but the last one of a failed trial was followed by a retry.
        row["git_commit"], row["retries"] = self.commit, trial.num_failures - (error is not None)
        try:
            self.store.write_trial(space.family, space.study, cfg, row, self.live.pop(trial.trial_id, []))
        except OSError as err:  # the study holds the result: --resume rebuilds the row
            self.write_error = self.write_error or err
            raise
        self.finished += 1
        self.done[space.study] += 1
        self.log(self._line(space, number, params, status, row, error))

    def _line(self, space: StudySpace, number: int, params: dict, status: str, row: dict, error: str | None) -> str:
        budget = self.searcher.studies[space.study].budget
        all_done = sum(self.done.values())
        eta = (time.monotonic() - self.started) / self.finished * (self.total - all_done)
        searched = " ".join(f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
                            for k, v in params.items())
        metric, count = self.spec.objective.metric, self.spec.objective.count
        score = f"{metric} {row[metric]:.3g}" if row.get(metric) is not None and status != FAILED else error or ""
        name = f"{space.family} {space.label}".strip()
        return (f"[{name} {self.done[space.study]}/{budget} | all {all_done}/{self.total}, ETA {_duration(eta)}] "
                f"#{number} {searched} -> {status} {score} {count} {row[count]}")


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{s:02d}s"


def run_sweep(spec: SweepSpec, out: str, storage: str | optuna.storages.BaseStorage, sweep_id: str,
              budgets: dict[str, int], max_concurrent: int | None = None, log: Callable[[str], None] = print,
              trainable: Callable | None = None) -> int:
    """Run the trials still owed to every study of `spec` (all of them on a fresh sweep) in one Tuner;
    return how many are still owed after it (none unless the sweep was stopped).

    `budgets` maps each study to the trials it must end with. `trainable` replaces
    `run_trial` (benchmarks answer from a table instead of training); it is called as
    `trainable(config, spaces=..., report_epochs=...)`.
    """
    store = ResultStore(out)
    clean_up(store, log)
    studies = open_studies(spec, rdb_storage(storage) if isinstance(storage, str) else storage, sweep_id, budgets,
                           store, log)
    remaining = sum(max(0, o.owed) for o in studies.values())
    if remaining == 0:
        return 0
    log(f"{remaining} trials to run in {sum(o.owed > 0 for o in studies.values())} studies")
    searcher = SweepSearcher(studies, spec.objective.metric)
    recorder = Recorder(spec, store, searcher, log)
    concurrent = max_concurrent or spec.budget.max_concurrent
    tuner = make_tuner(spec, out, store, searcher, recorder, remaining, concurrent, trainable or run_trial)
    pending = None if concurrent else cluster.slots(spec.resources.cpus, spec.resources.gpus)
    try:
        with _pending_trials(pending):
            tuner.fit()  # returns normally when Ctrl-C stopped it: what is still owed tells
    except tune.TuneError:
        if recorder.write_error:
            raise recorder.write_error from None
        raise
    return sum(max(0, o.budget - o.done) for o in studies.values())


def clean_up(store: ResultStore, log: Callable[[str], None]) -> None:
    """Remove what a crash left half-written in `store`; a removed trial's row comes back from its study."""
    if removed := store.remove_partial_files():
        log(f"removed {removed} partial file(s) left by a crash")
    for path in store.remove_corrupt_files():
        log(f"removed {path}: not readable Parquet")


def open_studies(spec: SweepSpec, storage: optuna.storages.BaseStorage, sweep_id: str, budgets: dict[str, int],
                 store: ResultStore, log: Callable[[str], None]) -> dict[str, Owed]:
    """Each study of `spec`, reconciled with its rows, with what it still owes; log where each stands."""
    studies: dict[str, Owed] = {}
    for space in spec.studies:
        study = open_study(spec, space, storage, sweep_id, budgets[space.study])
        done = reconcile(spec, space, storage, store, log)
        studies[space.study] = Owed(Search(study, space, spec.objective, model_count(spec, space)),
                                    budgets[space.study], done)
    for name, o in studies.items():
        if o.owed <= 0:
            log(f"[{name}] all {o.budget} trials done")
        elif o.done:
            log(f"[{name}] running {o.owed} of {o.budget} trials")
    return studies


def make_scheduler(spec: SweepSpec) -> tuple[StudyASHA | None, dict[str, frozenset[int]]]:
    """ASHA per study when the sweep stops trials early (else none), and the epochs each study's trials report at."""
    rungs: dict[str, frozenset[int]] = {space.study: frozenset() for space in spec.studies}
    if not spec.early_stopping:
        return None, rungs
    asha = {}
    for space in spec.studies:
        epochs = study_epochs(space)
        grace = min(spec.budget.grace_epochs, epochs)
        # max_t is one past the last epoch: a trial that trains to the end must finish by itself,
        # after its final report with the test error, not be stopped at its last epoch.
        asha[space.study] = ASHAScheduler(time_attr="epoch", metric=spec.objective.metric, mode="min",
                                          max_t=epochs + 1, grace_period=grace, reduction_factor=ASHA_REDUCTION)
        rungs[space.study] = rung_epochs(grace, epochs)
    return StudyASHA(asha), rungs


def make_tuner(spec: SweepSpec, out: str, store: ResultStore, searcher: SweepSearcher, recorder: Recorder,
               trials: int, concurrent: int | None, trainable: Callable) -> tune.Tuner:
    """One Tuner for `trials` trials of every study, each trial taking the resources the space asks for."""
    scheduler, rungs = make_scheduler(spec)
    spaces = {s.study: s for s in spec.studies}
    trainable = tune.with_resources(tune.with_parameters(trainable, spaces=spaces, report_epochs=rungs),
                                    {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus})
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=trials,
                                    max_concurrent_trials=concurrent, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"{spec.experiment}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}",
            storage_path=f"{out.rstrip('/') if is_remote(out) else store.root}/ray",
            failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures),
            callbacks=[recorder],
            verbose=0,
        ),
    )
