"""The verdict rules of RESULTS.md: each one, on synthetic tables, returning each of its outcomes."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_analysis import SweepWriter

from analysis import assumptions, depth, results_page, scaling
from analysis.evidence import FAILS, HOLDS, INCONCLUSIVE, NOT_TESTED, across, decide, interval, mc_error
from hypersweep.frontier import smallest

SAMPLES = 200


def law(family: str, slope: float, sizes, scale: float = 10.0, noise: float = 0.0, variant: str = "", dim_i: int = 4,
        seed: int = 0, start: int = 0) -> pd.DataFrame:
    """Ok trials on an exact (or lognormally noisy) power law: size = scale * (1/error) ** slope."""
    sizes = np.asarray(sizes, float)
    errors = (scale / sizes) ** (1 / slope) * np.exp(noise * np.random.default_rng(seed).standard_normal(len(sizes)))
    return pd.DataFrame({"variant": variant, "family": family, "status": "ok", "study": f"s-{family}-{variant}",
                         "trial": range(start, start + len(sizes)), "val_error": errors, "test_error": errors,
                         "params_primary": sizes.astype(int), "params_total": sizes.astype(int) + 1000,
                         "config.task.dim_i": dim_i, "config.task.dim_x": 2, "config.task.seed": seed})


def at(family: str, sizes, error: float, start: int = 0, total: int = 0) -> pd.DataFrame:
    """Ok trials of one family that all reach `error`, at the given primary sizes (total = primary + `total`)."""
    sizes = np.asarray(sizes)
    return pd.DataFrame({"variant": "", "family": family, "status": "ok", "study": f"s-{family}",
                         "trial": range(start, start + len(sizes)), "val_error": error, "test_error": error,
                         "params_primary": sizes, "params_total": sizes + total})


# ----- how resamples become verdicts ---------------------------------------------------------------

def test_a_verdict_needs_97_5_percent_of_all_resamples_and_nan_counts_against_it():
    assert decide(np.ones(100), 0.0) == HOLDS
    assert decide(-np.ones(100), 0.0) == FAILS
    assert decide(np.r_[np.ones(50), -np.ones(50)], 0.0) == INCONCLUSIVE
    assert decide(np.r_[np.ones(9_800), [np.nan] * 200], 0.0) == HOLDS
    assert decide(np.r_[np.ones(9_600), [np.nan] * 400], 0.0) == INCONCLUSIVE  # the unfitted 4% are not dropped
    assert decide(np.full(100, 0.5), 1.0, holds_when="below") == HOLDS
    # Misses (inf: more than any size tried) stay in: 5% of them reach the interval's top.
    assert interval(np.r_[np.arange(1.0, 96.0), [np.inf] * 5]) == (3.0, np.inf)


def test_a_share_within_monte_carlo_error_of_the_level_decides_nothing_whatever_the_seed():
    # 98% of 100 resamples clears 97.5%, but its Monte Carlo error (1.4%) is larger than the gap.
    assert mc_error(0.98, 100) == pytest.approx(0.014, abs=1e-3)
    assert decide(np.r_[np.ones(98), -np.ones(2)], 0.0) == INCONCLUSIVE
    # The audit's case: a true share of 97.34%. With 1,000 resamples some seeds read >= 97.5% and
    # once "held"; under the margin every seed, at 1,000 or 10,000 resamples, is inconclusive.
    for samples in (1_000, 10_000):
        shares = [np.random.default_rng(seed).random(samples) < 0.9734 for seed in range(20)]
        assert any(s.mean() >= 0.975 for s in shares) or samples == 10_000
        assert {decide(np.where(s, 1.0, -1.0), 0.0) for s in shares} == {INCONCLUSIVE}


def test_searches_combine_to_a_verdict_only_when_enough_of_them_agree():
    assert across([HOLDS, HOLDS, HOLDS], minimum=3) == HOLDS
    assert across([FAILS, FAILS, FAILS], minimum=3) == FAILS
    assert across([HOLDS, HOLDS, INCONCLUSIVE], minimum=3) == INCONCLUSIVE  # the spread across searches
    assert across([HOLDS, FAILS, HOLDS], minimum=3) == INCONCLUSIVE
    assert across([HOLDS], minimum=3) == INCONCLUSIVE  # one search's bootstrap leaves out the seeds
    assert across([HOLDS]) == HOLDS
    assert across([NOT_TESTED, NOT_TESTED]) == NOT_TESTED


# ----- sizes at equal error ------------------------------------------------------------------------

def size_verdict(trials: pd.DataFrame) -> str:
    table = smallest(trials, [0.1, 0.01])
    return results_page.size_verdict(trials, table, "val_error", "params_primary", SAMPLES)[0]


def test_size_rule_holds_when_every_resample_puts_q_10x_above_g():
    assert size_verdict(pd.concat([at("hyper", range(10, 20), 0.005),
                                   at("embedding", range(1000, 2000, 100), 0.005)])) == HOLDS


def test_size_rule_fails_when_every_resample_puts_q_below_10x():
    assert size_verdict(pd.concat([at("hyper", range(10, 20), 0.005), at("embedding", range(12, 24), 0.005)])) == FAILS


def test_size_rule_is_inconclusive_when_the_resamples_straddle_10x():
    # The embedding's 60-parameter trial (6x) is in about 2/3 of the resamples; the others give 20x.
    assert size_verdict(pd.concat([at("hyper", [10] * 10, 0.005),
                                   at("embedding", [60, 200, 200, 200, 200], 0.005)])) == INCONCLUSIVE


def test_size_rule_cannot_hold_on_a_training_limited_point():
    # The embedding's points at 0.009 come within 25% of a 10x smaller model's 0.0105: flat, so flagged.
    trials = pd.concat([at("hyper", range(10, 20), 0.005), at("embedding", range(1000, 2000, 100), 0.009),
                        at("embedding", [90], 0.0105, start=10)])
    table = smallest(trials, [0.1, 0.01])
    verdict, why = results_page.size_verdict(trials, table, "val_error", "params_primary", SAMPLES)
    assert verdict == INCONCLUSIVE and why.endswith("but the embedding's point is training-limited")


def test_size_rule_counts_a_family_missing_the_target_in_a_resample_instead_of_dropping_it():
    # One hyper trial meets 0.01; the resamples that leave it out have no hyper at 0.01 (ratio 0).
    trials = pd.concat([at("hyper", [10], 0.005), at("hyper", range(11, 20), 0.05, start=1),
                        at("embedding", range(1000, 2000, 100), 0.005)])
    draws = results_page.ratio_draws(trials, "embedding", 0.01, "val_error", "params_primary", SAMPLES)
    assert 0.25 < np.mean(draws == 0) < 0.45  # about (1 - 1/10) ** 10 of them
    assert 0.25 < results_page.misses(trials, "hyper", 0.01, "val_error", "params_primary", SAMPLES) < 0.45
    assert size_verdict(trials) == INCONCLUSIVE


def total_verdict(hyper_total: int, embedding_total: int, spread: int = 1) -> str:
    trials = pd.concat([at("hyper", range(10, 20), 0.005, total=hyper_total),
                        at("embedding", range(100, 100 + 10 * spread, spread), 0.005, start=10,
                           total=embedding_total)])
    table = smallest(trials, [0.01], count="params_total")
    return results_page.total_verdict(trials, table, "val_error", SAMPLES)[0]


def test_total_rule_has_all_three_outcomes():
    assert total_verdict(hyper_total=100, embedding_total=1000) == HOLDS  # f + g far below e + q
    assert total_verdict(hyper_total=5000, embedding_total=100) == FAILS  # a big f outweighs q
    assert total_verdict(hyper_total=95, embedding_total=0, spread=3) == INCONCLUSIVE  # 105-113 vs 100-127


# ----- scaling exponents ---------------------------------------------------------------------------

SIZES = np.geomspace(10, 10_000, 12).round()


def slope_verdict(*families: pd.DataFrame) -> tuple[str, str]:
    fits = scaling.fit(pd.concat(families), "val_error", "params_primary", samples=SAMPLES)
    return results_page.slope_verdict(fits, "")


def test_slope_rule_holds_when_the_embedding_is_steeper_in_every_resample():
    verdict, why = slope_verdict(law("hyper", 0.5, SIZES), law("embedding", 2.0, SIZES))
    assert verdict == HOLDS and "measured ratio 4.0; paper's (m+n)/m = 3.0" in why


def test_slope_rule_fails_when_the_hypernetwork_is_steeper_in_every_resample():
    assert slope_verdict(law("hyper", 2.0, SIZES), law("embedding", 0.5, SIZES))[0] == FAILS


def test_slope_rule_is_inconclusive_when_noisy_slopes_overlap():
    verdict, _ = slope_verdict(law("hyper", 1.0, SIZES, noise=0.4, seed=1), law("embedding", 1.1, SIZES, noise=0.4))
    assert verdict == INCONCLUSIVE


def test_slope_rule_is_inconclusive_on_a_slope_resting_on_less_than_a_decade():
    verdict, why = slope_verdict(law("hyper", 0.5, SIZES), law("embedding", 2.0, SIZES[:4]))  # 10 to 87 params
    assert verdict == INCONCLUSIVE and "embedding's slope rests on 4 points over 0.41 decades of eps" in why


def dims_verdict(low: dict[str, float], high: dict[str, float], noise: float = 0.0) -> str:
    trials = pd.concat([law(family, slope, SIZES, noise=noise, variant=f"dim_i={n}", dim_i=n, seed=n + i)
                        for n, slopes in ((2, low), (8, high)) for i, (family, slope) in enumerate(slopes.items())])
    return results_page.dims_verdict(scaling.fit(trials, "val_error", "params_primary", samples=SAMPLES))[0]


def test_dims_rule_has_all_three_outcomes():
    assert dims_verdict({"hyper": 0.5, "embedding": 1.0}, {"hyper": 0.5, "embedding": 3.0}) == HOLDS
    assert dims_verdict({"hyper": 0.5, "embedding": 1.0}, {"hyper": 2.0, "embedding": 1.0}) == FAILS
    assert dims_verdict({"hyper": 0.5, "embedding": 1.0}, {"hyper": 0.5, "embedding": 1.1}, noise=0.4) == INCONCLUSIVE


# ----- depth and the assumptions ---------------------------------------------------------------------

def depth_table(hyper: float, embedding: float, std: float = 0.02, falling: int = 0) -> pd.DataFrame:
    """analysis.depth.by_depth's table: both families at depths 2 to 4, 5 trials each."""
    return pd.DataFrame([{"variant": "", "family": family, "depth": d, "trials": 5, "replicas": 25, "mean": mean,
                          "std": std, "falling": falling if family == "embedding" else 0}
                         for family, mean in (("hyper", hyper), ("embedding", embedding)) for d in (2, 3, 4)])


