"""The performance suite's floor: the model calls a method makes, as recorded and replayed."""

import importlib.util
from pathlib import Path

import torch

spec = importlib.util.spec_from_file_location(
    "bench_suite", Path(__file__).resolve().parents[1] / "benchmarks" / "suite.py")
suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite)


def test_recorded_calls_match_the_registry_cost_and_model_is_restored():
    model, x, y, fit_data, _ = suite.build("digits", 8, 0)
    flags = [p.requires_grad for p in model.parameters()]
    for name, rows, backward in (("ig", 50, 1), ("smoothgrad", 25, 1), ("deepshap", 32, 1),
                                 ("saliency", 1, 1), ("iba", 100, 10)):
        row = suite.bench_method(name, model, x[:4], y[:4], fit_data, 1, suite.CLOCKS["cpu"], 0)
        assert row["rows_per_sample"] == rows == row["cost_at_defaults"], name
        assert row["backward_calls"] == backward and row["floor_s"] > 0
    assert [p.requires_grad for p in model.parameters()] == flags


def test_floor_replays_forward_only_calls_without_a_graph():
    model = torch.nn.Linear(3, 2)
    seen = []
    model.register_forward_hook(lambda m, a, o: seen.append((a[0].shape[0], o.requires_grad)))
    for prm in model.parameters():
        prm.requires_grad_(False)
    suite.make_floor(model, torch.randn(2, 3), [(5, False), (3, True)])()
    assert seen == [(5, False), (3, True)]
