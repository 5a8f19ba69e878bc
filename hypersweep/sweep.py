"""The Tune side of a sweep: one Tuner runs every study of an experiment at once.

`SweepSearcher` (a Ray Tune searcher) owns the experiment's Optuna studies through
`hypersweep.search.Search`: each time Tune has a free slot it asks the study with the most
trials still owed, so no slot idles while any study has work. `StudyASHA` stops weak
trials early, comparing a trial only with trials of its own study. `run_trial` trains one
configuration on a worker; `Recorder` writes each finished trial to Parquet on the driver
and prints progress per study and overall.

By default a Tune trial trains a pack of trials of one study as one stacked model
(`run_pack`, `hypersweep.packing`; `budget.pack`): the searcher asks a study for several
trials at once and groups them, each member is told and recorded as soon as its pack reports
it, and early stopping judges each member inside its pack (`Rungs`, the rule of ASHA)
instead of Tune's scheduler. `budget.pack: 1` gives one trial per Tune trial.

The studies are the source of truth; a resumed sweep first reconciles them with the
Parquet rows (`hypersweep.search.reconcile`). Resuming does not use `Tuner.restore`: each (re)start runs
a fresh Tuner for the trials still owed, whose searcher loads the studies, so the studies
can never be older than the searcher's state.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher

from hypersweep import cluster, failpoints
from hypersweep.config import RunConfig, TrainConfig
from hypersweep.counts import param_counts
from hypersweep.packing import ACTIVATION_CAP, plan_packs
from hypersweep.results import ResultStore, is_remote, source_id, trial_row
from hypersweep.search import Exhausted, Search, model_count, open_study, rdb_storage, reconcile
from hypersweep.search_space import StudySpace, SweepSpec
from hypersweep.tasks import build_task, load_config
from hypersweep.train import train, train_pack
from hypersweep.vocab import FAILED, OK, PENDING_ENV, PRUNED, RAY_TRIAL_ATTR, RETRIES_ATTR, TrainedStatus

ASHA_REDUCTION = 4  # ASHA keeps the best quarter of the trials at each rung
STUDY_KEY = "study"  # the key of a Tune trial's config that names its Optuna study
PACK_KEY = "pack"  # a packed Tune trial's config: its members, [{"number": Optuna trial number, "params": {...}}]
MEMBERS_KEY = "members"  # a packed trial's report: the members that finished since its previous report


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

    def end(self, name: str, why: str, log: Callable[[str], None]) -> None:
        """End the study with the trials it has (its space is exhausted), saying so in one line."""
        log(f"[{name}] {why}; the study ends at {self.done + self.running} of its {self.budget} trials")
        self.budget = self.done + self.running


class SweepSearcher(Searcher):
    """Ray Tune's searcher for a whole experiment: every study's proposals, one slot at a time.

    Fairness: the next free slot goes to the study with the most trials still owed (not yet
    finished nor running); ties go to the study listed first. Studies with equal budgets
    thus advance together, and a study that finishes early leaves its slots to the others.

    With `pack` > 1 a Tune trial trains a pack (`run_pack`): the study is asked for up to
    `pack` trials at once, which `hypersweep.packing.plan_packs` groups into packs by what
    they must share and by size; packs not started yet wait in `ready` for the next slots.
    Each member is told as soon as its pack reports it finished.
    """

    def __init__(self, studies: dict[str, Owed], metric: str, pack: int = 1,
                 spaces: dict[str, StudySpace] | None = None, cap: int = 0, log: Callable[[str], None] = print):
        super().__init__(metric=metric, mode="min")
        self.studies, self.pack, self.spaces, self.cap, self.log = studies, pack, spaces or {}, cap, log
        self.trials: dict[str, tuple[str, dict[int, optuna.Trial]]] = {}  # Tune trial id -> (study, members untold)
        self.numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number, kept for the Recorder
        self.ready: list[tuple[str, list[optuna.Trial]]] = []  # packs asked, not given a slot yet

    def __getstate__(self) -> dict:
        """Tune pickles the searcher into OUT/ray (tuner.pkl). The studies stay out: their storage URL
        may hold a database password, and a sweep resumes from the studies, never from Tune's state."""
        return {**self.__dict__, "studies": {}, "trials": {}, "ready": []}

    def suggest(self, trial_id: str) -> dict | None:
        if self.pack > 1:
            return self._suggest_pack(trial_id)
        name, owed = max(self.studies.items(), key=lambda item: item[1].owed)
        if owed.owed <= 0:
            return Searcher.FINISHED
        try:
            trial = owed.search.ask()
        except Exhausted as why:  # the other studies may still owe trials
            owed.end(name, str(why), self.log)
            return self.suggest(trial_id)
        trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
        owed.running += 1
        self.trials[trial_id] = (name, {trial.number: trial})
        self.numbers[trial_id] = trial.number
        return {STUDY_KEY: name, **trial.params}

    def _suggest_pack(self, trial_id: str) -> dict | None:
        if not self.ready:
            self._ask_packs()
        if not self.ready:
            return Searcher.FINISHED
        name, members = self.ready.pop(0)
        for trial in members:
            trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
        self.trials[trial_id] = (name, {t.number: t for t in members})
        return {STUDY_KEY: name, PACK_KEY: [{"number": t.number, "params": t.params} for t in members]}

    def _ask_packs(self) -> None:
        """Ask the study owed most for up to `pack` trials and queue them as packs."""
        name, owed = max(self.studies.items(), key=lambda item: item[1].owed)
        if owed.owed <= 0:
            return
        space = self.spaces[name]
        try:
            trials = owed.search.ask_batch(min(self.pack, owed.owed))
        except Exhausted as why:  # the other studies may still owe trials
            owed.end(name, str(why), self.log)
            return self._ask_packs()
        owed.running += len(trials)
        cfgs = [load_config(space.config(t.params)) for t in trials]
        for pack in plan_packs(cfgs, space.dims, space.points or 1, self.pack, self.cap):
            self.ready.append((name, [trials[i] for i in pack]))

    def optuna_number(self, trial_id: str) -> int:
        return self.numbers[trial_id]

    def restarted(self, trial_id: str, failures: int) -> None:
        """Tune restarts a Tune trial after its `failures`-th failure: each Optuna trial it still trains
        keeps the count, so that a row rebuilt from the study has it too."""
        for trial in self.trials.get(trial_id, (None, {}))[1].values():
            trial.set_user_attr(RETRIES_ATTR, failures)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """A pack's finished members are told here; intermediate values are not sent (early
        stopping is the scheduler's job, or the pack's)."""
        for member in result.get(MEMBERS_KEY, []):
            self._tell(trial_id, member["number"], member["status"], member)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.trials:
            return
        members = self.trials[trial_id][1]
        if self.pack > 1:  # members the pack did not report: it failed (or ended without them)
            for number in list(members):
                self._tell(trial_id, number, FAILED, None)
        else:
            self._tell(trial_id, next(iter(members)), trial_status(result, error), result)
        del self.trials[trial_id]

    def _tell(self, trial_id: str, number: int, status: TrainedStatus, result: dict | None) -> None:
        """Tell one trial's result once (a retried pack reports its members again)."""
        name, members = self.trials[trial_id]
        trial = members.pop(number, None)
        if trial is None:
            return
        owed = self.studies[name]
        owed.search.tell(trial, status, result)
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


