"""Reading the answer off a sweep: the smallest model per target, ratios, Pareto fronts."""
import pandas as pd

from hypersweep.frontier import architecture, format_table, pareto_front, ratios, smallest


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
    return frame.assign(variant="", params_total=frame["params_primary"] + 100,
                        **{"config.model.primary.width": 4, "config.model.primary.depth": 1,
                           "config.model.conditioner.width": 64, "config.model.conditioner.depth": 2,
                           "config.model.embedding_dim": 8})


def test_the_smallest_ok_model_whose_search_metric_meets_the_target():
    table = smallest(trials(), [0.1, 0.01, 0.001]).set_index(["family", "target"])
    assert table.loc[("hyper", 0.1), "params_primary"] == 9  # trial 1 is smaller but misses 0.1
    assert table.loc[("hyper", 0.1), "test_error"] == 0.025  # reported on the held-out split
    assert table.loc[("hyper", 0.01), "params_primary"] == 40
    assert not table.loc[("hyper", 0.001), "found"]  # the diverged trial does not count
    assert table.loc[("embedding", 0.1), "params_primary"] == 200


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
