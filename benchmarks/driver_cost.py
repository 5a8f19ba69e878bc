"""`driver_cost`: what the sweep's driver spends on Optuna per trial, with 100 or 2,000 trials
already in a study.

A study of teacher_scaling's plain network (`standard`: width 2-512 log, depth 1-3, a
continuous lr, so that no sweep exhausts the space) in a fresh SQLite file is filled with
`--trials` finished trials (85% complete, 10% pruned, 5% skipped repeats, synthetic errors
that fall with size), then the driver asks a trial worth training and tells its result
`--asks` times, as the searcher does for each Tune trial:

- ask: `Search.ask()` and `set_user_attr("ray_trial_id")` (`SweepSearcher.suggest`);
- tell: `Search.tell(trial, "ok", result)` (`SweepSearcher.on_trial_complete`).

Run against the code before the engine split (commit 3de1a57, where the searcher was
`StudySearch`, an OptunaSearch subclass whose `suggest` called `ask_untried` and whose
`on_trial_complete` told the result) it times those instead:

    git worktree add /tmp/before 3de1a57
    PYTHONPATH=/tmp/before python benchmarks/driver_cost.py      # before
    python -m benchmarks.driver_cost                              # after
    python -m benchmarks.driver_cost --profile 2000 > profile.txt # where the time goes

This file imports nothing of `benchmarks` so that it runs against either checkout.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

import optuna
import yaml

from hypersweep import search_space

FAMILY = "standard"
TARGET = 0.01  # the constrained objective's error target
SIZES = {"tiny": ([20], 3), "quick": ([100, 2000], 10), "full": ([100, 2000], 30)}  # trials in the study, asks

try:  # after the split (a4a18ad): the Optuna side on its own
    from hypersweep import search as _search

    CODE = "after"
except ImportError:  # before it (3de1a57): everything in hypersweep.sweep
    _search = None
    CODE = "before"


def space_yaml(objective: str) -> dict:
    """teacher_scaling.yaml's plain network (its `standard` family), written out here so that the
    same space loads in the code before the split too."""
    o = ({"type": "constrained", "metric": "val_error", "report": "test_error", "count": "params_primary",
          "target": TARGET} if objective == "constrained" else
         {"type": "pareto", "metric": "val_error", "report": "test_error", "count": "params_primary",
          "targets": [0.1, 0.03, 0.01, 0.003, 0.001]})
    return {"experiment": "driver_cost", "task": {"name": "teacher", "dim_x": 2, "dim_i": 4, "seed": 0},
            "model": {"activation": "tanh"}, "train": {"batch_size": 64, "optimizer": "adam", "seed": 0},
            "objective": o, "sampler": {"name": "tpe", "seed": 0}, "budget": {"trials": 80, "epochs": 80},
            "families": {FAMILY: {"primary": {"width": {"low": 2, "high": 512, "log": True},
                                              "depth": {"choices": [1, 2, 3]}},
                                  "train": {"lr": {"low": 0.001, "high": 0.01, "log": True}}}}}


def spec_for(objective: str, tmp: Path):
    path = tmp / f"{objective}.yaml"
    path.write_text(yaml.safe_dump(space_yaml(objective)))
    spec = search_space.load(str(path))
    return spec, spec.studies[0]


def size_of(params: dict[str, Any]) -> int:
    """params_primary of a plain network on the teacher task (input 2 + 4, output 1)."""
    w, d = params["model.primary.width"], params["model.primary.depth"]
    return 6 * w + w + (d - 1) * (w * w + w) + w + 1


def outcome(params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A plausible result: the error falls with the size and is best near lr 3e-3."""
    size = size_of(params)
    error = 0.4 * size ** -0.6 * (1 + abs(math.log10(params["train.lr"] / 3e-3))) * math.exp(rng.gauss(0, 0.2))
    return {"status": "ok", "final": True, "val_error": error, "test_error": error * 1.05, "epoch": 80,
            "params_primary": size, "params_conditioner": 0, "params_total": size, "wall_s": 3.5,
            "samples_per_s": 1e5, "device": "cpu", "threads": 1, "node": "n", "node_id": "x",
            "started_at": time.time()}


