"""`driver_cost`: what the sweep's driver spends on Optuna per trial, with 300 or 2,000 trials
already in a study.

A study of teacher_scaling's plain network (`standard`: width 2-512 log, depth 1-3, a
continuous lr, so that no sweep exhausts the space) in a fresh SQLite file is filled with
`--trials` finished trials (85% complete, 10% pruned, 5% failed, synthetic errors that fall
with size), then the driver asks a trial worth training and tells its result `--asks` times,
as the searcher does for each Tune trial:

- ask: `Search.ask()` and `set_user_attr("ray_trial_id")` (`SweepSearcher.suggest`);
- tell: `Search.tell(trial, "ok", result)` (`SweepSearcher.on_trial_complete`).

`--sampler tpe` lets TPE model every trained trial (`Search(bound=None)`; at 24d17a4, Optuna's
TPE itself instead of `BoundedTPE`); `shipped` bounds it as a sweep does (`search.Bound`: at
most 300 + 100). `--before PATH` also runs the same
measurement against another checkout (this file runs there through PYTHONPATH, so it imports
nothing of `benchmarks`) and prints the ratio of each median ask, side by side in one run:

    git worktree add /tmp/before 24d17a4
    python -m benchmarks.driver_cost --trials 300,2000 --before /tmp/before
    python -m benchmarks.driver_cost --profile --trials 2000 > profile.txt  # where the time goes
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

import optuna
import yaml

from hypersweep import search, search_space

FAMILY = "standard"
TARGET = 0.01  # the constrained objective's error target
SKIPPED = ("repeat", "larger")  # what a proposal not worth training was marked, where it reached the study


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
        if kind < 0.05:  # a trial that raised: FAIL, and it stays in the study
            trials.append(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params=params,
                                                    distributions=dists,
                                                    user_attrs={"status": "failed", "ray_trial_id": f"t{number}"}))
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
    space_id = zlib.crc32(repr((space.params, spec.objective.type, TARGET, "failed")).encode())
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


class Driver:
    """hypersweep.search.Search, as SweepSearcher uses it."""

    def __init__(self, spec, space, storage: str, trials: int, sampler: str = "shipped"):
        study = optuna.load_study(study_name=space.study, storage=storage)
        study.set_user_attr(search.OWNER_ATTR, "driver_cost")
        study.set_user_attr(search.SPACE_ATTR, search.fingerprint(space, spec.objective))
        study = search.open_study(spec, space, storage, "driver_cost", trials)
        if sampler == "tpe" and hasattr(study.sampler, "tpe"):  # 24d17a4's BoundedTPE wraps Optuna's TPE: ask that
            study.sampler = study.sampler.tpe
        self.study, self.spec, self.space, self.sampler = study, spec, space, sampler
        self.search: Any = None

    def start(self) -> None:
        count = search.model_count(self.spec, self.space)
        # This checkout bounds what TPE models through Search(bound=...); None models every trial.
        unbounded = {"bound": None} if self.sampler == "tpe" and hasattr(search, "Bound") else {}
        self.search = search.Search(self.study, self.space, self.spec.objective, count, **unbounded)

    def ask(self, trial_id: str):
        trial = self.search.ask()
        trial.set_user_attr("ray_trial_id", trial_id)
        return trial

    def tell(self, trial_id: str, trial, result: dict) -> None:
        self.search.tell(trial, "ok", result)


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
        driver = Driver(spec, space, storage, spec.budget.trials, sampler)
        start = time.perf_counter()
        driver.start()
        open_s = time.perf_counter() - start
        rng = random.Random(1)
        before = len(driver.study.get_trials(deepcopy=False))
        ask_ms, tell_ms = [], []
        profiler = cProfile.Profile() if profile else None
        t0 = time.perf_counter()  # the first round, untimed below: the driver's first look at the study
        trial = driver.ask("warm-up")
        driver.tell("warm-up", trial, outcome(trial.params, rng))
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
            result = outcome(trial.params, rng)
            if profiler:
                profiler.enable()
            t2 = time.perf_counter()
            driver.tell(trial_id, trial, result)
            t3 = time.perf_counter()
            if profiler:
                profiler.disable()
            ask_ms.append((t1 - t0) * 1e3)
            tell_ms.append((t3 - t2) * 1e3)
        trials = driver.study.get_trials(deepcopy=False)
        # 24d17a4 wrote each proposal to the study; a Search that screens them counts its own.
        proposals = getattr(driver.search, "proposals", len(trials) - before)
        in_study = sum(t.user_attrs.get("status") in SKIPPED for t in trials[before:])
    out = {"sampler": sampler, "objective": objective_type, "trials_in_study": n, "running": running, "asks": asks,
           "ask_ms_median": round(statistics.median(ask_ms), 2), "ask_ms_mean": round(statistics.fmean(ask_ms), 2),
           "tell_ms_median": round(statistics.median(tell_ms), 2),
           "tell_ms_mean": round(statistics.fmean(tell_ms), 2),
           "proposals_per_ask": round(proposals / (asks + 1), 2), "skipped_in_study": in_study,
           "first_round_ms": round(first_ms, 1),
           "open_s": round(open_s, 3)}
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
        out["profile"] = text.getvalue()
    return out


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    objectives = ["pareto", "constrained"] if args.objective == "both" else [args.objective]
    for objective in objectives:
        for n in map(int, args.trials.split(",")):
            for sampler in args.sampler.split(","):
                row = measure(objective, n, args.asks, args.profile, args.running, sampler)
                if "profile" in row:
                    print(row.pop("profile"))
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def before(args: argparse.Namespace, checkout: str) -> list[dict[str, Any]]:
    """The same measurement against the hypersweep package of another checkout (its rows)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "before.json"
        argv = [sys.executable, __file__, "--trials", args.trials, "--asks", str(args.asks), "--objective",
                args.objective, "--running", str(args.running), "--sampler", args.sampler, "--json", str(out)]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=tmp,
                       env={**os.environ, "PYTHONPATH": str(Path(checkout).resolve())})
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default="300,2000", help="trials already in the study (comma-separated)")
    parser.add_argument("--asks", type=int, default=30, help="ask + tell rounds timed at each size")
    parser.add_argument("--objective", choices=["pareto", "constrained", "both"], default="both")
    parser.add_argument("--running", type=int, default=0, help="trials left running in the study (other slots)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the timed rounds")
    parser.add_argument("--sampler", default="shipped", help="shipped (make_sampler's), tpe (Optuna's TPE itself), "
                        "or both, comma-separated")
    parser.add_argument("--before", metavar="CHECKOUT", help="also measure this checkout's code; print the ratios")
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # experimental-feature and deprecation warnings of either checkout
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = run(args)
    if args.before:
        old = before(args, args.before)
        for row, was in zip(rows, old, strict=True):
            row["before"] = was
            print(f"{row['objective']} {row['trials_in_study']} trials, {row['sampler']}: "
                  f"ask {was['ask_ms_median']} ms "
                  f"({was['proposals_per_ask']} proposals) before, {row['ask_ms_median']} ms "
                  f"({row['proposals_per_ask']}) now: {was['ask_ms_median'] / row['ask_ms_median']:.2f}x; "
                  f"proposals in the study {was['skipped_in_study']} before, {row['skipped_in_study']} now",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
