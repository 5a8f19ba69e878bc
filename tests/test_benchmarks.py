"""Smoke tests: every benchmark runs on a tiny size and reports sane numbers (nothing is timed)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import driver_cost, run
from benchmarks.flop_efficiency import training_flops
from benchmarks.measure import Result, compare
from hypersweep.config import MLPConfig, ModelConfig
from hypersweep.models import build_model

KEYS = {"ours", "baseline", "unit", "ratio", "goal", "met"}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n == "search_efficiency" else n  # 60 replays: ~30 s
    for n in run.BENCHMARKS if n not in ("sweep_parallel", "sweep_scale", "batched_asks", "trial_packing")])
def test_each_benchmark_runs_on_a_tiny_size(name):
    check(run.BENCHMARKS[name]("tiny"))


@pytest.mark.slow  # 4 replays, 2 of them one trial at a time to 130-150 trials: ~25 s
def test_the_batched_asks_benchmark_replays_both_ways_on_a_tiny_size():
    result = run.BENCHMARKS["batched_asks"]("tiny")
    check(result)
    d = result.details
    assert d["repetitions"] == 2 and d["batch"] == 8 and d["found"] == d["sequential_found"] == 2
    assert result.ratio == result.baseline / result.ours  # sequential / batched: larger is better
    assert 0 < d["batched_rounds"] <= result.ours / 8 + 1  # batches to the answer


def test_the_sweep_benchmark_runs_on_a_tiny_size(ray_address):
    result = run.BENCHMARKS["sweep_parallel"]("tiny")
    check(result)
    assert result.details["trials"] == 2 and "overhead_s_per_trial" in result.details
    assert result.details["plain_parallel_s"] > 0  # the two-process reference ran


@pytest.mark.slow  # starts a Ray of its own, twice
def test_the_scale_benchmark_runs_every_study_through_the_sweep_unpacked_and_packed_on_a_tiny_size():
    result = run.BENCHMARKS["sweep_scale"]("tiny")
    check(result)
    d = result.details
    assert d["trials"] == 24 and d["owed"] == 0 and d["studies"] == 6 and d["failed"] == 0
    assert d["slots"] == 4 and 0 < d["first_trial_after_s"] < d["unpacked_wall_s"]
    assert d["ask_ms_per_trial"] > 0 and d["tell_ms_per_trial"] > 0 and d["record_ms_per_trial"] > 0
    assert not d["torch_in_workers"]  # the simulated trial keeps 64 workers light
    # the packed sweep ran the same number of trials, in no more Tune trials, with its three ratios
    assert d["packed_trials"] == 24 and d["packed_owed"] == 0 and d["packed_failed"] == 0
    assert d["packed_studies"] == 6 and 0 < d["packed_tune_trials"] <= 24
    assert result.ours > 0 and result.baseline > 0 and d["unpacked_ratio"] > 0 and d["packed_ratio"] > 0
    assert result.goal == 1.0 and d["unpacked_goal"] == d["packed_goal"] == 0.9
    assert not d["packed_torch_in_workers"]


def test_a_simulated_pack_sleeps_less_than_its_members_where_packing_was_measured_to_pay():
    from benchmarks import simulated_trial

    measured = json.loads(simulated_trial.PACKING.read_text())
    assert measured["command"] == "python -m benchmarks.sweep_scale --measure-packing"
    for depth in (1, 2, 3):
        assert simulated_trial.pack_speedup(1, depth) == 1.0  # a pack of one is a lone trial
        c = measured["extra_member_cost"][str(depth)]
        assert simulated_trial.pack_speedup(4, depth) == pytest.approx(4 / (1 + 3 * c))
    assert simulated_trial.pack_speedup(8, 1) > 1  # at depth 1 a member is mostly overhead, which a pack shares


def test_a_simulated_trial_answers_from_the_table_without_ray():
    from benchmarks import simulated_trial

    width, depth = next(iter(simulated_trial.rows()))
    config = {"model.primary.width": width, "model.primary.depth": depth, "train.lr": 0.003}
    result, seconds = simulated_trial.answer(config)
    row = simulated_trial.rows()[(width, depth)]
    assert result["params_primary"] == row["params_primary"] and seconds == row["wall_s"]
    assert result["val_error"] == pytest.approx(row["val_error"], rel=0.03)  # lr 3e-3: only the seed's jitter
    slower = simulated_trial.answer({**config, "train.lr": 0.0003})[0]
    assert slower["val_error"] > result["val_error"]  # a learning rate far from 3e-3 costs accuracy


@pytest.mark.slow  # ~30 s on 2 shared cores: packs of 16 and 64 on the CPU
def test_the_gpu_packing_benchmark_runs_its_cpu_smoke_variant(capsys):
    from benchmarks import gpu_packing

    assert gpu_packing.main(["--device", "cpu", "--quick"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["device"] == "cpu" and figures["process_start_s"] > 0
    for family in ("hyper", "standard"):
        assert figures[family]["alone_trials_per_s"] > 0
        for k in ("K16", "K64"):
            assert figures[family][k]["trials_per_s"] > 0 and figures[family][k]["packs"] >= 1


def test_the_gpu_packing_benchmark_refuses_cuda_without_a_gpu(capsys):
    from benchmarks import gpu_packing

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    assert gpu_packing.main([]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no CUDA device" in err


@pytest.mark.parametrize("objective", ["pareto", "constrained"])
def test_driver_cost_times_ask_and_tell_on_a_filled_sqlite_study(objective):
    row = driver_cost.measure(objective, 20, 2)
    assert row["trials_in_study"] == 20 and row["proposals_per_ask"] >= 1
    assert row["skipped_in_study"] == 0  # passed-over proposals never reach the study
    if objective == "constrained":  # and there were some: TPE keeps proposing models larger than a feasible one
        assert row["proposals_per_ask"] > 1
    assert row["ask_ms_median"] > 0 and row["tell_ms_median"] > 0


def check(result: Result) -> None:
    data = json.loads(json.dumps(result.as_json()))
    assert set(data) >= KEYS
    for key in ("ours", "baseline", "ratio", "goal"):
        assert 0 < data[key] < math.inf, key
    assert isinstance(data["unit"], str) and isinstance(data["met"], bool)


def test_run_prints_the_table_and_writes_the_json(tmp_path, monkeypatch, capsys):
    fake = {"fast": lambda size: compare(4.0, 2.0, "samples/s", 2.0, 30.0, size=size)}
    monkeypatch.setattr(run, "BENCHMARKS", fake)
    assert run.main(["--quick", "--json", str(tmp_path / "out.json")]) == 0
    assert json.loads((tmp_path / "out.json").read_text()) == {
        "fast": {"ours": 4.0, "baseline": 2.0, "unit": "samples/s", "ratio": 2.0, "goal": 30.0, "met": False,
                 "size": "quick"}}
    out = capsys.readouterr().out
    assert "benchmark" in out and "met?" in out and "fast" in out and "NO" in out


@pytest.mark.parametrize("model", [
    ModelConfig("hyper", MLPConfig(6, 2), MLPConfig(7, 2)),
    ModelConfig("hyper", MLPConfig(6, 1), MLPConfig(7, 1), primary_bias=False),
    ModelConfig("embedding", MLPConfig(6, 2), MLPConfig(7, 2), embedding_dim=3),
    ModelConfig("standard", MLPConfig(6, 3)),
    ModelConfig("standard", MLPConfig(5, 0)),
])
def test_flops_counted_from_the_architecture_match_torchs_counter(model):
    net = build_model(model, dim_i=4, dim_x=2, dim_out=3)
    # torch counts matrix products only: 100 points put g on its bmm path (few run it elementwise).
    with FlopCounterMode(display=False) as counter:
        net(torch.randn(5, 4), torch.randn(5, 100, 2)).pow(2).sum().backward()
    assert training_flops(model, 4, 2, 3, points=100) == counter.get_total_flops() / 5


@pytest.mark.slow  # three sweeps, each on a Ray of its own
def test_the_packing_benchmark_trains_the_same_trials_packed_and_unpacked_on_a_tiny_size():
    result = run.BENCHMARKS["trial_packing"]("tiny")  # it refuses if the variants trained different trials
    check(result)
    assert result.details["trials"] == 9 and result.details["mean_pack8"] > 1