def test_depth_rule_has_all_three_outcomes():
    assert results_page.depth_verdict(depth_table(0.1, 0.5))[0] == HOLDS
    assert results_page.depth_verdict(depth_table(0.5, 0.1))[0] == FAILS
    assert results_page.depth_verdict(depth_table(0.1, 0.11))[0] == INCONCLUSIVE  # within the stds
    verdict, why = results_page.depth_verdict(depth_table(0.1, 0.5, falling=4))
    assert verdict == INCONCLUSIVE and why.endswith("still falling at the last epoch: embedding 12/15 trials")


def falls(*ratios: float, trained: int = 5, first_epoch: int = 0, still_training: int = 0) -> pd.DataFrame:
    """analysis.assumptions.disagreement_falls's table, one family per median ratio last/first."""
    return pd.DataFrame([{"family": family, "trials": 5, "first_epoch": first_epoch, "dead": 0,
                          "median_ratio_dead": np.nan, "trained": trained, "median_ratio": ratio,
                          "still_training": still_training}
                         for family, ratio in zip(("hyper", "embedding"), ratios, strict=False)])


def test_assumption1_rule_has_all_three_outcomes():
    assert assumptions.assumption1_verdict(falls(0.3, 0.2))[0] == HOLDS
    assert assumptions.assumption1_verdict(falls(0.3, 1.2))[0] == FAILS
    assert assumptions.assumption1_verdict(falls(0.3, 0.8))[0] == INCONCLUSIVE  # fell, but not by half
    verdict, why = assumptions.assumption1_verdict(falls(0.3, trained=2))
    assert verdict == INCONCLUSIVE and why.startswith("no family has 3 replicated trials that trained")
    verdict, why = assumptions.assumption1_verdict(falls(0.3, 1.2, first_epoch=1))  # curves from after epoch 1
    assert verdict == NOT_TESTED and why.startswith("curves start at epoch 1, after training began")