def distributions(space) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna's distributions of the space's searched keys (as `DefineByRun` suggests them)."""
    dists = {}
    for p in space.params:
        if p.kind == "categorical":
            dists[p.name] = optuna.distributions.CategoricalDistribution(list(p.choices))
        elif p.kind == "int":
            dists[p.name] = optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log)
        else:
            dists[p.name] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
    return dists


def random_params(dists: dict, rng: random.Random) -> dict[str, Any]:
    params = {}
    for name, d in dists.items():
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            params[name] = rng.choice(d.choices)
        elif isinstance(d, optuna.distributions.IntDistribution):
            params[name] = min(d.high, int(math.exp(rng.uniform(math.log(d.low), math.log(d.high + 1)))))
        else:
            params[name] = math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
    return params


def fill(study: optuna.Study, space, objective, n: int, seed: int = 0) -> None:
    """Add `n` finished trials to `study`, as a sweep would have left them."""
    rng = random.Random(seed)
    dists = distributions(space)
    trials = []
    for number in range(n):
        params = random_params(dists, rng)
        r = outcome(params, rng)
        kind = rng.random()
        constraints = {"error_target": r["val_error"] - TARGET} if objective.type == "constrained" else None
        if kind < 0.05:
            trials.append(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params=params,
                                                    distributions=dists,
                                                    user_attrs={"status": "repeat", "repeat_of": 0}))
            continue
        user = {"status": "ok" if kind >= 0.15 else "pruned", "ray_trial_id": f"t{number}",
                "result": {k: r[k] for k in ("val_error", "test_error", "epoch", "wall_s")}}
        if kind < 0.15:
            trials.append(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params=params,
                                                    distributions=dists, user_attrs=user, constraints=constraints))
            continue
        values = [r["params_primary"]] if objective.type == "constrained" else [r["val_error"], r["params_primary"]]
        trials.append(optuna.trial.create_trial(values=values, params=params, distributions=dists,
                                                user_attrs=user, constraints=constraints))
    study.add_trials(trials)


def filled(spec, space, n: int, tmp: Path) -> str:
    """A copy in `tmp` of a SQLite file holding the study with `n` trials (built once, then cached:
    adding 2,000 trials through Optuna's ORM takes minutes here)."""
    space_id = zlib.crc32(repr((space.params, spec.objective.type, TARGET)).encode())
    cache = Path(tempfile.gettempdir()) / "hypersweep-driver-cost" / f"{spec.objective.type}-{n}-{space_id:08x}.db"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        part = cache.with_suffix(".part")
        part.unlink(missing_ok=True)
        study = optuna.create_study(storage=f"sqlite:///{part}", study_name=space.study,
                                    directions=["minimize"] * (2 if spec.objective.type == "pareto" else 1))
        fill(study, space, spec.objective, n)
        del study
        part.rename(cache)
    shutil.copyfile(cache, tmp / "optuna.db")
    return f"sqlite:///{tmp / 'optuna.db'}"


class After:
    """The driver after the split: hypersweep.search.Search, as SweepSearcher uses it."""

    def __init__(self, spec, space, storage: str, trials: int, sampler: str = "shipped"):
        study = optuna.load_study(study_name=space.study, storage=storage)
        study.set_user_attr(_search.OWNER_ATTR, "driver_cost")
        study.set_user_attr(_search.SPACE_ATTR, _search.fingerprint(space, spec.objective))
        study = _search.open_study(spec, space, storage, "driver_cost", trials)
        if sampler == "tpe" and hasattr(study.sampler, "tpe"):  # BoundedTPE wraps Optuna's TPE: ask that directly
            study.sampler = study.sampler.tpe
        self.study, self.spec, self.space = study, spec, space
        self.search = None

    def start(self) -> None:
        count = _search.model_count(self.spec, self.space)
        self.search = _search.Search(self.study, self.space, self.spec.objective, count)

    def ask(self, trial_id: str):
        trial = self.search.ask()
        trial.set_user_attr("ray_trial_id", trial_id)
        return trial

    def tell(self, trial_id: str, trial, result: dict) -> None:
        self.search.tell(trial, "ok", result)


class Before:
    """The driver at 3de1a57: StudySearch (an OptunaSearch) calling ask_untried and telling the result."""

    def __init__(self, spec, space, storage: str, trials: int):
        from hypersweep.sweep import make_sampler

        self.study = optuna.load_study(storage=optuna.storages.RDBStorage(storage), study_name=space.study,
                                       sampler=make_sampler(spec, space, trials))
        self.spec, self.space, self.storage, self.trials = spec, space, storage, trials
        self.searcher = None

    def start(self) -> None:
        from hypersweep.sweep import StudySearch

        self.searcher = StudySearch(self.spec, self.space, optuna.storages.RDBStorage(self.storage), self.trials)

    def ask(self, trial_id: str):
        self.searcher.suggest(trial_id)

    def tell(self, trial_id: str, trial, result: dict) -> None:
        self.searcher.on_trial_complete(trial_id, result)


def params_of(driver, trial_id: str, trial) -> dict[str, Any]:
    if trial is not None:
        return trial.params
    return driver.searcher._ot_trials[trial_id].params  # the old code kept them only there


def start_running(storage: str, space, k: int) -> None:
    """Leave `k` trials RUNNING in the study, as the other slots of a sweep do while the driver asks."""
    study = optuna.load_study(study_name=space.study, storage=storage, sampler=optuna.samplers.RandomSampler(seed=7))
    for _ in range(k):
        t = study.ask()
        for p in space.params:
            if p.kind == "categorical":
                t.suggest_categorical(p.name, list(p.choices))
            elif p.kind == "int":
                t.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
            else:
                t.suggest_float(p.name, p.low, p.high, log=p.log)


def measure(objective_type: str, n: int, asks: int, profile: bool = False, running: int = 0,
            sampler: str = "shipped") -> dict[str, Any]:
    """Fill a fresh study with `n` trials (and `running` running), then time `asks` ask + tell rounds (ms each)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec, space = spec_for(objective_type, Path(tmp))
        storage = filled(spec, space, n, Path(tmp))
        start_running(storage, space, running)
        driver = After(spec, space, storage, spec.budget.trials, sampler)
        start = time.perf_counter()
        driver.start()
        open_s = time.perf_counter() - start
        rng = random.Random(1)
        before = len(driver.study.get_trials(deepcopy=False))
        ask_ms, tell_ms = [], []
        profiler = cProfile.Profile() if profile else None
        t0 = time.perf_counter()  # the first round, untimed below: the driver's first look at the study
        trial = driver.ask("warm-up")
        driver.tell("warm-up", trial, outcome(params_of(driver, "warm-up", trial), rng))
        first_ms = (time.perf_counter() - t0) * 1e3
        for k in range(asks):
            trial_id = f"bench{k}"
            if profiler:
                profiler.enable()
            t0 = time.perf_counter()
            trial = driver.ask(trial_id)
            t1 = time.perf_counter()
            if profiler:
                profiler.disable()
            result = outcome(params_of(driver, trial_id, trial), rng)
            if profiler:
                profiler.enable()
            t2 = time.perf_counter()
            driver.tell(trial_id, trial, result)
            t3 = time.perf_counter()
            if profiler:
                profiler.disable()
            ask_ms.append((t1 - t0) * 1e3)
            tell_ms.append((t3 - t2) * 1e3)
        proposals = len(driver.study.get_trials(deepcopy=False)) - before
    out = {"code": CODE, "sampler": sampler, "objective": objective_type, "trials_in_study": n, "running": running,
           "asks": asks,
           "ask_ms_median": round(statistics.median(ask_ms), 2), "ask_ms_mean": round(statistics.fmean(ask_ms), 2),
           "tell_ms_median": round(statistics.median(tell_ms), 2),
           "tell_ms_mean": round(statistics.fmean(tell_ms), 2),
           "proposals_per_ask": round(proposals / (asks + 1), 2), "first_round_ms": round(first_ms, 1),
           "open_s": round(open_s, 3)}
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
        out["profile"] = text.getvalue()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default="100,2000", help="trials already in the study (comma-separated)")
    parser.add_argument("--asks", type=int, default=30, help="ask + tell rounds timed at each size")
    parser.add_argument("--objective", choices=["pareto", "constrained", "both"], default="both")
    parser.add_argument("--running", type=int, default=0, help="trials left running in the study (other slots)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the timed rounds")
    parser.add_argument("--sampler", default="shipped", help="shipped (make_sampler's), tpe (Optuna's plain TPE), "
                        "or both, comma-separated")
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # experimental-feature and deprecation warnings of either checkout
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objectives = ["pareto", "constrained"] if args.objective == "both" else [args.objective]
    rows = []
    for objective in objectives:
        for n in map(int, args.trials.split(",")):
            for sampler in args.sampler.split(","):
                row = measure(objective, n, args.asks, args.profile, args.running, sampler)
                if "profile" in row:
                    print(row.pop("profile"))
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
