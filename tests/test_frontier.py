"""Reading the answer off a sweep: the smallest model per target, ratios, Pareto fronts, training-limited flags."""
import pandas as pd
import pytest

from hypersweep import frontier
from hypersweep.frontier import (
    DEFAULT_TARGETS,
    architecture,
    flag_texts,
    format_table,
    pareto_front,
    ratios,
    smallest,
)


def trials():
    rows = [  # (family, trial, params, val_error, test_error, status)
        ("hyper", 0, 9, 0.02, 0.025, "ok"),
        ("hyper", 1, 5, 0.20, 0.21, "ok"),
        ("hyper", 2, 3, 0.001, 0.5, "diverged"),  # never counts
        ("hyper", 3, 40, 0.005, 0.006, "ok"),
        ("embedding", 0, 900, 0.02, 0.03, "ok"),
        ("embedding", 1, 200, 0.08, 0.09, "ok"),
        ("embedding", 2, 2000, 0.03, 0.03, "ok"),
    ]
    frame = pd.DataFrame(rows, columns=["family", "trial", "params_primary", "val_error", "test_error", "status"])
    return frame.assign(variant="", study="s-" + frame["family"], params_total=frame["params_primary"] + 100,
                        **{"config.model.primary.width": 4, "config.model.primary.depth": 1,
                           "config.model.conditioner.width": 64, "config.model.conditioner.depth": 2,
                           "config.model.embedding_dim": 8})