def curves(family: str, disagreement: list[float], errors: list[float], worst: list[float], trials: int = 4,
           task: dict | None = None) -> pd.DataFrame:
    """Replicated learning curves from epoch 0, the same for each of `trials` trials, through replicated_curves."""
    epochs = pd.DataFrame([{"family": family, "study": family, "trial": t, "epoch": e, "replica_disagreement": d,
                            "val_error": v, "val_error_max": w}
                           for t in range(trials)
                           for e, (d, v, w) in enumerate(zip(disagreement, errors, worst, strict=True))])
    trials_table = pd.DataFrame({"study": family, "trial": range(trials), "status": "ok", "seeds": 3,
                                 **{f"config.task.{k}": v for k, v in (task or {"name": "teacher"}).items()}})
    return assumptions.replicated_curves(epochs, trials_table)


def test_assumption1_counts_trials_with_a_replica_dead_at_chance_apart_from_the_rest():
    rotation = {"name": "rotation", "rotations": 8}  # chance 7/8
    live = curves("hyper", [0.2, 0.1, 0.05], [0.875, 0.3, 0.1], [0.88, 0.35, 0.12], task=rotation)
    # One replica stuck at chance: the mean error falls, the disagreement with it rises.
    dead = curves("embedding", [0.01, 0.2, 0.3], [0.875, 0.5, 0.4], [0.88, 0.87, 0.86], task=rotation)
    table = assumptions.disagreement_falls(pd.concat([live, dead])).set_index("family")
    assert table.loc["embedding", "dead"] == 4 and table.loc["embedding", "trained"] == 0
    assert table.loc["embedding", "median_ratio_dead"] == pytest.approx(30.0)
    assert table.loc["hyper", "first_epoch"] == 0 and table.loc["hyper", "median_ratio"] == pytest.approx(0.25)
    verdict, why = assumptions.assumption1_verdict(table.reset_index())
    assert verdict == HOLDS and "embedding: none of 4 trained; 4 with a replica dead at chance" in why
    # Counted with the rest, the dead replicas would have made it "does not hold".
    alive = assumptions.disagreement_falls(pd.concat([live, dead.assign(chance=np.nan)]))
    assert assumptions.assumption1_verdict(alive)[0] == FAILS