def worker_config(space: StudySpace, params: dict) -> RunConfig:
    """A trial's run config on its worker: torch threads follow the CPUs Tune gave the trial,
    unless the config sets them."""
    cfg = load_config(space.config(params))
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    threads = cfg.train.threads or max(1, int(cpus))
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=threads))


def where_it_runs(cfg: RunConfig) -> dict:
    """What a trial's row records of where and when it ran."""
    return {"node": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id(),
            "threads": cfg.train.threads, "started_at": time.time()}


def run_trial(config: dict, spaces: dict[str, StudySpace], report_epochs: dict[str, frozenset[int]]) -> None:
    """One Ray Tune trial: train the configuration the searcher chose.

    Each `tune.report` is a round trip through the driver, so the trial reports only at the
    epochs the scheduler decides on (`report_epochs` of its study) and at the end; every
    report carries the epochs since the previous one as `history`, so the learning curve
    stays whole.
    """
    study = config[STUDY_KEY]
    space, rungs = spaces[study], report_epochs[study]
    cfg = worker_config(space, {k: v for k, v in config.items() if k != STUDY_KEY})
    meta = where_it_runs(cfg)
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


def run_pack(config: dict, spaces: dict[str, StudySpace], report_epochs: dict[str, frozenset[int]],
             metric: str = "val_error", rungs: str | None = None) -> None:
    """One Ray Tune trial that trains a pack of trials (`hypersweep.train.train_pack`).

    A member that stops before the others (diverged, or pruned by `Rungs`, the actor named
    `rungs`, at its study's `report_epochs`) is reported at once, so its row is written
    while its siblings train on; the others are reported together at the end. Each member's
    report carries its whole learning curve as `history`.
    """
    study = config[STUDY_KEY]
    space, rung_epochs_ = spaces[study], report_epochs[study]
    members = config[PACK_KEY]
    cfgs = [worker_config(space, member["params"]) for member in members]
    meta = {**where_it_runs(cfgs[0]), "pack": min(m["number"] for m in members), "pack_size": len(members)}
    task = build_task(cfgs[0].task)
    history: list[list[dict]] = [[] for _ in members]
    judge = ray.get_actor(rungs) if rungs else None

    def report(done: list[tuple[int, dict]], final: bool = False) -> None:
        reported = [{**result, **meta, "number": members[m]["number"], "history": history[m]} for m, result in done]
        best = min((r[metric] for r in reported if r.get(metric) is not None), default=math.nan)
        tune.report({metric: best, "final": final, MEMBERS_KEY: reported})

    def stop(epoch: int, metrics: dict[int, dict]) -> list[int]:
        if judge is None or epoch not in rung_epochs_:
            return []
        values = {m: v.get(metric, math.nan) for m, v in metrics.items()}
        return ray.get(judge.judge.remote(study, epoch, values))

    results = train_pack(cfgs, lambda m, metrics: history[m].append(metrics), task, stop,
                         lambda m, result: report([(m, result)]))
    report([(m, r) for m, r in enumerate(results) if r["status"] == OK], final=True)


