"""`attrlab reproduce attribution-mask` (paper 01) end to end on real data, in quick mode."""

import json
import time

import pytest
import torch

from attrlab import cli
from attrlab.data import NormalizedDataset
from attrlab.data.core import DatasetInfo
from attrlab.experiments import train
from attrlab.experiments.reproduce.attribution_mask import (
    MaskedDataset,
    masked_copy,
    reproduce,
)
from attrlab.methods.aggregate.attribution_mask import AttributionMask
from attrlab.models import nib_cnn


def test_masked_copy_is_the_teacher_mask_times_the_image():
    torch.manual_seed(0)
    model = nib_cnn(num_classes=3, width=4).eval()
    info = DatasetInfo("toy", 3, 1, 8, (0.5,), (0.25,), tuple("abc"))
    imgs = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
    data = NormalizedDataset(imgs, torch.arange(10) % 3, info)
    masked = masked_copy(model, data, iterations=2, batch_size=4, progress=False)
    x, y = data.tensors()
    expected = x * AttributionMask(model, "gxsi", iterations=2).attribute(x, y)
    assert isinstance(masked, MaskedDataset)
    torch.testing.assert_close(masked.images, expected)
    # training and evaluation read the masked floats as they are
    xm, _ = masked.tensors(torch.arange(3))
    torch.testing.assert_close(xm, expected[:3])
    assert 0.0 <= train.accuracy(model, masked) <= 1.0
    with pytest.raises(ValueError, match="float"):
        MaskedDataset(imgs, y, info)


# `reproduce attribution-mask --quick` (limit 4, student_subset 200) as measured before the
# layering restructure: MIA in %, i = 0..3
QUICK = {'table2 CIFAR-10, NIB VGG16': {'pgxi': [75.0, 100.0, 100.0, 100.0],
                                        'gbp': [75.0, 75.0, 75.0, 25.0],
                                        'gxi': [75.0, 100.0, 100.0, 100.0],
                                        'deeplift': [75.0, 100.0, 100.0, 100.0],
                                        'ig': [75.0, 100.0, 100.0, 100.0],
                                        'gxsi': [75.0, 100.0, 100.0, 100.0]},
         'table2 MNIST, NIB CNN': {'pgxi': [100.0, 100.0, 75.0, 75.0],
                                   'gbp': [100.0, 100.0, 100.0, 75.0],
                                   'gxi': [100.0, 100.0, 100.0, 100.0],
                                   'deeplift': [100.0, 100.0, 100.0, 100.0],
                                   'ig': [100.0, 100.0, 100.0, 100.0],
                                   'gxsi': [100.0, 100.0, 100.0, 100.0]},
         'table5': {'NIB': {'gxi': [75.0, 100.0, 100.0, 100.0],
                            'gxsi': [75.0, 100.0, 100.0, 100.0]},
                    '+LB': {'gxi': [100.0, 100.0, 100.0, 75.0],
                            'gxsi': [100.0, 100.0, 100.0, 100.0]},
                    '+BNB': {'gxi': [75.0, 100.0, 100.0, 75.0], 'gxsi': [75.0, 100.0, 100.0, 75.0]},
                    '+LB+BNB': {'gxi': [100.0, 100.0, 100.0, 75.0],
                                'gxsi': [100.0, 100.0, 100.0, 100.0]}},
         'table3': {'NIB VGG16': [75.0, 100.0, 100.0, 100.0]},
         'table4': {'accuracy_without_mask': 10.6, 'accuracy_with_mask': 9.4}}


def test_reproduce_attribution_mask_quick(real_data_dir, tmp_path):
    out = tmp_path / "r"
    t0 = time.perf_counter()
    report = reproduce(out, limit=4, quick=True, data_dir=str(real_data_dir), progress=False,
                       student_subset=200)
    first = time.perf_counter() - t0
    text = report.read_text()
    for heading in ("Table 2 / Figure 4: CIFAR-10", "Table 2 / Figure 4: MNIST", "Table 5",
                    "Table 3", "Table 4"):
        assert heading in text
    res = json.loads((out / "results.json").read_text())
    curves = res["table2 CIFAR-10, NIB VGG16"]
    assert set(curves) == {"pgxi", "gbp", "gxi", "deeplift", "ig", "gxsi"}
    for ys in curves.values():
        assert len(ys) == 4 and all(0.0 <= v <= 100.0 for v in ys)  # i = 0..3 in quick mode
    # paper 01, Table 2: on a NIB model GxI, DeepLIFT and IG give the same MIA
    assert curves["gxi"] == curves["deeplift"] == curves["ig"]
    assert set(res["table5"]) == {"NIB", "+LB", "+BNB", "+LB+BNB"}
    assert 0.0 <= res["table4"]["accuracy_with_mask"] <= 100.0
    # pinned: the numbers this quick run gave before the restructure (and still gives)
    for key in ("table2 CIFAR-10, NIB VGG16", "table2 MNIST, NIB CNN", "table5", "table3"):
        assert res[key] == QUICK[key], key
    for key, value in QUICK["table4"].items():
        assert res["table4"][key] == pytest.approx(value, abs=1e-9), key
    for png in res["plots"].values():
        assert (out / png).is_file()
    # resumed: nothing recomputed, same numbers
    t0 = time.perf_counter()
    reproduce(out, limit=4, quick=True, data_dir=str(real_data_dir), progress=False,
              student_subset=200)
    assert json.loads((out / "results.json").read_text()) == res
    assert time.perf_counter() - t0 < first / 2


def test_cli_reproduce_errors(capsys):
    assert cli.main(["reproduce", "no-such-paper"]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    assert cli.main(["reproduce", "attribution-mask", "--option", "bogus=1"]) == 2
    assert "unknown --option bogus" in capsys.readouterr().err
    assert cli.main(["reproduce", "attribution-mask", "--limit", "0"]) == 2
    assert "--limit must be positive" in capsys.readouterr().err


def test_student_result_is_a_store_artefact_named_by_content(real_data_dir, tmp_path,
                                                             monkeypatch):
    """Table 4's accuracies are kept in the folder's store under a content key: the same
    settings reuse them, a changed setting (here the mask's iterations) trains anew."""
    from attrlab.experiments.reproduce import attribution_mask as am

    kw = dict(epochs=1, subset=16, device="cpu", data_dir=str(real_data_dir), progress=False,
              test_subset=16)
    first = am._student(tmp_path, "cifar10_nib_vgg16", 1, **kw)
    assert not (tmp_path / "student.json").exists()
    assert (tmp_path / "results.sqlite").is_file()
    calls = []
    real = am.masked_copy
    monkeypatch.setattr(am, "masked_copy", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    assert am._student(tmp_path, "cifar10_nib_vgg16", 1, **kw) == first
    assert calls == []
    other = am._student(tmp_path, "cifar10_nib_vgg16", 2, **kw)
    assert calls == [2, 2] and other["key"]["iterations"] == 2
    assert 0.0 <= other["accuracy_with_mask"] <= 100.0