def test_assumption1_does_not_judge_a_family_whose_trials_are_still_training():
    rising = [0.01, 0.012, 0.014, 0.016, 0.018, 0.02, 0.02, 0.02, 0.02]  # disagreement doubles: last/first 2
    for errors, verdict in (([1.0, 0.5, 0.3, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2], FAILS),  # settled where it rose to
                            ([1.0, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2], INCONCLUSIVE)):  # still falling
        table = assumptions.disagreement_falls(curves("hyper", rising, errors, [e + 0.05 for e in errors]))
        found, why = assumptions.assumption1_verdict(table)
        assert found == verdict and ("4 still falling at the last epoch" in why) == (verdict == INCONCLUSIVE)
    # Converging while most trials still train is not judged either; a minority still falling is.
    assert assumptions.assumption1_verdict(falls(0.2, 0.3, still_training=3))[0] == INCONCLUSIVE
    assert assumptions.assumption1_verdict(falls(0.2, 0.3, still_training=2))[0] == HOLDS


def test_on_the_teacher_chance_is_an_error_of_1():
    table = assumptions.disagreement_falls(curves("hyper", [0.2, 0.3], [1.0, 0.6], [1.0, 0.97]))
    assert table["dead"].iloc[0] == 4


def width_verdict(slope: float, widths=(2, 4, 8, 16, 32, 64), spread: float = 0.1) -> str:
    """Three trials per width on error = width ** slope, scattered by factors exp(-spread), 1, exp(spread)."""
    narrow = pd.DataFrame([{"variant": "", "width": w, "test_error": w ** slope * np.exp(s)}
                           for w in widths for s in (-spread, 0.0, spread)])
    return assumptions.assumption2_verdict(assumptions.width_slopes(narrow, "test_error", SAMPLES))[0]


def test_assumption2_rule_has_all_three_outcomes():
    assert width_verdict(-0.7) == HOLDS
    assert width_verdict(0.0) == FAILS  # flat in width: a training-limited plateau
    assert width_verdict(-0.1, spread=0.8) == INCONCLUSIVE  # right at the threshold, and noisy
    assert width_verdict(-0.7, widths=(2, 4, 8)) == INCONCLUSIVE  # three widths within a decade


# ----- the page ------------------------------------------------------------------------------------------

