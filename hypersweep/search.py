"""The Optuna side of a sweep: studies, samplers, what to train next, what a result means.

One Optuna study per family and variant (`StudySpace.study`) in an RDB storage is the
source of truth: it holds every trial's parameters, its state and (as user attributes)
its result. `Search` wraps one study for a driver that asks and tells many times: it keeps
an index of the parameters already tried and the smallest model known to meet the target,
so a proposal and a result cost the same at trial 2,000 as at trial 20. Nothing here
imports Ray: the Tune searcher (`hypersweep.sweep`) and offline replays
(`hypersweep.tabulated`) share it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np
import optuna
import sqlalchemy

from hypersweep.config import load_config, null_if_nan
from hypersweep.models import param_counts
from hypersweep.results import RESULT_KEYS
from hypersweep.search_space import Objective, Param, StudySpace, SweepSpec, grid_space

MAX_REPEATS = 20  # proposals not worth training in a row before the sampler is bypassed
SKIPPED = ("repeat", "larger")  # statuses of proposals told without training (see Search.ask)
TPE_CANDIDATES = 24  # TPE's candidates per proposal (Optuna's default): its cost per ask is linear in this
TPE_MODELLED = 300  # finished trials TPE models at most (its cost per ask is linear in them too) ...
TPE_BEST = 60  # ... always including the best this many, the others being the most recent
TPE_SLACK = 100  # trials added to TPE's model between two trims of it back to TPE_MODELLED
OWNER_ATTR = "hypersweep.sweep"  # study user attribute: the id of the sweep that created the study
SPACE_ATTR = "hypersweep.space"  # study user attribute: the fingerprint of the space it searches
TRIED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)


class StudyMismatch(Exception):
    """A study in the storage that this sweep must not write into (one line for the user)."""


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
    """Optuna's grid, without `study.stop()` at the end: the sweep counts the trials."""

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
    return BoundedTPE(optuna.samplers.TPESampler(n_startup_trials=s.startup_trials or max(3, min(10, trials // 4)),
                                                 n_ei_candidates=TPE_CANDIDATES, seed=s.seed, multivariate=True))


FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
RUNNING = optuna.trial.TrialState.RUNNING


class BoundedTPE(optuna.samplers.BaseSampler):
    """Optuna's TPE on an in-memory copy of the study, bounded in size: a proposal costs the
    same at trial 2,000 as at trial 200.

    A TPE proposal fits Parzen estimators to every finished trial and evaluates them at each
    candidate, so its cost grows with the study. It also reads the trials through the
    study's storage several times per proposal, and with an RDB storage each read queries
    every running trial again (Optuna's cache keeps finished trials only); with Optuna's
    default `constant_liar` the running trials are part of TPE's model too.

    Here TPE works on a copy of the study in an in-memory storage: made from the study once,
    then kept current from the sampler's own hooks (a trial starts in `before_trial`; the
    parameters TPE proposes are recorded on it; `after_trial` finishes it with its state,
    values, constraints and intermediate values), so the study's storage is read once. When
    the copy holds more than `limit + slack` finished trials it is cut back to `limit`: the
    `best` best in TPE's own order (feasible complete trials by value or Pareto rank, then
    pruned, then infeasible ones) and the most recent others, and every running trial. TPE's
    "good" group (at most 25 trials for one objective, a tenth of those modelled for
    several) thus stays the study's best; its "bad" group is the recent trials.

    Up to `limit` finished trials TPE sees the trials it would see on the study, in the same
    order, and proposes the same points for the same seed. (One exception: a running trial
    whose parameters were fixed in advance, `enqueue_trial`, is modelled only once it
    finishes.) Only Optuna's public sampler and storage interfaces are used.
    """

    def __init__(self, tpe: optuna.samplers.TPESampler, limit: int = TPE_MODELLED, best: int = TPE_BEST,
                 slack: int = TPE_SLACK):
        self.tpe, self.limit, self.best, self.slack = tpe, limit, best, slack
        self._source: str | None = None  # the name of the study the copy is of
        self._copy: optuna.storages.InMemoryStorage | None = None
        self._study_id = 0
        self._ids: dict[int, int] = {}  # the study's trial number -> the copy's trial id, for running trials
        self._finished = 0  # finished trials in the copy
        self._view: optuna.Study | None = None  # the copy as a Study (Optuna caches trials per Study object)

    @property
    def modelled(self) -> int:
        """Finished trials TPE models now (at most `limit + slack`)."""
        return self._finished

    # The copy.

    def _sync(self, study: optuna.Study) -> None:
        """Make the copy of `study` from its storage, unless the copy is of it already."""
        if self._source != study.study_name:
            self._source = study.study_name
            trials = study.get_trials(deepcopy=False, states=(*FINISHED, RUNNING))
            self._rebuild(list(study.directions), [(t, t.number if t.state == RUNNING else None) for t in trials])

    def _trim(self) -> None:
        """Cut the copy back to `limit` finished trials once it holds more than `limit + slack`."""
        if self._finished > self.limit + self.slack:
            number = {self._copy.get_trial_number_from_id(trial_id): n for n, trial_id in self._ids.items()}
            trials = self._copy.get_all_trials(self._study_id, deepcopy=False, states=(*FINISHED, RUNNING))
            self._rebuild(self._copy.get_study_directions(self._study_id), [(t, number.get(t.number)) for t in trials])

    def _rebuild(self, directions: list, trials: list[tuple[optuna.trial.FrozenTrial, int | None]]) -> None:
        """A new copy of `trials` (oldest first, each running one with its number in the study), cut to size."""
        finished = [t for t, _ in trials if t.state in FINISHED]
        keep = set(map(id, self._keep(finished, directions) if len(finished) > self.limit else finished))
        self._copy, self._view, self._ids, self._finished = optuna.storages.InMemoryStorage(), None, {}, 0
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory" each time
        try:
            self._study_id = self._copy.create_new_study(directions, "model")
        finally:
            optuna.logging.set_verbosity(verbosity)
        for t, number in trials:
            if t.state == RUNNING and number is not None:
                self._ids[number] = self._copy.create_new_trial(self._study_id, template_trial=t)
            elif id(t) in keep:
                self._copy.create_new_trial(self._study_id, template_trial=t)
                self._finished += 1

    def _keep(self, finished: list[optuna.trial.FrozenTrial], directions: list) -> list[optuna.trial.FrozenTrial]:
        """The `best` best of `finished` and the most recent others, `limit` in all, oldest first."""
        best = set(_ranked(finished, directions, self.best)[:self.best])
        recent = [k for k in range(len(finished) - 1, -1, -1) if k not in best][:self.limit - len(best)]
        return [finished[k] for k in sorted(best.union(recent))]

    def _model(self, study: optuna.Study,
               trial: optuna.trial.FrozenTrial) -> tuple[optuna.Study, optuna.trial.FrozenTrial]:
        """The copy as a study, and `trial`'s counterpart in it."""
        self._sync(study)
        if trial.number not in self._ids:
            self._ids[trial.number] = self._copy.create_new_trial(self._study_id)
            self._view = None
        if self._view is None:
            self._view = optuna.load_study(study_name="model", storage=self._copy, sampler=self.tpe)
        return self._view, self._copy.get_trial(self._ids[trial.number])

    def _record(self, trial: optuna.trial.FrozenTrial, params: dict[str, Any],
                distributions: dict[str, optuna.distributions.BaseDistribution]) -> None:
        """Set parameters of `trial` (the study's) on its counterpart in the copy."""
        trial_id = self._ids[trial.number]
        known = self._copy.get_trial(trial_id).params
        for name, value in params.items():
            if name not in known:
                dist = distributions[name]
                self._copy.set_trial_param(trial_id, name, dist.to_internal_repr(value), dist)
        self._view = None

    # The sampler interface: TPE on the copy.

    def before_trial(self, study, trial) -> None:
        self.tpe.before_trial(study, trial)
        self._model(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.tpe.infer_relative_search_space(*self._model(study, trial))

    def sample_relative(self, study, trial, search_space):
        view, counterpart = self._model(study, trial)
        params = self.tpe.sample_relative(view, counterpart, search_space)
        self._record(trial, params, search_space)
        return params

    def sample_independent(self, study, trial, param_name, param_distribution):
        view, counterpart = self._model(study, trial)
        value = self.tpe.sample_independent(view, counterpart, param_name, param_distribution)
        self._record(trial, {param_name: value}, {param_name: param_distribution})
        return value

    def after_trial(self, study, trial, state, values) -> None:
        self.tpe.after_trial(study, trial, state, values)
        self._model(study, trial)
        self._record(trial, trial.params, trial.distributions)  # parameters fixed in advance are new here
        trial_id = self._ids.pop(trial.number)
        if state in FINISHED:
            for key, value in trial.system_attrs.items():  # constraints live there
                self._copy.set_trial_system_attr(trial_id, key, value)
            for step, value in trial.intermediate_values.items():
                self._copy.set_trial_intermediate_value(trial_id, step, value)
            self._finished += 1
        self._copy.set_trial_state_values(trial_id, state, values)
        self._view = None
        self._trim()

    def reseed_rng(self) -> None:
        self.tpe.reseed_rng()


def _ranked(trials: list[optuna.trial.FrozenTrial], directions: list, enough: int | None = None) -> list[int]:
    """Indices of `trials`, best first, in TPE's order: feasible complete trials (by value, or by
    Pareto rank for several objectives), then feasible pruned ones (the furthest trained first,
    then by their last intermediate value), then infeasible ones (by how far they miss). Only
    the first `enough` need be in order."""
    sign = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in directions])
    violation = [sum(v for v in t.constraints.values() if v > 0) for t in trials]
    complete = [k for k, t in enumerate(trials) if t.state == optuna.trial.TrialState.COMPLETE and violation[k] <= 0]
    pruned = [k for k, t in enumerate(trials) if t.state == optuna.trial.TrialState.PRUNED and violation[k] <= 0]
    values = np.array([trials[k].values for k in complete], dtype=float).reshape(len(complete), -1) * sign
    if len(directions) == 1:
        order = [complete[k] for k in np.argsort(values[:, 0], kind="stable")]
    else:
        order = [complete[k] for k in np.lexsort((values[:, 0], _pareto_ranks(values, enough=enough)))]

    def pruned_key(k: int) -> tuple[float, float]:
        steps = trials[k].intermediate_values
        if not steps:
            return 1.0, 0.0
        last = max(steps)
        return -last, steps[last] * sign[0] if np.isfinite(steps[last]) else np.inf

    order += sorted(pruned, key=pruned_key)
    order += sorted((k for k in range(len(trials)) if violation[k] > 0), key=lambda k: violation[k])
    return order


def _pareto_ranks(values: np.ndarray, enough: int | None = None) -> np.ndarray:
    """Non-domination rank of each row (0: the Pareto front), all objectives minimised; once the
    fronts ranked hold `enough` rows, the rest share the next rank."""
    ranks = np.zeros(len(values), dtype=int)
    remaining, rank = np.arange(len(values)), 0
    while remaining.size:
        if enough is not None and len(values) - remaining.size >= enough:
            ranks[remaining] = rank
            break
        v = values[remaining]
        dominated = ((v[:, None, :] >= v[None, :, :]).all(-1) & (v[:, None, :] > v[None, :, :]).any(-1)).any(1)
        ranks[remaining[~dominated]] = rank
        remaining, rank = remaining[dominated], rank + 1
    return ranks


@dataclasses.dataclass(frozen=True)
class ModelCount:
    """The objective's parameter count of proposed parameters, known before training (a picklable callable)."""

    space: StudySpace
    count: str
    cache: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __call__(self, params: dict[str, Any]) -> int:
        key = params_key(params)
        if key not in self.cache:
            model = load_config(self.space.config(params)).model
            self.cache[key] = param_counts(model, *self.space.dims).as_dict()[self.count]
        return self.cache[key]


def model_count(spec: SweepSpec, space: StudySpace) -> ModelCount | None:
    """What `Search.ask` compares proposals by: the count, under the constrained objective only."""
    return ModelCount(space, spec.objective.count) if spec.objective.type == "constrained" else None


def params_key(params: dict[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


def fingerprint(space: StudySpace, objective: Objective) -> str:
    """What a study's trials mean: its searched keys and ranges, its fixed config and its objective."""
    blob = json.dumps({"params": [dataclasses.asdict(p) for p in space.params], "base": space.base,
                       "objective": [objective.type, objective.metric, objective.count, objective.target]},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def rdb_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage for `url`; a SQLite file is put in WAL mode with `synchronous=NORMAL`.

    SQLite's default journal syncs the disk at every commit, and Optuna commits each
    parameter, attribute and state on its own: ~10 commits per trial, 5-10 ms each on a VM
    disk. In WAL mode with `synchronous=NORMAL` a commit is an append to the log; a commit
    survives the driver being killed, and only an OS crash or power loss can lose the last
    few (the study stays consistent either way). Other processes on the same machine read the
    file while the sweep writes it (optuna-dashboard, `optuna.load_study`); WAL needs them all
    on one machine, so not a database on a network file system shared between hosts.
    """
    storage = optuna.storages.RDBStorage(url)
    if storage.engine.dialect.name == "sqlite" and storage.engine.url.database not in (None, "", ":memory:"):
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # connections opened before the listener reconnect with it
    return storage


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_study(spec: SweepSpec, space: StudySpace, storage: str | optuna.storages.BaseStorage, sweep_id: str,
               trials: int) -> optuna.Study:
    """Create `space`'s study for sweep `sweep_id`, or load it if this sweep made it.

    A study of the same name made by another sweep, or by this one for another space or
    objective, raises StudyMismatch: its trials would be mixed into this sweep's answer.
    A storage URL is opened with `rdb_storage`.
    """
    o = spec.objective
    if isinstance(storage, str):
        storage = rdb_storage(storage)
    study = optuna.create_study(storage=storage, study_name=space.study, load_if_exists=True,
                                sampler=make_sampler(spec, space, trials),
                                directions=["minimize", "minimize"] if o.type == "pareto" else ["minimize"])
    mine = fingerprint(space, o)
    owner, made_for = study.user_attrs.get(OWNER_ATTR), study.user_attrs.get(SPACE_ATTR)
    if owner is None and not study.get_trials(deepcopy=False):
        study.set_user_attr(OWNER_ATTR, sweep_id)
        study.set_user_attr(SPACE_ATTR, mine)
    elif owner != sweep_id:
        raise StudyMismatch(f"the storage already holds study {space.study!r} of another sweep"
                            f" ({owner or 'unknown'}); use another --storage, or another experiment name")
    elif made_for != mine:
        raise StudyMismatch(f"study {space.study!r} was made for another search space or objective; "
                            "start a new sweep (another --out) to search this one")
    return study


def check_study(spec: SweepSpec, space: StudySpace, storage: optuna.storages.BaseStorage, sweep_id: str) -> bool:
    """Without writing anything: True if the study exists and is this sweep's, False if absent."""
    try:
        study = optuna.load_study(study_name=space.study, storage=storage)
    except KeyError:
        return False
    owner, made_for = study.user_attrs.get(OWNER_ATTR), study.user_attrs.get(SPACE_ATTR)
    if owner != sweep_id:
        raise StudyMismatch(f"the storage already holds study {space.study!r} of another sweep"
                            f" ({owner or 'unknown'}); use another --storage, or another experiment name")
    if made_for != fingerprint(space, spec.objective):
        raise StudyMismatch(f"study {space.study!r} was made for another search space or objective; "
                            "start a new sweep (another --out) to search this one")
    return True


class Search:
    """One study, asked and told by one driver: `ask()` -> a trial worth training, `tell(...)` its result.

    The driver is the only writer while it runs, so what it has asked and told is kept in
    memory: the parameters tried (trained, stopped early or training) and the smallest
    model known to meet the constrained objective's target. Reading them back from the
    study for every proposal would cost time linear in the study's size.
    """

    def __init__(self, study: optuna.Study, space: StudySpace, objective: Objective,
                 count: ModelCount | None = None):
        self.study, self.space, self.objective, self.count = study, space, objective, count
        self.suggest = DefineByRun(space.params)
        self.tried: dict[tuple, int] = {}  # params -> number of a trial that trained or trains them
        self.best: tuple[int, int] | None = None  # (count, number) of the smallest model meeting the target
        for t in study.get_trials(deepcopy=False, states=TRIED):
            self.tried.setdefault(params_key(t.params), t.number)
            if t.state == optuna.trial.TrialState.COMPLETE and t.constraints:
                self._note_feasible(t.values[0], t.constraints, t.number)

    def _note_feasible(self, count: float, constraints: dict[str, float], number: int) -> None:
        if all(c <= 0 for c in constraints.values()) and (self.best is None or count < self.best[0]):
            self.best = (int(count), number)

    def skip_reason(self, params: dict[str, Any]) -> tuple[str, str, int] | None:
        """(status, the user attribute naming the trial that makes it one, that trial's number), or None."""
        original = self.tried.get(params_key(params))
        if original is not None:
            return "repeat", "repeat_of", original
        if self.count is not None and self.best is not None and self.count(params) >= self.best[0]:
            return "larger", "larger_than", self.best[1]
        return None

    def ask(self) -> optuna.Trial:
        """A trial worth training: parameters not trained or training yet and, under the
        constrained objective, smaller than the smallest model already meeting the target.

        Samplers re-propose points of small discrete spaces (TPE often does), and training is
        deterministic, so a repeat is not trained; nor is a model that cannot be the answer. Such
        a proposal is told FAIL (which samplers ignore) with user attributes `status: repeat`
        and `repeat_of`, or `status: larger` and `larger_than`. After MAX_REPEATS of them in a
        row the sampler is stuck on what it knows, so the trial gets uniformly random
        parameters worth training; if none turn up either, the space looks exhausted and the
        sampler's proposal is trained whatever it is.
        """
        for _ in range(MAX_REPEATS):
            trial = self.study.ask()
            self.suggest(trial)
            reason = self.skip_reason(trial.params)
            if reason is None:
                return self._started(trial)
            status, attr, number = reason
            trial.set_user_attr("status", status)
            trial.set_user_attr(attr, number)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        uniform = optuna.samplers.RandomSampler(seed=trial.number)
        last = self.study.get_trials(deepcopy=False)[-1]
        for _ in range(MAX_REPEATS):
            params = {name: uniform.sample_independent(self.study, last, name, distribution)
                      for name, distribution in last.distributions.items()}
            if self.skip_reason(params) is None:
                self.study.enqueue_trial(params)
                break
        trial = self.study.ask()
        self.suggest(trial)
        return self._started(trial)

    def _started(self, trial: optuna.Trial) -> optuna.Trial:
        self.tried[params_key(trial.params)] = trial.number
        return trial

    def tell(self, trial: optuna.Trial, status: str, result: dict[str, Any] | None) -> None:
        """Record a trained trial's result on its Optuna trial, then tell the study.

        ok -> COMPLETE with the objective's values, pruned (stopped early) -> PRUNED,
        diverged and failed -> FAIL. Under the constrained objective `error - target` is the
        trial's constraint (feasible when <= 0), which TPE and NSGA-II read when they sample.
        The result becomes a user attribute, so a row can be rebuilt from the study alone.
        """
        tell_result(self.study, trial, status, result, self.objective)
        if status in ("ok", "pruned"):
            if status == "ok" and self.objective.type == "constrained":
                self._note_feasible(result[self.objective.count],
                                    {"error_target": result[self.objective.metric] - self.objective.target},
                                    trial.number)
        elif self.tried.get(params_key(trial.params)) == trial.number:
            del self.tried[params_key(trial.params)]  # a failed point may be tried again


def tell_result(study: optuna.Study, trial: optuna.Trial, status: str, result: dict[str, Any] | None,
                objective: Objective) -> None:
    """Tell `study` how `trial` ended (see Search.tell); the result's RESULT_KEYS are kept with it."""
    states = optuna.trial.TrialState
    state = {"ok": states.COMPLETE, "pruned": states.PRUNED}.get(status, states.FAIL)
    values = None
    if result:
        trial.set_user_attr("result", {k: null_if_nan(result[k]) for k in RESULT_KEYS if k in result})
    if status in ("ok", "pruned") and objective.type == "constrained":
        trial.set_constraint("error_target", result[objective.metric] - objective.target)
    if status == "ok":
        count = int(result[objective.count])
        values = count if objective.type == "constrained" else [result[objective.metric], count]
    trial.set_user_attr("status", status)
    study.tell(trial, values, state=state)