class Rungs:
    """ASHA's rule for the members of packs (a Ray actor shared by every pack of a sweep).

    At each rung epoch a member is stopped when its metric is worse than the best
    1/ASHA_REDUCTION of the values its study recorded at that rung before it (the rule of Ray
    Tune's ASHAScheduler with one bracket, which `StudyASHA` applies to unpacked trials). A
    study's members are compared only with each other.
    """

    def __init__(self) -> None:
        self.recorded: dict[tuple[str, int], list[float]] = {}

    def judge(self, study: str, epoch: int, values: dict[int, float]) -> list[int]:
        """Record `values` (member -> metric, lower is better) at `epoch`; return the members to stop."""
        recorded = self.recorded.setdefault((study, epoch), [])
        stop = []
        for member, value in values.items():
            if recorded and value > np.nanpercentile(recorded, 100 / ASHA_REDUCTION):
                stop.append(member)
            recorded.append(value)
        return stop


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
        self.written: set[tuple[str, int]] = set()  # (study, number) of the rows this run wrote
        self.commit = source_id()
        self.done = {name: min(o.done, o.budget) for name, o in searcher.studies.items()}
        self.started, self.finished = time.monotonic(), 0  # trials finished in this run, for the ETA
        # Tune wraps an exception raised in a callback in a TuneError holding only its text; the
        # OSError of a full disk is kept here so that run_sweep can raise it as what it is.
        self.write_error: OSError | None = None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if PACK_KEY in trial.config:  # the members its pack finished since its last report
            for member in result.get(MEMBERS_KEY, []):
                self._record_member(trial, member, member["status"], member.get("error"), trial.num_failures)
            return
        self.live.setdefault(trial.trial_id, []).extend(result.get("history", []))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.live.pop(trial.trial_id, None)  # the retry trains from the first epoch again
        self.searcher.restarted(trial.trial_id, trial.num_failures)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._record(trial, trial.last_result, error=None)

    def on_trial_error(self, iteration, trials, trial, **info):
        message = "unknown error"
        if trial.error_file and Path(trial.error_file).exists():
            lines = [ln for ln in Path(trial.error_file).read_text().splitlines() if ln.strip()]
            message = lines[-1] if lines else message
        self._record(trial, trial.last_result, error=message)

    def _record(self, trial, result: dict, error: str | None) -> None:
        # Each failure but the last one of a failed trial was followed by a retry.
        retries = trial.num_failures - (error is not None)
        if PACK_KEY in trial.config:  # members its pack never reported: failed with it
            pack = {"pack": min(m["number"] for m in trial.config[PACK_KEY]), "pack_size": len(trial.config[PACK_KEY])}
            for member in trial.config[PACK_KEY]:
                self._record_member(trial, {"number": member["number"], **pack}, FAILED,
                                    error or "its pack ended without reporting it", retries)
            return
        number = self.searcher.optuna_number(trial.trial_id)
        params = {k: v for k, v in trial.config.items() if k != STUDY_KEY}
        self._write(trial, number, params, trial_status(result, error is not None), result, error, retries,
                    self.live.pop(trial.trial_id, []))

    def _record_member(self, trial, member: dict, status: TrainedStatus, error: str | None, retries: int) -> None:
        """One member of a pack, once (a retried pack reports its members again)."""
        key = (trial.config[STUDY_KEY], member["number"])
        if key in self.written:
            return
        params = next(m["params"] for m in trial.config[PACK_KEY] if m["number"] == member["number"])
        self._write(trial, member["number"], params, status, member, error, retries, member.get("history", []))

    def _write(self, trial, number: int, params: dict, status: TrainedStatus, result: dict | None,
               error: str | None, retries: int, curve: list[dict]) -> None:
        space = self.spaces[trial.config[STUDY_KEY]]
        cfg = load_config(space.config(params))
        row = trial_row(self.spec, space, cfg, number, trial.trial_id, status, result, error)
        row["git_commit"], row["retries"] = self.commit, retries
        try:
            self.store.write_trial(space.family, space.study, cfg, row, curve)
        except OSError as err:  # the study holds the result: --resume rebuilds the row
            self.write_error = self.write_error or err
            raise
        self.written.add((space.study, number))
        self.finished += 1
        self.done[space.study] += 1
        self.log(self._line(space, number, params, status, row, error))

    def _line(self, space: StudySpace, number: int, params: dict, status: str, row: dict, error: str | None) -> str:
        budget = self.searcher.studies[space.study].budget
        all_done = sum(self.done.values())
        total = sum(o.budget for o in self.searcher.studies.values())  # less once a study's space ran out
        eta = (time.monotonic() - self.started) / self.finished * (total - all_done)
        searched = " ".join(f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
                            for k, v in params.items())
        metric, count = self.spec.objective.metric, self.spec.objective.count
        score = f"{metric} {row[metric]:.3g}" if row.get(metric) is not None and status != FAILED else error or ""
        name = f"{space.family} {space.label}".strip()
        return (f"[{name} {self.done[space.study]}/{budget} | all {all_done}/{total}, ETA {_duration(eta)}] "
                f"#{number} {searched} -> {status} {score} {count} {row[count]}")


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{s:02d}s"