def test_the_results_page_is_built_from_exported_tables_with_rule_based_verdicts(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    for name in ("teacher_scaling", "teacher_scaling_seed1", "teacher_scaling_seed2"):  # three seeded searches
        sweep = SweepWriter(runs / name)
        for width, hyper_error in [(1, 0.4), (2, 0.2), (4, 0.08), (8, 0.04)] * 3:  # each size thrice: few misses
            sweep.trial("hyper", hyper_error, width=width)
            sweep.trial("embedding", hyper_error, width=64 * width)  # the same errors with far larger q
        finished(runs / name, {"synthetic-hyper": 12, "synthetic-embedding": 12})
    for root in ("ROOT", "DATA", "FIGURES"):
        monkeypatch.setattr(results_page, root, tmp_path / {"ROOT": "", "DATA": "d/data", "FIGURES": "d"}[root])
    assert results_page.main(["--runs", str(runs), "--bootstrap", "50"]) == 0

    assert (tmp_path / "d/data/teacher_scaling.trials.parquet").exists()
    assert (tmp_path / "d/data/teacher_scaling_seed2.trials.parquet").exists()
    assert json.loads((tmp_path / "d/data/teacher_scaling.budgets.json").read_text())["budgets"] == {
        "synthetic-hyper": 12, "synthetic-embedding": 12}  # the budgets that ran, beside the space
    page = (tmp_path / "RESULTS.md").read_text()
    size = page.split("## Smaller primary nets (teacher)")[1].split("\n## ")[0]
    assert "*Verdict: holds*" in size and "(d/teacher_scaling_hypernet_frontier.png)" in size
    assert "teacher_scaling_seed1: holds" in size  # each search's own verdict beside the combined one
    assert "hypernet teacher, the favourable case" in size  # the only teacher run, labelled as such
    assert "| training-limited |" in size
    assert "## Threats to validity" in page and "predate the fair-effort protocol" in page
    assert "| Dependence on n = dim_i" in page and "**not run**" in page  # teacher_dims was not exported
    assert (tmp_path / "d/teacher_scaling_hypernet_frontier.png").stat().st_size > 0
    # Another resampling seed: the same verdicts, and the page says which seed it used.
    assert results_page.main(["--bootstrap", "50", "--seed", "7"]) == 0
    again = (tmp_path / "RESULTS.md").read_text()
    assert "(this page: seed 7)" in again and "resampling seed 7" in again
    def verdicts(text: str) -> list[str]:
        return [line.split(" | ")[2] for line in text.splitlines() if line.startswith("| ") and " | **" in line]

    assert verdicts(again) == verdicts(page) and "**holds**" in verdicts(page)


def finished(out, budgets: dict[str, int]) -> None:
    """The sweep.json launch writes, for a sweep of these trial budgets."""
    (out / "sweep.json").write_text(json.dumps({"experiment": out.name, "version": "test", "sweep_id": "x",
                                                "storage": None, "budgets": budgets, "num_samples": None}))


def test_a_sweep_with_trials_still_owed_is_not_exported(tmp_path, monkeypatch):
    sweep = SweepWriter(tmp_path / "runs" / "teacher_scaling")
    sweep.trial("hyper", 0.1)
    finished(sweep.out, {"synthetic-hyper": 3})  # one of three trials ran
    monkeypatch.setattr(results_page, "DATA", tmp_path / "data")
    lines = []
    assert results_page.export(tmp_path / "runs", log=lines.append) == []
    assert not (tmp_path / "data" / "teacher_scaling.trials.parquet").exists()
    assert lines == [f"{sweep.out}: 2 trials still owed, not exported (continue it with "
                     f"python -m hypersweep.launch --resume --out {sweep.out})"]


def test_an_unreadable_sweep_json_is_named_in_one_line_and_not_exported(tmp_path, monkeypatch):
    sweep = SweepWriter(tmp_path / "runs" / "teacher_scaling")
    sweep.trial("hyper", 0.1)
    (sweep.out / "sweep.json").write_text("{not json")
    monkeypatch.setattr(results_page, "DATA", tmp_path / "data")
    lines = []
    assert results_page.export(tmp_path / "runs", log=lines.append) == []
    (line,) = lines
    assert line.startswith(f"{sweep.out / 'sweep.json'}: unreadable (") and line.endswith("), not exported")


@pytest.mark.parametrize("target", ["mlp", "hypernet"])
def test_the_generic_teacher_carries_the_verdict_when_it_ran(target):
    trials = pd.concat([at("hyper", [10], 0.01).assign(**{"config.task.target": t}) for t in ("hypernet", target)])
    exp = results_page.Experiment("x", trials.assign(**{"config.task.name": "teacher"}), None, None)
    assert next(iter(results_page.teachers(exp))) == target


def widths_table(q_errors: dict[int, float], g_error: float = 0.06, std: float = 0.01) -> pd.DataFrame:
    """rotation_width_digits's trials: g at width 10, q at each width of `q_errors`; two lrs per width,
    the worse lr with a lower test error, so that a pick by test error would show."""
    rows = []
    for family, errors in (("hyper", {10: g_error}), ("embedding", q_errors)):
        for width, error in errors.items():
            for lr, val, test in ((1e-3, error, error), (3e-4, error + 0.2, error - 0.05)):
                rows.append({"family": family, "status": "ok", "config.model.primary.width": width,
                             "config.train.lr": lr, "val_error": val, "test_error": test, "test_error_std": std,
                             "seeds": 5, "params_primary": width * (1 if family == "hyper" else 30)})
    return pd.DataFrame(rows)


def test_the_q_width_that_matches_g_is_the_smallest_within_the_noise():
    table, sentence = depth.width_to_match(widths_table({10: 0.5, 40: 0.2, 160: 0.07, 320: 0.06}))
    assert sentence.endswith("q first matches it at width 160 (4,800 primary parameters, 480x g's) with 0.07 ± 0.01")
    assert set(table["lr"]) == {1e-3}  # each width's lr chosen by val_error, never by test error
    _, sentence = depth.width_to_match(widths_table({10: 0.5, 40: 0.2}))
    assert "no q up to width 40 (1,200 parameters) matches it (the widest reaches 0.2 ± 0.01)" in sentence


def test_the_slope_rule_is_applied_to_the_teachers_own_variant(tmp_path, monkeypatch):
    # teacher_scaling varies task.target: its trials' variant is "target=mlp", not "".
    import yaml
    from test_analysis import SPACE

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    trials = pd.concat([law(family, slope, SIZES, variant="target=mlp")
                        for family, slope in (("hyper", 0.5), ("embedding", 2.0))])
    trials = trials.assign(**{"config.task.name": "teacher", "config.task.target": "mlp"})
    monkeypatch.setattr(results_page, "ROOT", tmp_path)
    monkeypatch.setattr(results_page, "FIGURES", tmp_path)
    claim = results_page.slope_claim(results_page.Experiment("teacher_scaling", trials, None, space), SAMPLES)
    assert claim.verdict == HOLDS, claim.why


def test_runs_that_name_no_sweeps_exit_2_and_leave_the_page_alone(tmp_path, monkeypatch, capsys):
    for root in ("ROOT", "DATA", "FIGURES"):
        monkeypatch.setattr(results_page, root, tmp_path / {"ROOT": "", "DATA": "d/data", "FIGURES": "d"}[root])
    (tmp_path / "empty").mkdir()
    for runs in (tmp_path / "nonexistent", tmp_path / "empty"):
        assert results_page.main(["--runs", str(runs), "--bootstrap", "10"]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no RESULTS.md, no data, no figures


# ----- issue 21: not tested, guards and flags ------------------------------------------------------------

WHOLE = results_page.ROOT / "search_spaces" / "whole_model_teacher.yaml"


def whole_model(hyper_total: int, widths=(8, 16, 32, 64), depths=(1, 2),
                target: str = "hypernet") -> results_page.Claim:
    """total_claim on whole_model_teacher's space: g, q and N all reach 0.005; f and e cycle through
    `widths` and `depths`; f + g totals hyper_total + 10..19, e + q 1,100..1,109, N 2,000..2,009."""
    conditioned = pd.concat([at("hyper", range(10, 20), 0.005, total=hyper_total),
                             at("embedding", range(100, 110), 0.005, start=10, total=1000)])
    conditioned = conditioned.assign(**{"config.model.conditioner.width": np.resize(widths, len(conditioned)),
                                        "config.model.conditioner.depth": np.resize(depths, len(conditioned))})
    trials = pd.concat([conditioned, at("standard", range(2000, 2010), 0.005, start=20)]).assign(
        **{"variant": "seed=0", "config.task.name": "teacher", "config.task.target": target})
    exp = results_page.Experiment("whole_model_teacher", trials, None, WHOLE)
    return results_page.total_claim(exp, SAMPLES, "Whole model (teacher)")


def test_whole_model_rule_has_all_four_outcomes(tmp_path, monkeypatch):
    monkeypatch.setattr(results_page, "FIGURES", tmp_path)
    assert whole_model(hyper_total=100).verdict == HOLDS  # f + g below e + q and N, f and e searched
    assert whole_model(hyper_total=5000).verdict == FAILS
    edge = whole_model(hyper_total=100, widths=(256, 8))  # the best f at the top of its range: widen it first
    assert edge.verdict == INCONCLUSIVE and "best conditioner on a search bound: " in edge.why
    assert "hyper width 256 at eps 0.01" in edge.why
    # Undecided by the numbers, the bound is still named: it says where the search must widen next.
    close = whole_model(hyper_total=1095, widths=(256, 8))  # f + g within 1% of e + q
    assert close.verdict == INCONCLUSIVE and "hyper width 256 at eps 0.01" in close.why, close.why
    pinned = whole_model(hyper_total=100, widths=(128,), depths=(2,))
    assert pinned.verdict == NOT_TESTED and "f and e were pinned (128 x 2, not searched)" in pinned.why
    generic = whole_model(hyper_total=100, target="mlp")
    assert generic.verdict == NOT_TESTED and generic.why.startswith("judged on the generic teacher only")


def test_whole_model_table_names_each_teacher_seed_and_where_each_best_conditioner_sits(tmp_path, monkeypatch):
    monkeypatch.setattr(results_page, "FIGURES", tmp_path)
    claim = whole_model(hyper_total=100, widths=(8,), depths=(3,))
    body = "\n".join(claim.body)
    assert "Searched for f and e: hyper width 1-256, depth 1-5; embedding width 1-256, depth 1-5." in body
    assert "| target | family | params_total | f / e (width x depth) |" in body  # one teacher seed: no variant column
    assert "| 0.01 | hyper | 110 | 8 x 3 |" in body and "| 0.01 | standard | 2,000 | - |" in body
    two_seeds = pd.concat([at("hyper", [10], 0.005).assign(variant="seed=0"),
                           at("hyper", [20], 0.005, start=1).assign(variant="seed=1")])
    table = smallest(two_seeds, [0.01])
    rows = results_page.frontier_rows(table, "params_primary", "val_error", "test_error")
    assert list(rows["variant"]) == ["seed=0", "seed=1"]  # three teacher seeds' frontiers in one table stay apart


def plateau(pinned: float, small: float, lr: float = 0.01) -> results_page.Claim:
    """plateau_claim on teacher_embedding_plateau's grid at q width 16: N reaches 0.005 at lr 0.01, the
    pinned 128 x 2 e reaches `pinned` at `lr`, an 8 x 1 e reaches `small`, everything else 0.1."""
    rows = [{"family": "standard", "config.model.primary.width": 16, "config.train.lr": lr_,
             "val_error": 0.005 if lr_ == 0.01 else 0.1} for lr_ in (0.001, 0.01, 0.1)]
    for (w, d), best in (((128, 2), pinned), ((8, 1), small)):
        rows += [{"family": "embedding", "config.model.primary.width": 16, "config.model.conditioner.width": w,
                  "config.model.conditioner.depth": d, "config.train.lr": lr_,
                  "val_error": best if lr_ == lr else 0.1} for lr_ in (0.001, 0.01, 0.1)]
    trials = pd.DataFrame(rows).assign(variant="", status="ok", params_primary=400, trial=range(len(rows)))
    exp = results_page.Experiment("teacher_embedding_plateau", trials, None,
                                  results_page.ROOT / "search_spaces" / "teacher_embedding_plateau.yaml")
    return results_page.plateau_claim(exp, "Embedding plateau (teacher)")


def test_plateau_rule_names_q_capacity_the_conditioner_or_nothing():
    assert plateau(pinned=0.006, small=0.02).verdict == HOLDS  # 128 x 2 e within 25% of N: q's capacity
    conditioner = plateau(pinned=0.012, small=0.0055)
    assert conditioner.verdict == FAILS and "the conditioner: e 8 x 1 comes within +10%" in conditioner.why
    unresolved = plateau(pinned=0.012, small=0.009)
    assert unresolved.verdict == FAILS and "not resolved: no e comes within 25% (closest: e 8 x 1, +80%)" in \
        unresolved.why
    edge = plateau(pinned=0.012, small=0.0055, lr=0.1)  # the pinned e's best lr is the grid's top
    assert edge.verdict == INCONCLUSIVE and "best lr on the grid's edge for e 128 x 2" in edge.why
    assert "| 16 | e 128 x 2 + q | 400 | 0.012 | 0.01 | +140% |" in "\n".join(conditioner.body)


def test_dims_rule_is_inconclusive_on_a_slope_resting_on_less_than_a_decade():
    trials = pd.concat([law("hyper", 0.5, SIZES, variant="dim_i=2", dim_i=2),
                        law("embedding", 1.0, SIZES, variant="dim_i=2", dim_i=2, seed=1),
                        law("hyper", 0.5, SIZES[:2], variant="dim_i=8", dim_i=8, seed=2),  # two points
                        law("embedding", 3.0, SIZES, variant="dim_i=8", dim_i=8, seed=3)])
    verdict, why = results_page.dims_verdict(scaling.fit(trials, "val_error", "params_primary", samples=SAMPLES))
    assert verdict == INCONCLUSIVE and why.startswith("hyper (n=8)'s slope rests on 2 points over")


def rotation_grid(best_lr: float) -> results_page.Experiment:
    """rotation_width_embedding's grid: at each q width and embedding size, `best_lr` has the lowest val_error."""
    rows = [{"variant": "", "family": "embedding", "status": "ok", "study": "s",
             "config.model.primary.width": w, "config.model.embedding_dim": d, "config.train.lr": lr,
             "val_error": 0.1 if lr == best_lr else 0.2}
            for w in (10, 20) for d in (5, 760) for lr in (0.0003, 0.001, 0.003, 0.01)]
    trials = pd.DataFrame(rows).assign(trial=range(len(rows)))
    return results_page.Experiment("rotation_width_embedding", trials, None,
                                   results_page.ROOT / "search_spaces" / "rotation_width_embedding.yaml")


def test_a_family_whose_best_lr_sits_on_the_grid_edge_is_flagged():
    assert results_page.lr_on_edge(rotation_grid(0.01)) == ["embedding 4 of 4 at the top (0.01)"]
    assert results_page.lr_on_edge(rotation_grid(0.0003)) == ["embedding 4 of 4 at the bottom (0.0003)"]
    assert results_page.lr_on_edge(rotation_grid(0.001)) == []


def test_an_embedding_point_that_a_smaller_plain_net_beats_while_underfitting_is_optimisation_limited():
    def flagged(train_loss: float) -> list[str]:
        trials = pd.concat([at("embedding", [5000], 0.012).assign(train_loss=train_loss),
                            at("standard", [1500], 0.009, start=1).assign(train_loss=0.008)])
        return results_page.optimisation_limited(trials, "val_error", "params_primary", [0.03])

    assert flagged(train_loss=0.011) == ["embedding at eps 0.03 (5,000 parameters, val_error 0.012, train loss "
                                         "0.011; N reaches 0.009 with 1,500)"]
    assert flagged(train_loss=0.001) == []  # it fits its training set: not an optimisation limit


def test_threats_say_what_would_decide_each_undecided_claim_and_nothing_for_a_decided_one():
    undecided = results_page.Claim("Dependence on n = dim_i", "c", "teacher_dims", INCONCLUSIVE, "why", [])
    decided = results_page.Claim("Scaling exponents", "c", "teacher_scaling", HOLDS, "why", [])
    lines = results_page.threats([], [undecided, decided])
    assert [line for line in lines if line.startswith("- **What would decide")] == [
        f"- **What would decide Dependence on n = dim_i** (inconclusive): "
        f"{results_page.WOULD_DECIDE['Dependence on n = dim_i']}."]
    # Every text belongs to a claim the page states (a renamed claim must not lose its line silently).
    source = (results_page.ROOT / "analysis" / "results_page.py").read_text()
    before, after = source.split("WOULD_DECIDE = {")
    elsewhere = before + after.split("\n}\n", 1)[1]
    assert [title for title in results_page.WOULD_DECIDE if f'"{title}"' not in elsewhere] == []


def test_a_failed_plateau_diagnosis_becomes_a_threat_to_the_size_ratios(tmp_path, monkeypatch):
    pinned_worse = plateau(pinned=0.012, small=0.0055)
    assert any(line.startswith("- **The pinned e holds q back**") for line in results_page.threats([], [pinned_worse]))
    q_capacity = plateau(pinned=0.006, small=0.02)
    assert not any("pinned e holds q back" in line for line in results_page.threats([], [q_capacity]))


def test_size_tables_show_f_and_e_only_where_they_were_searched(tmp_path, monkeypatch):
    spaces = results_page.ROOT / "search_spaces"
    monkeypatch.setattr(results_page, "FIGURES", tmp_path)
    monkeypatch.setattr(results_page, "ROOT", tmp_path)  # the page links its figures relative to ROOT

    def body(name: str, widths, depths) -> str:
        trials = pd.concat([at("hyper", range(10, 20), 0.005), at("embedding", range(200, 210), 0.005, start=10)])
        trials = trials.assign(**{"config.model.conditioner.width": np.resize(widths, len(trials)),
                                  "config.model.conditioner.depth": np.resize(depths, len(trials)),
                                  "config.task.name": "teacher", "config.task.target": "mlp"})
        exp = results_page.Experiment(name, trials, None, spaces / f"{name}.yaml")
        return "\n".join(results_page.size_claim([exp], SAMPLES, "t", "c").body)

    assert "| 0.01 | hyper | 10 | 10 | 8 x 2 |" in body("teacher_capacity_fe", (8, 16), (2, 3))
    assert "f / e" not in body("teacher_capacity", (128,), (2,))  # pinned: the same 128 x 2 on every row says nothing


def test_the_pinned_f_is_measured_against_the_best_other_f_at_each_g_size():
    rows = [{"config.model.primary.width": 4, "config.model.conditioner.width": w, "config.model.conditioner.depth": d,
             "config.train.lr": lr, "val_error": best if lr == best_lr else 0.5}
            for (w, d), best, best_lr in (((128, 2), 0.014, 0.01), ((8, 1), 0.01, 0.1), ((8, 2), 0.02, 0.01))
            for lr in (0.001, 0.01, 0.1)]
    trials = pd.DataFrame(rows).assign(variant="", family="hyper", status="ok", params_primary=41,
                                       trial=range(len(rows)))
    exp = results_page.Experiment("teacher_hyper_plateau", trials, None,
                                  results_page.ROOT / "search_spaces" / "teacher_hyper_plateau.yaml")
    assert results_page.pinned_f_gaps(exp) == [
        "g width 4: 128 x 2 f +40% against f 8 x 1 (0.014 vs 0.01), 8 x 1's best lr 0.1 on the grid's edge"]
    assert results_page.pinned_f_gaps(None) == []


def test_assumption1_claim_takes_the_worst_experiment_and_says_each_ones_verdict(tmp_path, monkeypatch):
    monkeypatch.setattr(results_page, "FIGURES", tmp_path)
    monkeypatch.setattr(results_page, "ROOT", tmp_path)  # figures are linked relative to ROOT

    def experiment(name: str, disagreement: list[float], step: float = 0.1) -> results_page.Experiment:
        epochs = pd.DataFrame([{"family": "hyper", "study": "hyper", "trial": t, "epoch": e, "replica_disagreement": d,
                                "val_error": 0.5 - step * e, "val_error_max": 0.6 - step * e}
                               for t in range(4) for e, d in enumerate(disagreement)])
        trials = pd.DataFrame({"study": "hyper", "trial": range(4), "status": "ok", "seeds": 3,
                               "config.task.name": "teacher"})
        return results_page.Experiment(name, trials, epochs, tmp_path / f"{name}.yaml")

    claim = results_page.assumption1_claim([experiment("converging", [0.2, 0.1, 0.05]),
                                            experiment("diverging", [0.05, 0.1, 0.2])], "Assumption 1")
    assert claim.verdict == FAILS
    assert claim.why.startswith("converging: holds (hyper: median last/first 0.25")
    assert "; diverging: does not hold (hyper: median last/first 4.00" in claim.why
    # Diverging while every trial still trains (val_error falling to the last epoch) is not judged, and the
    # claim says what the verdict was before that guard, which came after the data.
    claim = results_page.assumption1_claim([experiment("converging", [0.2, 0.1, 0.05]),
                                            experiment("training", [0.05 * 1.1 ** e for e in range(9)], 0.04)],
                                           "Assumption 1")
    assert claim.verdict == INCONCLUSIVE and "training: inconclusive (hyper: median last/first 2.14 over 4 " \
        "trained of 4, 4 still falling at the last epoch" in claim.why
    assert claim.why.endswith("Without the still-falling guard, added after these runs were seen, the verdict "
                              "would be does not hold")
