"""Text classifiers: the LSTM sentiment model of paper 02 (InputIBA, section 4, IMDB there;
SST-2 here).

Inputs are token ids ``(N, T)`` padded with ``<pad>`` = 0 at the end (as
:meth:`attrlab.data.SST2.collate` makes them). The model packs each row to its own length,
so padding never reaches the LSTM and gets zero attribution from every gradient method.
Attribution happens at the embedding output (``model.embedding``: one vector per token, e.g.
``attrlab.methods.layer.get("layer_ig", model, "embedding")``) or at the last hidden state of
the top LSTM layer (``model.last_hidden``, an identity placed there so it can be addressed
as a layer).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

PAD_ID = 0


class LSTMClassifier(nn.Module):
    """Embedding -> ``num_layers``-layer LSTM -> linear on the top layer's last hidden state.

    The paper's IMDB model: embedding 100, hidden 256, 4 layers. ``dropout`` applies to the
    embeddings and between LSTM layers during training only.
    """

    def __init__(self, vocab_size: int, num_classes: int = 2, embed_dim: int = 100,
                 hidden: int = 256, num_layers: int = 4, dropout: float = 0.3) -> None:
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("num_classes", num_classes),
                        ("embed_dim", embed_dim), ("hidden", hidden),
                        ("num_layers", num_layers)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embed_dim, hidden, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.last_hidden = nn.Identity()
        self.fc = nn.Linear(hidden, num_classes)
        self.arch = {"name": "lstm_classifier", "vocab_size": vocab_size,
                     "num_classes": num_classes, "embed_dim": embed_dim, "hidden": hidden,
                     "num_layers": num_layers, "dropout": dropout}

    def forward(self, ids: Tensor) -> Tensor:
        """Logits ``(N, num_classes)`` of token ids ``(N, T)`` (0 = padding, at the end)."""
        if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"LSTMClassifier takes token ids (N, T) as an integer tensor; got "
                             f"{ids.dtype} of shape {tuple(ids.shape)}")
        lengths = (ids != PAD_ID).sum(1).clamp(min=1)
        emb = self.dropout(self.embedding(ids))
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.fc(self.last_hidden(h[-1]))


def lstm_classifier(vocab_size: int, num_classes: int = 2, embed_dim: int = 100,
                    hidden: int = 256, num_layers: int = 4, dropout: float = 0.3
                    ) -> LSTMClassifier:
    """The LSTM sentiment classifier (see :class:`LSTMClassifier`)."""
    return LSTMClassifier(vocab_size, num_classes, embed_dim, hidden, num_layers, dropout)