def curves(table: pd.DataFrame, **falling: list[float]) -> pd.DataFrame:
    """Learning curves for every trial of `table`: flat at its val_error, or the given curve (key: study_trial)."""
    rows = []
    for r in table.itertuples():
        values = falling.get(f"{r.family}_{r.trial}", [r.val_error] * 20)
        rows += [{"study": r.study, "trial": r.trial, "epoch": e + 1, "val_error": v} for e, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_the_smallest_ok_model_whose_search_metric_meets_the_target():
    table = smallest(trials(), [0.1, 0.01, 0.001]).set_index(["family", "target"])
    assert table.loc[("hyper", 0.1), "params_primary"] == 9  # trial 1 is smaller but misses 0.1
    assert table.loc[("hyper", 0.1), "test_error"] == 0.025  # reported on the held-out split
    assert table.loc[("hyper", 0.01), "params_primary"] == 40
    assert not table.loc[("hyper", 0.001), "found"]  # the diverged trial does not count
    assert table.loc[("embedding", 0.1), "params_primary"] == 200


def test_the_default_targets_are_one_tuple_that_the_analyses_share():
    from analysis.loading import Sweep

    assert DEFAULT_TARGETS == (0.1, 0.01)
    assert Sweep(None, trials(), None).targets() == [0.1, 0.01]


def test_ratios_compare_each_family_with_the_hypernetwork_at_equal_target():
    ratio = ratios(smallest(trials(), [0.1, 0.03])).set_index("target")
    assert ratio.loc[0.1, "embedding/hyper"] == 200 / 9
    assert ratio.loc[0.03, "embedding/hyper"] == 900 / 9


def test_the_pareto_front_keeps_only_undominated_trials():
    front = pareto_front(trials())
    assert sorted(front[front["family"] == "hyper"]["trial"]) == [0, 1, 3]
    assert sorted(front[front["family"] == "embedding"]["trial"]) == [0, 1]  # 2000 params at 0.03 is beaten


def test_the_printed_table_names_misses_and_architectures():
    text = format_table(smallest(trials(), [0.1, 0.001]))
    assert "no trial met this target" in text and "primary 4x1, conditioner 64x2  (trial 0)" in text
    assert architecture(pd.Series({"family": "standard", "primary.width": 3, "primary.depth": 2})) == "primary 3x2"


def test_a_point_is_capacity_limited_when_10x_more_size_buys_a_quarter_off_the_error():
    t = trials()
    table = smallest(t, [0.1, 0.01], epochs=curves(t)).set_index(["family", "target"])
    # hyper at 0.1: trial 0 (9 params, 0.02); 40 params is < 10x larger, so rule (a) has nothing to compare.
    assert table.loc[("hyper", 0.1), "training_limited"] == False  # noqa: E712 (a nullable boolean)
    assert table.loc[("hyper", 0.1), "limited_by"] == ""


def test_rule_a_flags_a_point_that_a_10x_smaller_model_nearly_matched():
    t = trials()
    t.loc[(t["family"] == "embedding") & (t["trial"] == 2), ["params_primary", "val_error"]] = [9000, 0.016]
    table = smallest(t, [0.017], epochs=curves(t)).set_index("family")
    # 9000 params reach 0.016, but trial 0 with 900 params (10x smaller) reached 0.02: only 20% worse.
    assert table.loc["embedding", "training_limited"] == True  # noqa: E712
    assert table.loc["embedding", "limited_by"] == "flat: trial 0, 10x smaller, reached 0.02"


def test_rule_a_flags_a_point_that_no_10x_larger_model_improved_on():
    t = trials()
    # From 200 to 2000 params (10x), nothing got further than 12% below the 200-param model's 0.08.
    t.loc[t["family"] == "embedding", "val_error"] = [0.075, 0.08, 0.07]
    table = smallest(t, [0.1], epochs=curves(t)).set_index("family")
    assert table.loc["embedding", "params_primary"] == 200
    assert table.loc["embedding", "limited_by"] == "flat: nothing up to 10x larger got 25% lower (best 0.07, trial 2)"


@pytest.mark.parametrize(("last_drop", "flagged"), [(0.01, False), (0.04, True)])
def test_rule_b_flags_a_learning_curve_still_falling_by_more_than_2_percent(last_drop, flagged):
    t = trials()
    # 20 epochs: the window is 3 epochs (10%, at least 3); the last three sit `last_drop` below the three before.
    curve = [0.05] * 14 + [0.02 / (1 - last_drop)] * 3 + [0.02] * 3
    table = smallest(t, [0.1], epochs=curves(t, hyper_0=curve)).set_index("family")
    assert table.loc["hyper", "training_limited"] == flagged
    assert table.loc["hyper", "limited_by"] == (f"still falling: -{last_drop:.0%} over the last 3 epochs"
                                                if flagged else "")


def test_without_learning_curves_rule_b_is_unchecked_and_says_so():
    table = smallest(trials(), [0.1])
    assert table["training_limited"].isna().all()  # rule (a) did not fire and (b) could not be checked
    assert flag_texts(table) == ["?", "?"]
    text = format_table(table)
    assert "? = no learning curve to check (b)" in text


def test_the_printed_table_shows_the_flag_and_its_reason():
    t = trials()
    t.loc[t["family"] == "embedding", "val_error"] = [0.075, 0.08, 0.07]
    text = format_table(smallest(t, [0.1], epochs=curves(t)))
    embedding = next(line for line in text.splitlines() if line.startswith("embedding"))
    assert " yes " in embedding and embedding.endswith("<- flat: nothing up to 10x larger got 25% lower (best 0.07, "
                                                       "trial 2)")
    assert " no " in next(line for line in text.splitlines() if line.startswith("hyper"))


def test_the_flat_rule_on_arrays_is_the_one_the_table_uses():
    sizes, errors = pd.Series([10.0, 100.0, 1000.0]).to_numpy(), pd.Series([0.1, 0.09, 0.01]).to_numpy()
    assert frontier.flat_evidence(sizes, errors, 100.0, 0.09) == ("smaller", 0)  # 0.09 is within 25% of 0.1
    assert frontier.flat_evidence(sizes, errors, 1000.0, 0.01) == ("", -1)  # 100x smaller is 9x worse
    assert frontier.flat_evidence(sizes, errors, 10.0, 0.1) == ("larger", 1)  # 10x the size bought only 10%
    assert frontier.flat_evidence(sizes[1:], errors[1:], 100.0, 0.09) == ("", -1)  # 1000 params are 89% better
    # A badly trained big model alone cannot make a point look flat: every trial up to its size counts.
    assert frontier.flat_evidence(pd.Series([10.0, 50.0, 100.0]).to_numpy(), pd.Series([0.1, 0.01, 0.095]).to_numpy(),
                                  10.0, 0.1) == ("", -1)
    assert frontier.flat_evidence(pd.Series([10.0, 50.0, 100.0]).to_numpy(), pd.Series([0.1, 0.09, 0.095]).to_numpy(),
                                  10.0, 0.1) == ("larger", 1)


def test_no_trials_give_an_empty_frontier_not_a_key_error():
    empty = pd.DataFrame()
    table = frontier.smallest(empty, [0.1])
    assert table.empty and list(table.columns) == ["variant", "family", "target", "found"]
    assert frontier.pareto_front(empty).empty
    assert frontier.format_table(table).splitlines()[0].split()[:2] == ["family", "target"]  # the header alone
    assert frontier.format_table(empty).count("\n") == 0