def run_sweep(spec: SweepSpec, out: str, storage: str | optuna.storages.BaseStorage, sweep_id: str,
              budgets: dict[str, int], max_concurrent: int | None = None, log: Callable[[str], None] = print,
              trainable: Callable | None = None) -> int:
    """Run the trials still owed to every study of `spec` (all of them on a fresh sweep) in one Tuner;
    return how many are still owed after it (none unless the sweep was stopped).

    `budgets` maps each study to the trials it must end with. Trials are trained in packs of
    up to `spec.pack` (`run_pack`), or one per Tune trial (`run_trial`) when that is 1.
    `trainable` replaces either (benchmarks answer from a table instead of training); it is
    called as `trainable(config, spaces=..., report_epochs=...)`, packed with `metric=` and
    `rungs=` too.
    """
    store = ResultStore(out)
    clean_up(store, log)
    studies = open_studies(spec, rdb_storage(storage) if isinstance(storage, str) else storage, sweep_id, budgets,
                           store, log)
    remaining = sum(max(0, o.owed) for o in studies.values())
    if remaining == 0:
        return 0
    log(f"{remaining} trials to run in {sum(o.owed > 0 for o in studies.values())} studies")
    cap = ACTIVATION_CAP["gpu" if spec.resources.gpus else "cpu"]
    searcher = SweepSearcher(studies, spec.objective.metric, spec.pack, {s.study: s for s in spec.studies}, cap, log)
    recorder = Recorder(spec, store, searcher, log)
    concurrent = max_concurrent or spec.budget.max_concurrent
    rungs = None
    if spec.pack > 1 and spec.early_stopping:  # ASHA for each member, inside its pack
        rungs = f"hypersweep-rungs-{uuid.uuid4().hex}"
        rungs_actor = ray.remote(Rungs).options(name=rungs, num_cpus=0).remote()
    tuner = make_tuner(spec, out, store, searcher, recorder, remaining, concurrent,
                       trainable or (run_pack if spec.pack > 1 else run_trial), rungs)
    pending = None if concurrent else cluster.slots(spec.resources.cpus, spec.resources.gpus)
    try:
        with _pending_trials(pending):
            tuner.fit()  # returns normally when Ctrl-C stopped it: what is still owed tells
    except tune.TuneError:
        if recorder.write_error:
            raise recorder.write_error from None
        raise
    finally:
        if rungs:
            ray.kill(rungs_actor)
    compact(store, log)
    return sum(max(0, o.budget - o.done) for o in studies.values())


