"""The sweep engine: Ray Tune runs the trials, Optuna chooses them.

One Optuna study per family (`<experiment>-<family>`) in an RDB storage is the source of
truth: it holds every trial's parameters, its state and (as user attributes) its result.
The Parquet rows are written from the same results by a Tune callback on the driver, and a
resumed sweep first reconciles the two (see `reconcile`). Resuming does not use
`Tuner.restore`: each (re)start runs a fresh Tuner for the trials still owed, whose
searcher loads the study, so the study can never be older than the searcher's state.
"""
from __future__ import annotations

import dataclasses
import math
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from hypersweep import failpoints
from hypersweep.config import RunConfig
from hypersweep.models import param_counts
from hypersweep.results import ResultStore, git_commit
from hypersweep.search_space import Param, StudySpace, SweepSpec, grid_space
from hypersweep.tasks import build_task
from hypersweep.train import load_config, train

RESULT_KEYS = ("status", "val_error", "val_error_std", "val_error_max", "test_error", "test_error_std",
               "test_error_max", "replica_disagreement", "train_loss", "epoch", "wall_s", "samples_per_s",
               "device", "threads", "node", "node_id", "started_at")
ASHA_REDUCTION = 4  # ASHA keeps the best quarter of the trials at each rung
MAX_REPEATS = 20  # proposals not worth training in a row before the sampler is bypassed
SKIPPED = ("repeat", "larger")  # statuses of proposals told without training (see ask_untried)


