"""The SST-2 LSTM classifier (paper 02's text model) and its training loop."""

import pytest
import torch

from attrlab import cli, methods
from attrlab.data import SST2, Vocab
from attrlab.experiments import train
from attrlab.models import LSTMClassifier, load_checkpoint


def tiny(**kw) -> LSTMClassifier:
    torch.manual_seed(0)
    return LSTMClassifier(vocab_size=12, embed_dim=5, hidden=7, num_layers=2, **kw).eval()


def test_padding_at_the_end_changes_nothing():
    model = tiny()
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    longer = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], 1)
    torch.testing.assert_close(model(ids), model(longer))
    # row 1 alone, unpadded, gives the same logits as inside the padded batch
    torch.testing.assert_close(model(ids[1:, :2]), model(ids)[1:])


def test_padding_gets_zero_attribution_at_the_embedding():
    model = tiny()
    ids = torch.tensor([[3, 4, 5, 0, 0]])
    layer_ig = methods.layer.get("layer_ig", model, "embedding", n_steps=8)
    attr = layer_ig.attribute(ids, target=1)
    assert attr.shape == (1, 5, 5)
    assert attr[0, 3:].abs().max() == 0 and attr[0, :3].abs().max() > 0


def test_bad_inputs_and_options_are_named():
    model = tiny()
    with pytest.raises(ValueError, match="token ids"):
        model(torch.rand(2, 4))
    with pytest.raises(ValueError, match="vocab_size"):
        LSTMClassifier(vocab_size=0)
    with pytest.raises(ValueError, match="dropout"):
        LSTMClassifier(vocab_size=5, dropout=1.0)


def corpus(n: int) -> tuple[SST2, SST2]:
    """A separable toy task: label 1 iff the sentence contains 'good'."""
    gen = torch.Generator().manual_seed(0)
    words = ["a", "film", "plot", "long", "the", "good", "bad"]
    samples = []
    for i in range(n):
        length = int(torch.randint(2, 6, (1,), generator=gen))
        toks = [words[int(j)] for j in torch.randint(0, 5, (length,), generator=gen)]
        toks.insert(int(torch.randint(0, length, (1,), generator=gen)), "good" if i % 2 else "bad")
        samples.append((i % 2, toks))
    vocab = Vocab.build(t for _, t in samples)
    return SST2(samples[: n * 3 // 4], vocab), SST2(samples[n * 3 // 4:], vocab)


RECIPE = train.Recipe(optimizer="adam", lr=1e-2, weight_decay=0.0, epochs=3, batch_size=16,
                      schedule="cosine", augment=False, extra={"clip_grad_norm": 5.0})


def test_fit_text_learns_writes_vocab_and_resumes_identically(tmp_path, monkeypatch):
    tr, te = corpus(160)

    def model():
        torch.manual_seed(0)
        return LSTMClassifier(len(tr.vocab), embed_dim=8, hidden=16, num_layers=2)

    out = tmp_path / "new" / "folder" / "full.pt"  # folders made as needed
    meta = train.fit_text(model(), tr, te, RECIPE, out, seed=0, progress=False)
    loaded, meta2 = load_checkpoint(out)
    assert meta2 == meta and meta["input_kind"] == "tokens" and meta["vocab"] == tr.vocab.itos
    assert meta["test_accuracy"] == train.text_accuracy(loaded, te) > 0.9
    assert Vocab.from_itos(meta["vocab"]).stoi == tr.vocab.stoi
    # interrupted after its first epoch's evaluation, then resumed: the same weights
    real = train.text_accuracy
    calls = {"n": 0}

    def crash_once(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train, "text_accuracy", crash_once)
    with pytest.raises(KeyboardInterrupt):
        train.fit_text(model(), tr, te, RECIPE, tmp_path / "r.pt", seed=0, progress=False)
    assert (tmp_path / "r.pt.partial").exists()
    monkeypatch.setattr(train, "text_accuracy", real)
    train.fit_text(model(), tr, te, RECIPE, tmp_path / "r.pt", seed=0, progress=False)
    resumed, _ = load_checkpoint(tmp_path / "r.pt")
    for (k, a), b in zip(loaded.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_vocab_from_itos_checks_its_head():
    with pytest.raises(ValueError, match="<pad>"):
        Vocab.from_itos(["a", "b"])


def test_cli_train_text(tmp_path, capsys, real_data_dir):
    rc = cli.main(["train", "--model", "lstm_classifier", "--model-arg", "hidden=8",
                   "--model-arg", "num_layers=1", "--model-arg", "embed_dim=4",
                   "--dataset", "sst2", "--preset", "sst2", "--epochs", "1", "--batch-size",
                   "256", "--data-dir", str(real_data_dir), "--out", str(tmp_path / "t.pt"),
                   "--no-progress"])
    assert rc == 0
    _, meta = load_checkpoint(tmp_path / "t.pt")
    assert meta["dataset"] == "sst2" and meta["command"].startswith("attrlab train")
    assert "dev accuracy" in capsys.readouterr().out