def clean_up(store: ResultStore, log: Callable[[str], None]) -> None:
    """Remove what a crash left half-written in `store` and merge what an earlier run left unmerged;
    a removed trial's row comes back from its study."""
    store.recover()
    if removed := store.remove_partial_files():
        log(f"removed {removed} partial file(s) left by a crash")
    for path, aside in store.remove_corrupt_files():
        log(f"removed {path}: not readable Parquet (moved to {aside})")
    compact(store, log)


def compact(store: ResultStore, log: Callable[[str], None]) -> None:
    """Merge each family's results into one file (ResultStore.compact), saying so when that takes a while."""
    started = time.monotonic()
    if (merged := store.compact(final=True)) and time.monotonic() - started > 1:
        log(f"merged {merged} result files in {time.monotonic() - started:.0f} s")


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
        if o.owed > 0 and o.search.exhausted():  # a resumed sweep whose space ran out before
            o.end(name, o.search.exhausted_line(), log)
        elif o.owed <= 0:
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
               trials: int, concurrent: int | None, trainable: Callable, rungs: str | None = None) -> tune.Tuner:
    """At most `trials` Tune trials (one per trial, or per pack) of every study, each taking the
    resources the space asks for. Packs stop their members early themselves (`Rungs`, named `rungs`)."""
    scheduler, report_epochs = make_scheduler(spec)
    spaces = {s.study: s for s in spec.studies}
    packed = {"metric": spec.objective.metric, "rungs": rungs} if spec.pack > 1 else {}
    if packed:
        scheduler = None
    trainable = tune.with_resources(tune.with_parameters(trainable, spaces=spaces, report_epochs=report_epochs,
                                                         **packed),
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
