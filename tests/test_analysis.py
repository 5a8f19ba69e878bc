"""The analysis scripts, on small sweeps written through the real ResultStore."""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import assumptions, depth, frontier, report, scaling
from hypersweep.config import RunConfig
from hypersweep.counts import param_counts
from hypersweep.frontier import pareto_front, smallest
from hypersweep.results import ResultStore, load_trials
from hypersweep.train import load_config

START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
SPACE = {
    "experiment": "synthetic",
    "task": {"name": "teacher", "dim_x": 2, "dim_i": 4, "seed": 0, "train_instances": 50, "val_instances": 10,
             "test_instances": 10},
    "objective": {"type": "pareto", "metric": "val_error", "count": "params_primary", "targets": [0.3, 0.1]},
    "families": {"hyper": {"primary": {"width": {"low": 1, "high": 64}}}, "embedding": None, "standard": None},
}


def config(family: str, width: int = 4, depth: int = 1, conditioner_depth: int = 2, dim_i: int = 4,
           seeds: int = 1) -> RunConfig:
    return load_config({
        "task": {**SPACE["task"], "dim_i": dim_i},
        "model": {"family": family, "primary": {"width": width, "depth": depth},
                  "conditioner": {"width": 16, "depth": conditioner_depth}, "embedding_dim": 8},
        "train": {"epochs": 3, "seeds": seeds},
    })


def sizes(cfg: RunConfig) -> dict[str, int]:
    return param_counts(cfg.model, cfg.task.dim_i, cfg.task.dim_x, cfg.task.dim_y).as_dict()


class SweepWriter:
    """Writes trials of a made-up sweep into `out` the way hypersweep.sweep does."""

    def __init__(self, out: Path, space: dict | None = SPACE):
        self.out, self.store, self.count = out, ResultStore(str(out)), 0
        if space:
            out.mkdir(parents=True, exist_ok=True)
            (out / "space.yaml").write_text(yaml.safe_dump(space))

    def trial(self, family: str, val_error: float, *, width: int = 4, depth: int = 1, conditioner_depth: int = 2,
              dim_i: int = 4, variant: str = "", status: str = "ok", replicas: list[float] | None = None,
              disagreement: list[float] | None = None, curve: list[float] | None = None) -> None:
        """One trial; `replicas` are its replicas' test errors (default: one replica at `val_error`), `curve`
        its val_error per epoch from epoch 0, as the trainer records it (default: flat at `val_error`, one epoch
        per `disagreement` value or 10)."""
        replicas = replicas or [val_error]
        cfg = config(family, width, depth, conditioner_depth, dim_i, seeds=len(replicas))
        study = f"synthetic-{family}" + (f"-{variant}" if variant else "")
        number, self.count = self.count, self.count + 1
        row = {"experiment": "synthetic", "study": study, "variant": variant, "trial": number,
               "trial_id": f"t{number}", "status": status, "val_error": val_error,
               "test_error": float(np.mean(replicas)), "test_error_std": float(np.std(replicas)),
               "seeds": len(replicas), "seed": 0, "epochs": 3, "wall_s": 30.0, "device": "cpu",
               "started_at": START + timedelta(minutes=number), "finished_at": START + timedelta(minutes=number + 1),
               **sizes(cfg)}
        curve = curve or [val_error] * (len(disagreement) if disagreement else 10)
        disagreement = disagreement or [None] * len(curve)
        epochs = [{"epoch": e, "train_loss": 1.0, "val_error": v, "replica_disagreement": d}
                  for e, (v, d) in enumerate(zip(curve, disagreement, strict=True))]
        self.store.write_trial(family, study, cfg, row, epochs)