@dataclasses.dataclass(frozen=True)
class DefineByRun:
    """Optuna's define-by-run space of one family (a picklable callable)."""

    params: tuple[Param, ...]

    def __call__(self, trial: optuna.Trial) -> None:
        for p in self.params:
            if p.kind == "categorical":
                trial.suggest_categorical(p.name, list(p.choices))
            elif p.kind == "int":
                trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
            else:
                trial.suggest_float(p.name, p.low, p.high, log=p.log, step=p.step)


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid, without `study.stop()` at the end: Ray Tune counts the trials."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def make_sampler(spec: SweepSpec, space: StudySpace, trials: int) -> optuna.samplers.BaseSampler:
    s = spec.sampler
    if s.name == "grid":
        return GridSampler(grid_space(space), seed=s.seed)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=s.population or max(4, min(50, trials // 4)),
                                             seed=s.seed)
    return optuna.samplers.TPESampler(n_startup_trials=s.startup_trials or max(3, min(10, trials // 4)),
                                      seed=s.seed, multivariate=True)


def twin(study: optuna.Study, params: dict[str, Any], number: int = -1) -> optuna.trial.FrozenTrial | None:
    """A trial of `study` other than `number` that trained (fully or until stopped early), or is training, `params`."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)
    for t in study.get_trials(deepcopy=False, states=states):
        if t.params == params and t.number != number:
            return t
    return None


def smallest_feasible(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The finished trial of a constrained study with the smallest count that meets the target."""
    feasible = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.constraints and all(c <= 0 for c in t.constraints.values())]
    return min(feasible, key=lambda t: t.values[0], default=None)


def ask_untried(study: optuna.Study, suggest: Callable[[optuna.Trial], object],
                count: Callable[[dict[str, Any]], int] | None = None) -> optuna.Trial:
    """Ask `study` for a trial worth training: parameters not trained or training yet and,
    when `count` gives a proposal's parameter count (the constrained objective), smaller
    than the smallest model already meeting the target.

    Samplers re-propose points of small discrete spaces (TPE often does), and training is
    deterministic, so a repeat is not trained; nor is a model that cannot be the answer. Such
    a proposal is told FAIL (which samplers ignore) with user attributes `status: repeat`
    and `repeat_of`, or `status: larger` and `larger_than`. After MAX_REPEATS of them in a
    row the sampler is stuck on what it knows, so the trial gets uniformly random
    parameters worth training; if none turn up either, the space looks exhausted and the
    sampler's proposal is returned to be trained whatever it is.
    """
    best = smallest_feasible(study) if count else None

    def skip_reason(params: dict[str, Any], number: int = -1) -> tuple[str, str, int] | None:
        """(status, the user attribute naming the trial that makes it one, that trial's number)."""
        original = twin(study, params, number)
        if original is not None:
            return "repeat", "repeat_of", original.number
        if best is not None and count(params) >= best.values[0]:
            return "larger", "larger_than", best.number
        return None

    for _ in range(MAX_REPEATS):
        trial = study.ask()
        suggest(trial)
        reason = skip_reason(trial.params, trial.number)
        if reason is None:
            return trial
        status, attr, number = reason
        trial.set_user_attr("status", status)
        trial.set_user_attr(attr, number)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    last = study.get_trials(deepcopy=False)[-1]
    uniform = optuna.samplers.RandomSampler(seed=last.number)
    for _ in range(MAX_REPEATS):
        params = {name: uniform.sample_independent(study, last, name, distribution)
                  for name, distribution in last.distributions.items()}
        if skip_reason(params) is None:
            study.enqueue_trial(params)
            break
    trial = study.ask()
    suggest(trial)
    return trial


@dataclasses.dataclass(frozen=True)
class ModelCount:
    """The objective's parameter count of proposed parameters, known before training (a picklable callable)."""

    space: StudySpace
    count: str
    cache: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __call__(self, params: dict[str, Any]) -> int:
        key = tuple(sorted(params.items()))
        if key not in self.cache:
            model = load_config(self.space.config(params)).model
            self.cache[key] = param_counts(model, *self.space.dims).as_dict()[self.count]
        return self.cache[key]


def model_count(spec: SweepSpec, space: StudySpace) -> ModelCount | None:
    """What `ask_untried` compares proposals by: the count, under the constrained objective only."""
    return ModelCount(space, spec.objective.count) if spec.objective.type == "constrained" else None


def _json_value(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class StudySearch(OptunaSearch):
    """OptunaSearch that records each trial's result on its Optuna trial before `tell`.

    For the constrained objective, `error - target` is set as the trial's constraint
    (feasible when <= 0), which Optuna's TPE and NSGA-II samplers read when they sample.
    The result becomes a user attribute, so a resumed sweep can rebuild a Parquet row from
    the study alone. Trials stopped early (ASHA) are told PRUNED, diverged ones FAIL.
    """

    def __init__(self, spec: SweepSpec, space: StudySpace, storage: optuna.storages.BaseStorage, trials: int):
        o = spec.objective
        multi = o.type == "pareto"
        self.hs_objective = o
        self.hs_count = model_count(spec, space)
        super().__init__(
            space=DefineByRun(space.params),
            metric=[o.metric, o.count] if multi else o.count,
            mode=["min", "min"] if multi else "min",
            sampler=make_sampler(spec, space, trials),
            study_name=space.study,
            storage=storage,
        )

    def optuna_number(self, trial_id: str) -> int:
        return self._ot_trials[trial_id].number

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials:
            self._ot_trials[trial_id] = ask_untried(self._ot_study, self._space, self.hs_count)
        config = super().suggest(trial_id)  # the same parameters, as a Tune config
        self._ot_trials[trial_id].set_user_attr("ray_trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Intermediate values are not sent: early stopping is ASHA's job."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        status = trial_status(result, error)
        o = self.hs_objective
        states = optuna.trial.TrialState
        values, state = None, {"ok": states.COMPLETE, "pruned": states.PRUNED}.get(status, states.FAIL)
        if result:
            ot_trial.set_user_attr("result", {k: _json_value(result.get(k)) for k in RESULT_KEYS if k in result})
        if status in ("ok", "pruned") and o.type == "constrained":
            ot_trial.set_constraint("error_target", result[o.metric] - o.target)
        if status == "ok":
            count = int(result[o.count])
            values = count if o.type == "constrained" else [result[o.metric], count]
        ot_trial.set_user_attr("status", status)
        self._ot_study.tell(ot_trial, values, state=state)
        self._completed_trials.add(trial_id)
        failpoints.reached("after_tell", ot_trial.number)


def trial_status(result: dict | None, error: bool) -> str:
    """ok | diverged (from the trainer), pruned (stopped early by the scheduler), failed."""
    if error or not result:
        return "failed"
    if result.get("final"):
        return result["status"]
    return "pruned"


def run_trial(config: dict, space: StudySpace, report_epochs: frozenset[int] = frozenset()) -> None:
    """One Ray Tune trial: train the configuration the searcher chose.

    Each `tune.report` is a round trip through the driver, so the trial reports only at the
    epochs the scheduler decides on (`report_epochs`) and at the end; every report carries
    the epochs since the previous one as `history`, so the learning curve stays whole.
    """
    cfg = load_config(space.config(config))
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=cfg.train.threads or max(1, int(cpus))))
    meta = {"node": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id(),
            "threads": cfg.train.threads, "started_at": time.time()}
    task = build_task(cfg.task)
    counts = param_counts(cfg.model, task.dim_i, task.dim_x, task.dim_out).as_dict()
    history: list[dict] = []

    def on_epoch(metrics: dict) -> None:
        history.append(metrics)
        if metrics["epoch"] in report_epochs:
            tune.report({**metrics, **counts, **meta, "history": history.copy()})
            history.clear()

    final = train(cfg, on_epoch=on_epoch, task=task)
    tune.report({**final, **meta, "final": True, "history": history})


def rung_epochs(grace: int, max_t: int) -> frozenset[int]:
    """The epochs at which ASHA compares trials: grace x reduction^k up to max_t."""
    rungs, epoch = set(), grace
    while epoch <= max_t:
        rungs.add(epoch)
        epoch *= ASHA_REDUCTION
    return frozenset(rungs)


class Recorder(tune.Callback):
    """Writes each finished trial to Parquet and prints one progress line for it."""

    def __init__(self, spec: SweepSpec, space: StudySpace, store: ResultStore, searcher: StudySearch,
                 done: int, total: int, log: Callable[[str], None] = print):
        self.spec, self.space, self.store, self.searcher = spec, space, store, searcher
        self.done, self.total, self.log = done, total, log
        self.live: dict[str, list[dict]] = {}
        self.commit = git_commit()

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
        number = self.searcher.optuna_number(trial.trial_id)
        status = trial_status(result, error is not None)
        cfg = load_config(self.space.config(trial.config))
        row = trial_row(self.spec, self.space, cfg, number, trial.trial_id, status, result, error)
        # Each failure but the last one of a failed trial was followed by a retry.
        row["git_commit"], row["retries"] = self.commit, trial.num_failures - (error is not None)
        self.store.write_trial(self.space.family, self.space.study, cfg, row, self.live.pop(trial.trial_id, []))
        self.done += 1
        searched = " ".join(f"{k.split('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.', 1)[-1]}={v}"
                            for k, v in trial.config.items())
        metric = self.spec.objective.metric
        score = f"{metric} {row[metric]:.3g}" if row.get(metric) is not None and status != "failed" else error or ""
        name = f"{self.space.family} {self.space.label}".strip()
        count = self.spec.objective.count
        self.log(f"[{name} {self.done}/{self.total}] #{number} {searched} -> {status} {score} {count} {row[count]}")


def trial_row(spec: SweepSpec, space: StudySpace, cfg: RunConfig, number: int, trial_id: str | None,
              status: str, result: dict | None, error: str | None) -> dict[str, Any]:
    """One Parquet row; parameter counts come from the config, so failed trials have them too."""
    result = result or {}
    counts = param_counts(cfg.model, *space.dims).as_dict()
    metrics = {k: result.get(k) for k in RESULT_KEYS if k not in ("status", "epoch", "started_at")}
    if status == "pruned":  # stopped before the test set was evaluated
        metrics.update({k: None for k in metrics if k.startswith("test_")})
    started = result.get("started_at")
    return {
        **metrics,
        "experiment": spec.experiment,
        "study": space.study,
        "variant": space.label,
        "trial": number,
        "trial_id": trial_id,
        "status": status,
        "error": error,
        **counts,
        "epochs": result.get("epoch"),
        "seed": cfg.train.seed,
        "seeds": cfg.train.seeds,
        "started_at": datetime.fromtimestamp(started, timezone.utc) if started else None,
        "finished_at": datetime.now(timezone.utc),
    }


def reconcile(spec: SweepSpec, space: StudySpace, storage: optuna.storages.BaseStorage, store: ResultStore,
              log: Callable[[str], None] = print) -> int:
    """Make the study and the Parquet rows agree after an interruption; return trials done.

    A trial told to Optuna whose row was not written yet gets its row from the study. A
    trial still RUNNING was interrupted: it is marked FAIL (`status: interrupted`) and its
    parameters are queued again, so the resumed sweep reruns it.
    """
    study = optuna.load_study(study_name=space.study, storage=storage)
    study_id = storage.get_study_id_from_name(space.study)
    have = store.finished(space.family, space.study)
    for t in study.get_trials(deepcopy=False):
        status = t.user_attrs.get("status")
        if t.state == optuna.trial.TrialState.RUNNING:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            storage.set_trial_user_attr(trial_id, "status", "interrupted")
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
            log(f"[{space.study}] trial #{t.number} was interrupted: queued again")
        elif t.state.is_finished() and t.number not in have and status not in (None, "interrupted", *SKIPPED):
            cfg = load_config(space.config(t.params))
            error = "recorded in the study only (driver stopped)" if status == "failed" else None
            row = trial_row(spec, space, cfg, t.number, t.user_attrs.get("ray_trial_id"), status,
                            t.user_attrs.get("result"), error)
            store.write_trial(space.family, space.study, cfg, row, [])
            have.add(t.number)
            log(f"[{space.study}] trial #{t.number}: row rebuilt from the study")
    return len(have)


def run_study(spec: SweepSpec, space: StudySpace, out: str, storage_url: str, trials: int,
              max_concurrent: int | None, log: Callable[[str], None] = print) -> None:
    """Run the trials still owed to one study (all of them on a fresh sweep)."""
    store = ResultStore(out)
    storage = optuna.storages.RDBStorage(storage_url)
    if removed := store.remove_partial_files():
        log(f"[{space.study}] removed {removed} partial file(s) left by a crash")
    done = 0
    if space.study in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        done = reconcile(spec, space, storage, store, log)
    remaining = trials - done
    if remaining <= 0:
        log(f"[{space.study}] all {trials} trials done")
        return
    log(f"[{space.study}] running {remaining} of {trials} trials")
    searcher = StudySearch(spec, space, storage, trials)
    epochs = space.base["train"].get("epochs", 30)
    # max_t is one past the last epoch: a trial that trains to the end must finish by itself,
    # after its final report with the test error, not be stopped at its last epoch.
    grace = min(spec.budget.grace_epochs, epochs)
    scheduler = (ASHAScheduler(time_attr="epoch", metric=spec.objective.metric, mode="min", max_t=epochs + 1,
                               grace_period=grace, reduction_factor=ASHA_REDUCTION)
                 if spec.early_stopping else None)
    report_epochs = rung_epochs(grace, epochs) if scheduler else frozenset()
    trainable = tune.with_resources(tune.with_parameters(run_trial, space=space, report_epochs=report_epochs),
                                    {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=remaining,
                                    max_concurrent_trials=max_concurrent or spec.budget.max_concurrent,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"{space.study}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}",
            storage_path=f"{store.root if '://' not in out else out.rstrip('/')}/ray",
            failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures),
            callbacks=[Recorder(spec, space, store, searcher, done, trials, log)],
            verbose=0,
        ),
    )
    tuner.fit()
