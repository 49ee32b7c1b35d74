"""Work units, plans and shards (attrlab.experiments.planner)."""

import hashlib
import json

import numpy as np
import pytest
import torch

from attrlab.experiments.planner import (
    Group,
    Plan,
    Unit,
    canonical,
    canonical_json,
    content_key,
    model_fingerprint,
    parse_shard,
    state_dict_sha1,
    tensor_digest,
)


def unit(**kw):
    base = dict(kind="bench", model={"name": "m", "sha1": "0" * 40},
                data={"dataset": "digits", "split": "test"}, samples=(0, 1),
                method={"name": "ig", "options": {"n_steps": 4}},
                metric={"name": "morf", "options": {}}, seed=0, extra={"target": "label"})
    return Unit(**{**base, **kw})


def test_key_is_sha256_of_canonical_json_and_ignores_dict_order():
    u = unit(method={"options": {"b": 1, "a": [1, 2]}, "name": "x"})
    v = unit(method={"name": "x", "options": {"a": (1, 2), "b": 1}})
    assert u.key == v.key and u == v and len({u, v}) == 1
    text = json.dumps(u.spec(), sort_keys=True, separators=(",", ":"))
    assert u.key == hashlib.sha256(text.encode()).hexdigest()
    assert Unit.from_spec(json.loads(json.dumps(u.spec()))).key == u.key


@pytest.mark.parametrize("change", [
    dict(model={"name": "m", "sha1": "1" * 40}), dict(data={"dataset": "digits", "split": "train"}),
    dict(samples=(0, 2)), dict(method={"name": "ig", "options": {"n_steps": 5}}),
    dict(metric={"name": "morf", "options": {"steps": 3}}), dict(seed=1),
    dict(extra={"target": "pred"}), dict(kind="roar")])
def test_every_setting_changes_the_key(change):
    assert unit(**change).key != unit().key


def test_tensors_are_named_by_content():
    a = torch.arange(6.0).reshape(2, 3)
    assert canonical(a) == {"tensor": tensor_digest(a), "shape": [2, 3], "dtype": "torch.float32"}
    assert tensor_digest(a) == tensor_digest(a.t().contiguous().t().clone())
    assert tensor_digest(a) != tensor_digest(a.double())  # dtype counts
    assert tensor_digest(a) != tensor_digest(a.reshape(3, 2))  # shape counts
    b = a.clone()
    b[1, 2] += 1e-6
    assert tensor_digest(a) != tensor_digest(b)
    assert canonical(np.arange(6.0).reshape(2, 3))["tensor"] == tensor_digest(
        torch.arange(6.0, dtype=torch.float64).reshape(2, 3))
    u1 = unit(method={"name": "deepshap", "options": {"baselines": a}})
    u2 = unit(method={"name": "deepshap", "options": {"baselines": a.clone()}})
    u3 = unit(method={"name": "deepshap", "options": {"baselines": b}})
    assert u1.key == u2.key != u3.key
    assert tensor_digest(torch.tensor([True, False])) != tensor_digest(torch.tensor([1, 0]))
    assert tensor_digest(torch.ones(2, dtype=torch.bfloat16))  # no numpy dtype needed


def test_non_json_values_are_rejected():
    with pytest.raises(TypeError, match="by content"):
        canonical({"f": lambda x: x})
    with pytest.raises(TypeError, match="keys must be strings"):
        canonical({1: 2})
    with pytest.raises(ValueError, match="non-finite"):
        canonical_json({"a": float("nan")})
    assert content_key({"a": 1}) == content_key({"a": 1})


def test_model_fingerprint_follows_the_weights():
    m = torch.nn.Linear(3, 2)
    fp = model_fingerprint(m, "/some/dir/ckpt.pt")
    assert fp["name"] == "ckpt.pt" and fp["sha1"] == state_dict_sha1(m)
    assert model_fingerprint(m, "torchvision:resnet18")["name"] == "torchvision:resnet18"
    with torch.no_grad():
        m.bias[0] += 1
    assert state_dict_sha1(m) != fp["sha1"]


def make_plan(groups=7, per=3):
    return Plan(tuple(Group({"g": g}, tuple(unit(samples=(g,), seed=s) for s in range(per)))
                      for g in range(groups)))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10])
def test_shards_are_disjoint_whole_groups_covering_the_plan(n):
    plan = make_plan()
    shards = [plan.shard(i, n) for i in range(n)]
    keys = [k for s in shards for k in s.keys()]
    assert sorted(keys) == sorted(plan.keys()) and len(set(keys)) == len(keys)
    for s in shards:
        for g in s.groups:
            assert g in plan.groups  # whole groups
    assert [s.keys() for s in shards] == [plan.shard(i, n).keys() for i in range(n)]
    assert len(plan) == 21


def test_parse_shard_and_bad_shards():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
    with pytest.raises(ValueError, match="shard"):
        make_plan().shard(2, 2)


def test_pending_keeps_groups_with_an_undone_unit():
    plan = make_plan(3, 2)
    done = set(plan.keys()) - {plan.groups[1].units[1].key}
    assert plan.pending(done).groups == (plan.groups[1],)
    assert plan.pending(set()).groups == plan.groups