def run(main, argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def power_law(sweep: SweepWriter, family: str, slope: float, scale: float, widths, noise: float = 0.0,
              dim_i: int = 4, variant: str = "") -> None:
    """Trials whose error makes params = scale * (1/error) ** slope, up to a lognormal factor of `noise`."""
    rng = np.random.default_rng(0)
    for width in widths:
        params = sizes(config(family, width, dim_i=dim_i))["params_primary"]
        error = (scale / params) ** (1 / slope) * np.exp(noise * rng.standard_normal())
        sweep.trial(family, float(error), width=width, dim_i=dim_i, variant=variant)


@pytest.fixture
def small(tmp_path) -> Path:
    """A sweep with a known frontier: hyper meets 0.1 with width 2, embedding needs width 8, standard never does."""
    s = SweepWriter(tmp_path / "small")
    s.trial("hyper", 0.25, width=1)
    s.trial("hyper", 0.08, width=2)  # params_primary 9: the smallest meeting 0.1
    s.trial("hyper", 0.05, width=6)
    s.trial("hyper", 0.01, width=3, status="diverged")  # not ok: never on the frontier
    s.trial("embedding", 0.2, width=4)
    s.trial("embedding", 0.09, width=8)  # params_primary (2 + 8) * 8 + 8 + 8 + 1 = 97
    s.trial("embedding", 0.07, width=16)
    s.trial("standard", 0.4, width=4)
    s.trial("standard", 0.15, width=32)
    return s.out


def test_frontier_picks_the_smallest_trial_meeting_each_target_and_the_ratios(small, capsys):
    code, out, err = run(frontier.main, [str(small)], capsys)
    assert (code, err) == (0, "")
    table = pd.read_parquet(small / "analysis" / "frontier.parquet")
    at_01 = table[table["target"] == 0.1].set_index("family")
    assert at_01.loc["hyper", "params_primary"] == 9 and at_01.loc["hyper", "trial"] == 1
    assert at_01.loc["embedding", "params_primary"] == 97
    assert not at_01.loc["standard", "found"]
    ratios = pd.read_csv(small / "analysis" / "ratios.csv").set_index("target")
    assert ratios.loc[0.1, "embedding/hyper"] == pytest.approx(97 / 9)
    assert "no trial of standard met target 0.1" in out  # one line instead of an empty row
    assert "10.8x" in out
    pareto = pd.read_parquet(small / "analysis" / "pareto.parquet")
    assert list(pareto[pareto["family"] == "hyper"]["params_primary"]) == [5, 9, 25]
    for name in ("frontier.csv", "pareto.csv", "frontier.png", "pareto.png"):
        assert (small / "analysis" / name).stat().st_size > 0


def test_frontier_parquet_and_printout_carry_the_training_limited_flag(tmp_path, capsys):
    s = SweepWriter(tmp_path / "limited")
    s.trial("hyper", 0.2, width=1)
    s.trial("hyper", 0.05, width=2, curve=[0.5] * 14 + [0.08] * 3 + [0.05] * 3)  # still falling at the end
    s.trial("embedding", 0.09, width=2)
    s.trial("embedding", 0.08, width=64)  # 30x larger, only 11% lower: the error is flat in size
    code, out, _ = run(frontier.main, [str(s.out), "--targets", "0.1"], capsys)
    assert code == 0
    table = pd.read_parquet(s.out / "analysis" / "frontier.parquet").set_index("family")
    assert table["training_limited"].tolist() == [True, True]
    assert table.loc["hyper", "limited_by"] == "still falling: -38% over the last 3 epochs"
    assert table.loc["embedding", "limited_by"] == "flat: nothing up to 10x larger got 25% lower (best 0.08, trial 3)"
    assert "limited: training-limited, not capacity-limited" in out


def test_frontier_options_override_the_objective_of_space_yaml(small, capsys):
    code, out, err = run(frontier.main, [str(small), "--targets", "0.06", "--count", "params_total"], capsys)
    table = pd.read_parquet(small / "analysis" / "frontier.parquet")
    assert list(table["target"].unique()) == [0.06]
    assert table.loc[table["family"] == "hyper", "params_total"].item() == load_trials(str(small)).query(
        "family == 'hyper' and trial == 2")["params_total"].item()
    # Answered for hyper, and one line for what is missing: embedding and standard met no target.
    assert code == 2 and "no trial of embedding met any target (0.06): its lowest val_error was 0.07" in err
    assert "Smallest architecture per error target" in out


def test_frontier_says_in_one_line_when_no_trial_met_any_target(small, capsys):
    code, out, err = run(frontier.main, [str(small), "--targets", "0.001"], capsys)
    assert (code, out) == (2, "")
    assert err == "error: no trial met any target (0.001): the lowest val_error was 0.05 (hyper)\n"


@pytest.mark.parametrize("script", [frontier, scaling, depth, assumptions, report])
def test_every_script_exits_2_with_one_line_on_a_missing_or_empty_out(script, tmp_path, capsys):
    code, out, err = run(script.main, [str(tmp_path / "nowhere")], capsys)
    assert (code, out, err) == (2, "", f"error: {tmp_path / 'nowhere'}: no such directory\n")
    (tmp_path / "empty").mkdir()
    code, _, err = run(script.main, [str(tmp_path / "empty")], capsys)
    assert code == 2 and err.count("\n") == 1 and "no trial results" in err


def complete_sweep(out: Path, embedding: str = "ok") -> Path:
    """A sweep every script can answer: a depth grid with replicas and curves, and a width sweep of standard.

    `embedding` is the status of every embedding trial.
    """
    depths = {"conditioner": {"depth": {"choices": [1, 2]}}}
    grid = {**SPACE, "sampler": {"name": "grid"},
            "families": {"hyper": depths, "embedding": depths, "standard": {"primary": {"width": {"choices": [2, 8]}}}}}
    s = SweepWriter(out, space=grid)
    for family, base in (("hyper", 0.1), ("embedding", 0.2)):
        for d in (1, 2):
            for width in (2, 4, 8):
                error = base * d / width
                s.trial(family, error, width=width, conditioner_depth=d, replicas=[error, error * 1.1],
                        disagreement=[0.2, 0.1, 0.05], curve=[4 * error, 2 * error, error],
                        status=embedding if family == "embedding" else "ok")
    for width, error in ((2, 0.6), (4, 0.45), (8, 0.3), (32, 0.1)):
        s.trial("standard", error, width=width)
    return s.out


@pytest.fixture
def complete(tmp_path) -> Path:
    return complete_sweep(tmp_path / "complete")


SCRIPTS = [frontier, scaling, depth, assumptions, report]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_answers_a_complete_sweep_with_exit_0(script, complete, capsys):
    code, _, err = run(script.main, [str(complete), "--bootstrap", "20"] if script in (scaling, assumptions, report)
                       else [str(complete)], capsys)
    assert (code, err) == (0, "")


def one_line(err: str) -> str:
    """The single stderr line of a refused or partial answer, checked to be one line and no traceback."""
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("error: ")
    return err


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_family_without_an_ok_trial_is_named_in_one_line_and_exit_2(script, tmp_path, capsys):
    out = complete_sweep(tmp_path / "failed", embedding="failed")
    code, _, err = run(script.main, [str(out)] + (["--bootstrap", "20"] if script in (scaling, report) else []),
                       capsys)
    assert code == 2 and "embedding" in one_line(err)


@pytest.mark.parametrize("script", [frontier, scaling, report])
def test_a_family_meeting_none_of_the_targets_is_named_in_one_line_and_exit_2(script, complete, capsys):
    code, _, err = run(script.main, [str(complete), "--targets", "0.04"]
                       + (["--bootstrap", "20"] if script is not frontier else []), capsys)
    assert code == 2 and "standard" in one_line(err)


@pytest.mark.parametrize("script", SCRIPTS)
def test_missing_learning_curves_are_named_in_one_line_and_exit_2(script, complete, capsys):
    epochs = complete / "epochs"  # a link to the generation the sweep's last merge made
    epochs.unlink() if epochs.is_symlink() else shutil.rmtree(epochs)
    code, _, err = run(script.main, [str(complete)] + (["--bootstrap", "20"] if script in (scaling, report) else []),
                       capsys)
    assert code == 2 and "no learning curves" in one_line(err)


@pytest.mark.parametrize("kind", ["trials", "epochs"])
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_corrupt_parquet_file_is_named_in_one_line_and_exit_2(script, kind, complete, capsys):
    victim = sorted((complete / kind / "family=hyper").glob("*.parquet"))[0]
    victim.write_bytes(b"PAR1 this is not a parquet file")
    code, out, err = run(script.main, [str(complete)], capsys)
    assert (code, out) == (2, "")
    assert one_line(err) == (f"error: {victim}: not a readable Parquet file "
                             f"({err.split('(', 1)[1].split(');')[0]}); move it aside to analyse the rest\n")


def test_scaling_recovers_the_exponent_of_an_exact_power_law(tmp_path, capsys):
    s = SweepWriter(tmp_path / "laws")
    power_law(s, "hyper", slope=0.5, scale=4, widths=range(1, 17))
    power_law(s, "embedding", slope=2.0, scale=10, widths=range(1, 17))
    s.trial("embedding", 0.9, width=40)  # dominated: a big model that trained badly changes nothing
    s.trial("standard", 0.3, width=8)
    s.trial("standard", 0.2, width=8)  # one size, however many trials: nothing to fit
    code, out, err = run(scaling.main, [str(s.out), "--bootstrap", "200"], capsys)
    assert code == 2 and one_line(err) == ("error: standard: slope not fitted, 1 distinct capacity-limited frontier "
                                           "point (0 set aside as training-limited) from 2 ok trials\n")
    fits = pd.read_parquet(s.out / "analysis" / "scaling.parquet").set_index("family")
    for family, truth in (("hyper", 0.5), ("embedding", 2.0)):
        fit = fits.loc[family]
        # Every resample of exact data has the same slope: the interval shrinks onto the truth.
        assert fit[["slope", "slope_low", "slope_high"]].tolist() == pytest.approx([truth] * 3)
        assert (fit["points"], fit["set_aside"]) == (16, 0)  # every width is a distinct frontier point
        assert fit["decades"] == pytest.approx(np.log10(fit["eps_high"] / fit["eps_low"]))
    assert fits.loc["hyper", "unfitted"] == 0  # 16 trials: a resample always has two distinct sizes
    assert "0.50 [0.50, 0.50]" in out and "2.00 [2.00, 2.00]" in out
    assert (s.out / "analysis" / "scaling.png").stat().st_size > 0


def test_scaling_sets_training_limited_points_aside_before_fitting(tmp_path):
    s = SweepWriter(tmp_path / "limited", space=None)
    power_law(s, "embedding", slope=1.0, scale=10, widths=range(1, 9))  # 13 to 97 params, errors 0.77 to 0.103
    s.trial("embedding", 0.09, width=9, curve=[0.2] * 7 + [0.09] * 3)  # trial 8: its curve fell 55% at the end
    s.trial("embedding", 0.085, width=400)  # trial 9: 44x larger than trial 8 for 6% less error
    fits = scaling.fit(load_trials(str(s.out)), "val_error", "params_primary", samples=50,
                       epochs=pd.read_parquet(s.out / "epochs"))
    fit = fits.table.iloc[0]
    # Trial 7 (97 params, 0.103) starts the plateau: nothing up to 10x larger got 25% lower. All three set aside,
    # the power law of the rest is fitted untouched.
    assert set(fits.points.loc[~fits.points["used"], "trial"]) == {7, 8, 9}
    assert fit["set_aside"] == 3 and fit["points"] == 7 and fit["slope"] == pytest.approx(1.0)


def test_scaling_reports_resamples_that_could_not_be_fitted_instead_of_dropping_them(tmp_path):
    s = SweepWriter(tmp_path / "few", space=None)
    s.trial("hyper", 0.1, width=1)
    s.trial("hyper", 0.01, width=8)
    fit = scaling.fit(load_trials(str(s.out)), "val_error", "params_primary", samples=400).table.iloc[0]
    # Half the resamples draw the same trial twice and have one point: no slope. They are counted.
    assert fit["unfitted"] == pytest.approx(0.5, abs=0.07)


def test_scaling_with_noisy_errors_stays_close_and_has_an_interval(tmp_path):
    s = SweepWriter(tmp_path / "noisy", space=None)
    power_law(s, "hyper", slope=0.5, scale=4, widths=range(1, 17), noise=0.05)
    fit = scaling.fit(load_trials(str(s.out)), "val_error", "params_primary", samples=300).table.iloc[0]
    assert fit["slope"] == pytest.approx(0.5, rel=0.1)
    assert fit["slope_low"] < fit["slope"] < fit["slope_high"]


def test_scaling_pools_seed_variants_as_replicates_of_one_condition(tmp_path):
    s = SweepWriter(tmp_path / "seeds", space=None)
    for seed, slope in ((0, 1.0), (1, 2.0)):
        power_law(s, "embedding", slope, 10, range(1, 12), variant=f"dim_i=4,seed={seed}")
    fits = scaling.fit(load_trials(str(s.out)), "val_error", "params_primary", samples=100)
    fit = fits.table.iloc[0]
    assert (fit["variant"], fit["replicates"]) == ("dim_i=4", 2)
    assert fit["slope"] == pytest.approx(1.5)  # the mean over the two teacher seeds
    # Resampling the seeds: some resamples draw one seed twice, so the interval spans both slopes.
    assert fit["slope_low"] == pytest.approx(1.0) and fit["slope_high"] == pytest.approx(2.0)


def test_scaling_compares_slopes_by_n_when_variants_change_dim_i(tmp_path, capsys):
    s = SweepWriter(tmp_path / "dims", space=None)
    for n, embedding_slope in ((2, 1.0), (6, 3.0)):
        power_law(s, "hyper", 0.5, 4, range(1, 10), dim_i=n, variant=f"dim_i={n}")
        power_law(s, "embedding", embedding_slope, 30, range(1, 10), dim_i=n, variant=f"dim_i={n}")
    code, out, err = run(scaling.main, [str(s.out), "--bootstrap", "100"], capsys)
    assert (code, err) == (0, "") and "space.yaml: file not found; using the default objective" in out
    fits = scaling.fit(load_trials(str(s.out)), "val_error", "params_primary", samples=0).table
    table = scaling.by_dim(fits)
    assert list(table.index) == [2, 6] and list(table.columns) == ["hyper", "embedding"]
    slopes = fits.set_index(["dim_i", "family"])["slope"]
    assert slopes[6, "embedding"] > 2 * slopes[2, "embedding"]
    assert slopes[6, "hyper"] == pytest.approx(slopes[2, "hyper"], rel=0.2)
    assert "Slope by n = dim_i" in out and (s.out / "analysis" / "scaling_by_n.png").stat().st_size > 0


def test_the_frontier_points_at_targets_agree_with_smallest():
    rng = np.random.default_rng(1)
    trials = pd.DataFrame({"variant": "", "family": "hyper", "status": "ok", "trial": range(30),
                           "val_error": rng.uniform(0.01, 1, 30), "test_error": 0.0, "params_total": 0,
                           "params_primary": rng.integers(5, 500, 30)})
    targets = [0.5, 0.2, 0.05, 0.005]
    trials.loc[3, "params_primary"] = trials.loc[4, "params_primary"]  # a tie in size goes to the lower error
    expected = smallest(trials, targets).dropna(subset=["trial"])
    points = scaling.frontier_points(trials["params_primary"].to_numpy(float), trials["val_error"].to_numpy(),
                                     targets)
    assert sorted(trials["trial"].to_numpy()[points]) == sorted(set(expected["trial"].astype(int)))
    front = scaling.frontier_points(trials["params_primary"].to_numpy(float), trials["val_error"].to_numpy())
    assert sorted(front) == sorted(pareto_front(trials)["trial"])


def test_depth_pools_every_replica_of_every_trial_at_a_depth(tmp_path, capsys):
    s = SweepWriter(tmp_path / "depth")
    replicas = {("hyper", 1): [[0.10, 0.12, 0.14], [0.20, 0.22, 0.24]], ("hyper", 2): [[0.1, 0.1, 0.1], [0.3]],
                ("embedding", 1): [[0.5, 0.6, 0.7]], ("embedding", 2): [[0.4, 0.5, 0.6], [0.45, 0.55, 0.65]]}
    for (family, d), trials in replicas.items():
        for errors in trials:
            s.trial(family, np.mean(errors), conditioner_depth=d, replicas=errors)
    s.trial("standard", 0.3)  # no conditioner: not in the figure
    code, out, _ = run(depth.main, [str(s.out)], capsys)
    assert code == 0
    table = pd.read_parquet(s.out / "analysis" / "depth.parquet").set_index(["family", "depth"])
    for key, trials in replicas.items():
        pooled = np.concatenate(trials)
        assert table.loc[key, "replicas"] == len(pooled)
        assert table.loc[key, "mean"] == pytest.approx(pooled.mean())
        assert table.loc[key, "std"] == pytest.approx(pooled.std(ddof=1))
        assert table.loc[key, "falling"] == 0  # flat curves
    assert "0.17 ± 0.058 (6)" in out  # the pooled std of hyper's six replicas at depth 1
    assert (s.out / "analysis" / "depth.png").stat().st_size > 0


def test_depth_counts_trials_still_falling_at_their_last_epoch(tmp_path, capsys):
    s = SweepWriter(tmp_path / "falling")
    for d in (1, 2):
        s.trial("hyper", 0.2, conditioner_depth=d, curve=[0.9, 0.8, 0.7, 0.5, 0.4, 0.3, 0.2])
        s.trial("embedding", 0.8, conditioner_depth=d)
    code, out, _ = run(depth.main, [str(s.out)], capsys)
    assert code == 0 and "still falling at the last epoch (training-limited rule (b)): hyper 2 of 2 trials" in out


def test_depth_says_what_is_missing_when_depth_does_not_vary(small, capsys):
    code, out, err = run(depth.main, [str(small)], capsys)
    assert (code, out) == (2, "")
    assert err == "error: conditioner depth does not vary (every trial has depth 2): sweep model.conditioner.depth\n"


def test_assumptions_from_replica_curves_and_a_width_sweep(tmp_path, capsys):
    s = SweepWriter(tmp_path / "assumptions")
    trained = [0.4, 0.2, 0.1]  # val_error fell by 75%: these replicas trained
    s.trial("hyper", 0.1, replicas=[0.1, 0.1], disagreement=[0.4, 0.2, 0.1], curve=trained)
    s.trial("hyper", 0.1, width=8, replicas=[0.1, 0.1], disagreement=[0.3, 0.2, 0.05], curve=trained)
    s.trial("hyper", 0.1, width=16, replicas=[0.1, 0.1], disagreement=[0.1, 0.2, 0.3], curve=trained)  # grows
    s.trial("hyper", 0.1, width=24, replicas=[0.1, 0.1], disagreement=[0.1, 0.1, 0.1])  # never trained
    s.trial("hyper", 0.1, width=32, disagreement=[])  # one replica: no disagreement to measure
    for width, error in ((2, 0.5), (4, 0.4), (8, 0.3), (16, 0.2), (32, 0.1)):
        s.trial("standard", error, width=width)
    s.trial("standard", 0.01, width=2, depth=2)  # two hidden layers: not Assumption 2's network
    code, out, err = run(assumptions.main, [str(s.out), "--bootstrap", "200"], capsys)
    assert (code, err) == (0, "") and "Spearman correlation of width and error: -1.00" in out
    falls = pd.read_parquet(s.out / "analysis" / "assumption1.parquet").set_index("family")
    assert falls.loc["hyper", ["trials", "trained", "falling"]].tolist() == [4, 3, 2]
    assert falls.loc["hyper", "median_ratio"] == pytest.approx(0.25)  # of 0.25, 1/6 and 3
    assert "Assumption 1: replica disagreement from the first epoch to the last: holds" in out
    assert "Assumption 2: test_error of one-hidden-layer standard networks by width: holds" in out
    by_epoch = pd.read_parquet(s.out / "analysis" / "disagreement.parquet")
    assert list(by_epoch["median"]) == [0.2, 0.2, 0.1]
    by_width = pd.read_parquet(s.out / "analysis" / "assumption2.parquet")
    assert list(by_width["width"]) == [2, 4, 8, 16, 32] and list(by_width["mean"]) == [0.5, 0.4, 0.3, 0.2, 0.1]
    for name in ("assumption1.png", "assumption2.png"):
        assert (s.out / "analysis" / name).stat().st_size > 0


def test_assumptions_say_in_one_line_what_the_sweep_lacks(small, tmp_path, capsys):
    code, out, err = run(assumptions.main, [str(small)], capsys)
    assert code == 2 and out.startswith("Assumption 2: test_error of one-hidden-layer standard networks by width")
    assert one_line(err) == "error: Assumption 1: no ok trial trained with seeds > 1, so no replica disagreement " \
                            "to follow\n"
    s = SweepWriter(tmp_path / "hyper-only")
    s.trial("hyper", 0.1)
    code, out, err = run(assumptions.main, [str(s.out)], capsys)
    assert (code, out) == (2, "")
    assert err == ("error: Assumption 1: no ok trial trained with seeds > 1, so no replica disagreement to follow; "
                   "Assumption 2: no ok standard trial with one hidden layer; the check needs a sweep over width\n")


def test_report_writes_markdown_with_its_figures(complete, capsys):
    code, out, _ = run(report.main, [str(complete), "--bootstrap", "50"], capsys)
    assert code == 0
    text = (complete / "report" / "report.md").read_text()
    assert text.startswith("# synthetic: sweep report")
    assert "- 16 trials: 16 ok (hyper 6, embedding 6, standard 4)" in text
    for section in ("## Pareto fronts", "## Smallest architecture per error target", "## Scaling with accuracy",
                    "## Error against conditioner depth", "## Assumption 1", "## Assumption 2"):
        assert section in text
    assert "| training-limited |" in text
    figures = [line[line.index("(") + 1:-1] for line in text.splitlines() if line.startswith("![")]
    assert set(figures) == {"pareto.png", "frontier.png", "scaling.png", "depth.png", "assumption1.png",
                            "assumption2.png"}
    assert all((complete / "report" / f).stat().st_size > 0 for f in figures)
    assert str(complete / "report" / "report.md") in out


def test_report_says_in_one_line_why_a_section_is_missing(small, capsys):
    assert report.main([str(small), "--bootstrap", "50"]) == 0
    text = (small / "report" / "report.md").read_text()
    assert "## Error against conditioner depth\n\nconditioner depth does not vary (every trial has depth 2)" in text
    assert "## Assumption 1: replicas converge to one function\n\nno ok trial trained with seeds > 1" in text
    assert "| hyper | 0.1 | 9 |" in text


def test_depth_tuned_keeps_each_familys_best_trial_by_val_error_at_each_depth(tmp_path, capsys):
    s = SweepWriter(tmp_path / "tuned")
    for family, good in (("hyper", 0.1), ("embedding", 0.3)):
        for d in (1, 2):
            s.trial(family, 3 * good, conditioner_depth=d, replicas=[0.9, 0.9])  # a learning rate that failed
            s.trial(family, good, conditioner_depth=d, replicas=[good, good])  # the best one at this depth
    code, _, _ = run(depth.main, [str(s.out), "--tuned"], capsys)
    table = pd.read_parquet(s.out / "analysis" / "depth.parquet").set_index(["family", "depth"])
    assert code == 0 and table["trials"].eq(1).all()
    assert table.loc[("hyper", 1), "mean"] == pytest.approx(0.1) and table.loc[("embedding", 2), "mean"] == 0.3
    run(depth.main, [str(s.out)], capsys)  # without --tuned, every trial at a depth is pooled
    assert pd.read_parquet(s.out / "analysis" / "depth.parquet")["trials"].eq(2).all()
