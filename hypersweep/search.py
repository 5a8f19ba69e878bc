"""The Optuna side of a sweep: studies, samplers, what to train next, what a result means.

One Optuna study per family and variant (`StudySpace.study`) in an RDB storage is the
source of truth: it holds every trained trial's parameters, its state and (as user
attributes) its result. `Search` wraps one study for a driver that asks and tells many
times: the sampler proposes on an in-memory copy of the study (bounded for TPE), and an
index of the parameters already tried and the smallest model known to meet the target
decide what is worth training, so a result costs the same at trial 2,000 as at trial 300
and a proposal at most 1.25x more (BENCHMARKS.md, driver cost). `reconcile` makes a study and
its Parquet rows agree when a sweep resumes. Nothing here imports Ray or torch: the Tune
searcher (`hypersweep.sweep`), offline replays (`hypersweep.tabulated`) and the analysis
share it.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable
from datetime import timezone
from typing import Any, Literal

import numpy as np
import optuna
import sqlalchemy

from hypersweep.config import null_if_nan
from hypersweep.counts import param_counts
from hypersweep.results import RESULT_KEYS, ResultStore, source_id, trial_row
from hypersweep.search_space import Objective, Param, StudySpace, SweepSpec, grid_space
from hypersweep.tasks import load_config
from hypersweep.vocab import (
    DIVERGED,
    FAILED,
    INTERRUPTED,
    OK,
    OWNER_ATTR,
    PRUNED,
    RAY_TRIAL_ATTR,
    RESULT_ATTR,
    RETRIES_ATTR,
    RETRY_OF_ATTR,
    SPACE_ATTR,
    STATUS_ATTR,
    TRAINED,
    TrainedStatus,
)

MAX_REPEATS = 20  # proposals not worth training in a row before the sampler is bypassed
MAX_ENUMERATED = 10_000  # a finite space this small is searched point by point once random draws find nothing
SOURCE_KEY = "git_commit"  # in a trial's RESULT_ATTR: the driver's source_id() when it told the trial
TPE_CANDIDATES = 24  # TPE's candidates per proposal (Optuna's default): its cost per ask is linear in this
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
TRIED = (*FINISHED, optuna.trial.TrialState.RUNNING)  # states whose parameters are not trained again
Skip = Literal["repeat", "larger"]  # why Search.ask passed over a proposal


@dataclasses.dataclass(frozen=True)
class Bound:
    """How many trained trials TPE models at most: its cost per proposal is linear in them
    (at 2,000 trials this bound made an ask 2.1-2.7x cheaper: BENCHMARKS.md, driver cost)."""

    limit: int = 300  # trained trials modelled after a trim ...
    best: int = 60  # ... always including the best this many in TPE's order (ties kept whole), then the most recent
    slack: int = 100  # trials added between two trims back to `limit`


class StudyMismatch(Exception):
    """A study in the storage that this sweep must not write into (one line for the user)."""


class Exhausted(Exception):
    """Every point of a study's finite space worth training was trained or is training (one line)."""


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


class EndlessGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler without its `study.stop()` once the grid is used up: the sweep
    counts its trials itself, and stop() outside `Study.optimize` raises."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def make_sampler(spec: SweepSpec, space: StudySpace, trials: int) -> optuna.samplers.BaseSampler:
    s = spec.sampler
    if s.name == "grid":
        return EndlessGridSampler(grid_space(space), seed=s.seed)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=s.population or max(4, min(50, trials // 4)),
                                             seed=s.seed)
    return optuna.samplers.TPESampler(n_startup_trials=s.startup_trials or max(3, min(10, trials // 4)),
                                      n_ei_candidates=TPE_CANDIDATES, seed=s.seed, multivariate=True)


def tpe_best(trials: list[optuna.trial.FrozenTrial], directions: list[optuna.study.StudyDirection],
             n: int) -> list[int]:
    """Indices into `trials` (finished, oldest first) of the best `n`, in the order TPE fills its
    "good" group: feasible complete trials by value (several objectives: by non-domination
    rank), then feasible pruned ones (furthest trained first), then infeasible ones (least
    violation first), ties in trial order. Complete trials tied with the last one taken are all
    taken (equal values; the whole last Pareto rank): TPE itself breaks those ties (by
    hypervolume for several objectives) on whatever is kept, so none may be dropped here.
    """
    sign = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in directions])
    violation = [sum(max(0.0, c) for c in t.constraints.values()) for t in trials]
    complete = [k for k, t in enumerate(trials) if t.state == optuna.trial.TrialState.COMPLETE and violation[k] <= 0]
    values = np.array([trials[k].values for k in complete], dtype=float).reshape(len(complete), -1) * sign
    rank = values[:, 0] if len(directions) == 1 else pareto_ranks(values, enough=n)
    by_rank = np.argsort(rank, kind="stable")
    if 0 < n <= len(complete):  # the n best complete trials, and every one tied with the last of them
        return [complete[k] for k in by_rank if rank[k] <= rank[by_rank[n - 1]]]

    def pruned_key(k: int) -> tuple[float, float]:
        steps = trials[k].intermediate_values
        if not steps:
            return 1.0, 0.0
        last = max(steps)
        return -last, steps[last] * sign[0] if np.isfinite(steps[last]) else np.inf

    pruned = [k for k, t in enumerate(trials) if t.state == optuna.trial.TrialState.PRUNED and violation[k] <= 0]
    infeasible = sorted((k for k in range(len(trials)) if violation[k] > 0), key=lambda k: violation[k])
    return ([complete[k] for k in by_rank] + sorted(pruned, key=pruned_key) + infeasible)[:n]


def pareto_ranks(values: np.ndarray, enough: int | None = None) -> np.ndarray:
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


def fingerprint(space: StudySpace, objective: Objective, legacy: bool = False) -> str:
    """What a study's trials mean: its searched keys and ranges, its fixed config and its objective,
    whatever the order of the keys in the file. `legacy`: as studies made before 2026-12-04 recorded
    it, with the searched keys in the file's order (the same space re-saved with sorted keys then
    read as another)."""
    params = [dataclasses.asdict(p) for p in space.params]
    blob = json.dumps({"params": params if legacy else sorted(params, key=lambda p: p["name"]), "base": space.base,
                       "objective": [objective.type, objective.metric, objective.count, objective.target]},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def made_for(study: optuna.Study, space: StudySpace, objective: Objective) -> bool:
    """Whether `study` records the fingerprint of `space` and `objective` (or its legacy form)."""
    return study.user_attrs.get(SPACE_ATTR) in (fingerprint(space, objective), fingerprint(space, objective, True))


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


def directions(objective: Objective) -> list[str]:
    return ["minimize", "minimize"] if objective.type == "pareto" else ["minimize"]


def claim_study(spec: SweepSpec, space: StudySpace, storage: optuna.storages.BaseStorage, sweep_id: str) -> None:
    """Create `space`'s study for the new sweep `sweep_id`, stamped as its own, or raise StudyMismatch if a
    study of that name exists. A storage keeps study names unique, so of two sweeps racing for one name
    exactly one gets it (a new sweep never adopts a study it finds, even one not stamped yet)."""
    try:
        study = optuna.create_study(storage=storage, study_name=space.study, directions=directions(spec.objective))
    except optuna.exceptions.DuplicatedStudyError:
        raise StudyMismatch(f"the storage already holds study {space.study!r} of another sweep; use another "
                            "--storage, or another experiment name") from None
    study.set_user_attr(OWNER_ATTR, sweep_id)
    study.set_user_attr(SPACE_ATTR, fingerprint(space, spec.objective))


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
                                sampler=make_sampler(spec, space, trials), directions=directions(o))
    owner = study.user_attrs.get(OWNER_ATTR)
    if owner is None and not study.get_trials(deepcopy=False):
        study.set_user_attr(OWNER_ATTR, sweep_id)
        study.set_user_attr(SPACE_ATTR, fingerprint(space, o))
    elif owner != sweep_id:
        raise StudyMismatch(f"the storage already holds study {space.study!r} of another sweep"
                            f" ({owner or 'unknown'}); use another --storage, or another experiment name")
    elif not made_for(study, space, o):
        raise StudyMismatch(f"study {space.study!r} was made for another search space or objective; "
                            "start a new sweep (another --out) to search this one")
    return study


def check_study(spec: SweepSpec, space: StudySpace, storage: optuna.storages.BaseStorage, sweep_id: str) -> bool:
    """Without writing anything: True if the study exists and is this sweep's, False if absent."""
    try:
        study = optuna.load_study(study_name=space.study, storage=storage)
    except KeyError:
        return False
    owner = study.user_attrs.get(OWNER_ATTR)
    if owner != sweep_id:
        raise StudyMismatch(f"the storage already holds study {space.study!r} of another sweep"
                            f" ({owner or 'unknown'}); use another --storage, or another experiment name")
    if not made_for(study, space, spec.objective):
        raise StudyMismatch(f"study {space.study!r} was made for another search space or objective; "
                            "start a new sweep (another --out) to search this one")
    return True


class Accepted(optuna.samplers.BaseSampler):
    """The sampler of a study under `Search`: it hands out the parameters Search accepted (`params`).

    Search proposes on its in-memory view with the sweep's sampler; asking the study itself
    with this one costs no sampling, and no more writes than the trial's own. A trial queued
    with fixed parameters (`enqueue_trial`) keeps them: Optuna uses those before any sampler.
    """

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def infer_relative_search_space(self, study, trial) -> dict:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict:
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        return self.params[param_name]


class Search:
    """One study, asked and told by one driver: `ask()` -> a trial worth training, `tell(...)` its result.

    The study holds only what was trained (and what was training when a driver stopped):
    the sampler proposes on `view`, an in-memory study of the same trials, and a proposal
    not worth training (see `ask`) is told FAIL there, never written to the study. An
    accepted proposal is asked from the study with the same parameters, so the
    study's trial numbers count trained trials. The study's own sampler is taken over for
    the view; the study is left an `Accepted` sampler, which hands out the accepted point.

    The driver is the only writer while it runs, so what it has asked and told is kept in
    memory: the parameters tried (trained, stopped early or training) and the smallest model
    known to meet the constrained objective's target. TPE's cost per proposal grows with the
    trials it models, so past `bound.limit` trained trials its view keeps only the best and the
    most recent (`Bound`); other samplers model every trained trial.
    """

    def __init__(self, study: optuna.Study, space: StudySpace, objective: Objective,
                 count: ModelCount | None = None, bound: Bound | None = Bound()):
        self.study, self.space, self.objective, self.count = study, space, objective, count
        self.sampler, study.sampler = study.sampler, Accepted()
        # Only TPE is bounded: a grid needs every visited point, NSGA-II its generations.
        self.bound = bound if isinstance(self.sampler, optuna.samplers.TPESampler) else None
        self.suggest = DefineByRun(space.params)
        self.tried: dict[tuple, int] = {}  # params -> number of a trial that trained or trains them
        self.best: tuple[int, int] | None = None  # (count, number) of the smallest model meeting the target
        self.proposals = 0  # the sampler's proposals, accepted or not
        self.skipped: collections.Counter[Skip] = collections.Counter()
        self.trained: list[optuna.trial.FrozenTrial] = []  # the study's trained trials, oldest first
        self.pending: dict[int, dict[str, Any]] = {}  # study trial number -> its proposal's sampler attributes
        self.queued = 0  # trials queued in the study before this driver (reconcile's retries), asked first
        # Points in the space when it is finite (no float ranges), else None.
        self.size = space.grid_size() if all(p.kind != "float" for p in space.params) else None
        for t in study.get_trials(deepcopy=False):
            if t.state in TRIED:
                self.tried.setdefault(params_key(t.params), t.number)
            if t.state == optuna.trial.TrialState.COMPLETE and t.constraints:
                self._note_feasible(t.values[0], t.constraints, t.number)
            if t.state in FINISHED or t.user_attrs.get(STATUS_ATTR) in (DIVERGED, FAILED):
                self.trained.append(t)
            self.queued += t.state == optuna.trial.TrialState.WAITING
        self.view = self._new_view()

    @property
    def modelled(self) -> list[optuna.trial.FrozenTrial]:
        """The trained trials the sampler models now, oldest first."""
        return self._modelled

    def _new_view(self) -> optuna.Study:
        """A fresh in-memory study of the trained trials (cut to the bound), for the sampler to propose on."""
        self._modelled = list(self.trained)
        if self.bound is not None:  # TPE ignores FAIL trials
            finished = [t for t in self.trained if t.state in FINISHED]
            self._modelled = finished if len(finished) <= self.bound.limit else self._cut(finished)
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory" each time
        try:
            view = optuna.create_study(directions=self.study.directions, sampler=self.sampler)
        finally:
            optuna.logging.set_verbosity(verbosity)
        view.add_trials(self._modelled)
        self.in_view = len(self._modelled)  # trials in the view, proposals passed over included
        return view

    def _cut(self, finished: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
        """The best `bound.best` of `finished` in TPE's order and the most recent others, `bound.limit` in all."""
        best = set(tpe_best(finished, self.study.directions, self.bound.best))
        recent = [k for k in range(len(finished) - 1, -1, -1) if k not in best][:max(0, self.bound.limit - len(best))]
        return [finished[k] for k in sorted(best.union(recent))]

    def _note_feasible(self, count: float, constraints: dict[str, float], number: int) -> None:
        if all(c <= 0 for c in constraints.values()) and (self.best is None or count < self.best[0]):
            self.best = (int(count), number)

    def skip_reason(self, params: dict[str, Any]) -> Skip | None:
        """Why a proposal is not worth training, or None."""
        if params_key(params) in self.tried:
            return "repeat"
        if self.count is not None and self.best is not None and self.count(params) >= self.best[0]:
            return "larger"
        return None

    def ask(self) -> optuna.Trial:
        """A trial worth training: parameters not trained or training yet and, under the
        constrained objective, smaller than the smallest model already meeting the target.

        Samplers re-propose points of small discrete spaces (TPE often does), and training is
        deterministic, so a repeat is not trained; nor is a model that cannot be the answer.
        Such a proposal is told FAIL in the view (samplers ignore FAIL trials) and counted in
        `skipped`. After MAX_REPEATS of them in a row the sampler is stuck on what it knows,
        so the trial gets uniformly random parameters worth training; if none turn up either,
        the space looks exhausted and the sampler's proposal is trained whatever it is.
        Trials queued in the study before (a resumed sweep's interrupted trials) come first.

        A finite space may run out: when the random draws find nothing worth training either, its
        points are searched one by one (up to MAX_ENUMERATED of them), and if none is left, `Exhausted`
        is raised instead of training a point again.
        """
        if self.queued:  # it keeps its fixed parameters; the sampler's proposal answers for any it lacks
            self.queued -= 1
            return self._accept(self._propose())
        if self.exhausted():
            raise Exhausted(self.exhausted_line())
        for _ in range(MAX_REPEATS):
            proposal = self._propose()
            reason = self.skip_reason(proposal.params)
            if reason is None:
                return self._accept(proposal)
            self.skipped[reason] += 1
            self.view.tell(proposal, state=optuna.trial.TrialState.FAIL)
        uniform = optuna.samplers.RandomSampler(seed=self.proposals)
        draws = ({name: uniform.sample_independent(self.view, proposal, name, distribution)
                  for name, distribution in proposal.distributions.items()} for _ in range(MAX_REPEATS))
        worth = next((params for params in draws if self.skip_reason(params) is None), None)
        if worth is None and self.size is not None and self.size <= MAX_ENUMERATED:
            worth = next((params for params in self._points() if self.skip_reason(params) is None), None)
            if worth is None:
                raise Exhausted(self.exhausted_line())
        if worth is not None:  # else a large space the draws missed: the sampler's proposal is trained
            self.view.enqueue_trial(worth)
        return self._accept(self._propose())

    def exhausted(self) -> bool:
        """Whether every point of a finite space was trained or is training (the cheap test); never while
        retries are queued (their points are owed again)."""
        return not self.queued and self.size is not None and len(self.tried) >= self.size

    def _points(self):
        """Every point of a finite space, in grid order."""
        names = [p.name for p in self.space.params]
        return (dict(zip(names, values)) for values in itertools.product(*(p.grid() for p in self.space.params)))

    def exhausted_line(self) -> str:
        larger = "" if self.exhausted() else " (the others are no smaller than a model already meeting the target)"
        return f"search space exhausted: {len(self.tried)} distinct points trained{larger}"

    def ask_batch(self, k: int) -> list[optuna.Trial]:
        """`k` trials worth training together (one pack), by the rules of `ask`: none repeats
        parameters tried or in flight (those earlier in the batch included), queued retries
        come first. Tell them in any order.

        The sampler proposes all `k` from the same results and, as for trials in flight in a
        sweep, without the others of the batch: showing them to TPE as RUNNING trials in the
        view (Optuna's constant liar) made batches of 8 need more trials to the answer, not
        fewer (BENCHMARKS.md, batched asks).
        """
        trials: list[optuna.Trial] = []
        for _ in range(k):
            try:
                trials.append(self.ask())
            except Exhausted:
                if not trials:
                    raise
                break  # the next ask says so
        return trials

    def _propose(self) -> optuna.Trial:
        proposal = self.view.ask()
        self.suggest(proposal)
        self.proposals += 1
        self.in_view += 1
        return proposal

    def _accept(self, proposal: optuna.Trial) -> optuna.Trial:
        """Ask the study for a trial with `proposal`'s parameters: the trial to train."""
        self.study.sampler.params = proposal.params
        trial = self.study.ask()
        self.suggest(trial)  # the study's sampler answers with the proposal's values
        return self._started(trial, proposal)

    def _started(self, trial: optuna.Trial, proposal: optuna.Trial) -> optuna.Trial:
        # The proposal leaves the view until its result comes (as a new trial, see tell): a view
        # is rebuilt from `trained` alone, which would strand a proposal still running in it.
        self.pending[trial.number] = self.view.get_trials(deepcopy=False)[proposal.number].system_attrs
        self.view.tell(proposal, state=optuna.trial.TrialState.FAIL)
        self.tried[params_key(trial.params)] = trial.number
        return trial

    def tell(self, trial: optuna.Trial, status: TrainedStatus, result: dict[str, Any] | None) -> None:
        """Record a trained trial's result on its Optuna trial, tell the study, and show it to the sampler.

        ok -> COMPLETE with the objective's values, pruned (stopped early) -> PRUNED,
        diverged and failed -> FAIL. Under the constrained objective `error - target` is the
        trial's constraint (feasible when <= 0), which TPE and NSGA-II read when they sample.
        The result becomes a user attribute, so a row can be rebuilt from the study alone.
        """
        told = tell_result(self.study, trial, status, result, self.objective)
        if status == OK and self.objective.type == "constrained":
            self._note_feasible(told.values[0], told.constraints, told.number)
        if status not in (OK, PRUNED) and self.tried.get(params_key(trial.params)) == trial.number:
            del self.tried[params_key(trial.params)]  # a failed point may be tried again
        # The sampler's own attributes of the proposal (a grid point, an NSGA-II generation) go with it.
        modelled = optuna.trial.create_trial(
            state=told.state, values=told.values, params=told.params, distributions=told.distributions,
            system_attrs=self.pending.pop(trial.number, {}), constraints=told.constraints or None)
        self.trained.append(modelled)
        over_bound = self.bound is not None and len(self._modelled) >= self.bound.limit + self.bound.slack
        # Passed-over proposals pile up as FAIL trials in the view, and a proposal reads every trial.
        if over_bound or self.in_view > 2 * len(self._modelled) + 100:
            self.view = self._new_view()
        elif self.bound is None or modelled.state in FINISHED:
            self.view.add_trial(modelled)
            self._modelled.append(modelled)
            self.in_view += 1


def tell_result(study: optuna.Study, trial: optuna.Trial, status: TrainedStatus, result: dict[str, Any] | None,
                objective: Objective) -> optuna.trial.FrozenTrial:
    """Tell `study` how `trial` ended (see Search.tell); the result's RESULT_KEYS are kept with it."""
    states = optuna.trial.TrialState
    state = {OK: states.COMPLETE, PRUNED: states.PRUNED}.get(status, states.FAIL)
    values = None
    if result:  # with the code that trained it, so that a row rebuilt from the study names it too
        trial.set_user_attr(RESULT_ATTR, {**{k: null_if_nan(result[k]) for k in RESULT_KEYS if k in result},
                                          SOURCE_KEY: source_id()})
    if status in (OK, PRUNED) and objective.type == "constrained":
        trial.set_constraint("error_target", result[objective.metric] - objective.target)
    if status == OK:
        count = int(result[objective.count])
        values = count if objective.type == "constrained" else [result[objective.metric], count]
    trial.set_user_attr(STATUS_ATTR, status)
    return study.tell(trial, values, state=state)


def reconcile(spec: SweepSpec, space: StudySpace, storage: optuna.storages.BaseStorage, store: ResultStore,
              log: Callable[[str], None] = print) -> int:
    """Make a study and its Parquet rows agree after an interruption; return trials done.

    A trial told to Optuna whose row was not written yet gets its row from the study. A
    trial still RUNNING was interrupted: it is marked FAIL with `status: interrupted` and its
    parameters are queued again (the new trial's `retry_of` names it), so the resumed sweep
    reruns it. A driver killed between asking a trial and setting its parameters leaves one
    with some unset: it never reached training, and is marked but not queued (the budget still
    owes it, so the resumed sweep asks a new one).
    """
    study = optuna.load_study(study_name=space.study, storage=storage)
    have = store.finished(space.family, space.study)
    for t in study.get_trials(deepcopy=False):
        status = t.user_attrs.get(STATUS_ATTR)
        if t.state == optuna.trial.TrialState.RUNNING:
            mark_interrupted(storage, space.study, t.number)
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            if set(t.params) != {p.name for p in space.params}:
                log(f"[{space.study}] trial #{t.number} was interrupted before its parameters were set")
                continue
            study.enqueue_trial(t.params, user_attrs={RETRY_OF_ATTR: t.number}, skip_if_exists=False)
            log(f"[{space.study}] trial #{t.number} was interrupted: queued again")
        elif t.state.is_finished() and t.number not in have and status in TRAINED:  # not a legacy repeat/larger
            cfg = load_config(space.config(t.params))
            error = "recorded in the study only (driver stopped)" if status == FAILED else None
            result = t.user_attrs.get(RESULT_ATTR) or {}
            row = trial_row(spec, space, cfg, t.number, t.user_attrs.get(RAY_TRIAL_ATTR), status, result, error)
            # The trial's own end, code and restarts, not the rebuild's.
            row["finished_at"] = t.datetime_complete.astimezone(timezone.utc) if t.datetime_complete else None
            row["git_commit"] = result.get(SOURCE_KEY)
            row["retries"] = t.user_attrs.get(RETRIES_ATTR, 0)
            store.write_trial(space.family, space.study, cfg, row, [])
            have.add(t.number)
            log(f"[{space.study}] trial #{t.number}: row rebuilt from the study")
    return len(have)


def mark_interrupted(storage: optuna.storages.BaseStorage, study: str, number: int) -> None:
    """Set `status: interrupted` on a trial that was running when its driver stopped.

    Optuna's Study can write a user attribute only on a trial it asked in this process;
    a trial left RUNNING by a driver that died is reached through the storage the sweep
    opened, by its study name and number.
    """
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study), number)
    storage.set_trial_user_attr(trial_id, STATUS_ATTR, INTERRUPTED)
