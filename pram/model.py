"""The basic cross-lingual NER model (Eq. 1-2): a multilingual encoder and a linear token classifier.

This file holds only the model; the losses are in `losses.py` and the training loop in `train.py`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from pram.encoder import load_encoder


class TokenClassifier(nn.Module):
    """h = mPLM(x) (Eq. 1); p = softmax(W h + b) (Eq. 2). Returns the prototype representation and the logits.

    The classifier always reads the last layer. The representation of prototypes and q (Eq. 4-7) is the last
    layer too in the paper (proto_layers `last`); beyond it, `mean4` averages the last four layers (on an encoder
    of fewer layers, all of them and the embeddings), and a
    projection head (proto_dim outputs, L2-normalised, as ContProto does) maps it to a space of its own. The head
    is used by the APC terms only, so only they train it.
    """

    def __init__(self, encoder: PreTrainedModel, num_labels: int, dropout: float = 0.1,
                 proto_layers: str = "last", proto_dim: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        hidden = encoder.config.hidden_size
        self.classifier = nn.Linear(hidden, num_labels)
        self.proto_layers = proto_layers
        self.projection = None if proto_dim is None else nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, proto_dim))
        self.proto_size = hidden if proto_dim is None else proto_dim

    @classmethod
    def from_encoder(cls, name_or_path: str, num_labels: int, frozen_layers: int = 3,
                     freeze_embeddings: bool = True, proto_layers: str = "last",
                     proto_dim: int | None = None, dropout: float | None = None) -> TokenClassifier:
        """dropout: before the classifier; None: the encoder's hidden_dropout_prob."""
        encoder = load_encoder(name_or_path, add_pooling_layer=False)
        dropout = encoder.config.hidden_dropout_prob if dropout is None else dropout
        model = cls(encoder, num_labels, dropout=dropout, proto_layers=proto_layers, proto_dim=proto_dim)
        model.freeze(frozen_layers, freeze_embeddings)
        return model

    @classmethod
    def from_config(cls, name_or_path: str, num_labels: int, config) -> TokenClassifier:
        """The model a TrainConfig describes (its frozen layers and prototype representation)."""
        return cls.from_encoder(name_or_path, num_labels, config.frozen_layers, config.freeze_embeddings,
                                config.proto_layers, config.proto_dim if config.proto_space == "projection" else None,
                                config.head_dropout)

    def freeze(self, frozen_layers: int, freeze_embeddings: bool) -> None:
        """Freeze the embeddings and the bottom layers, as the paper does after Wu et al. (2020b)."""
        if freeze_embeddings:
            self.encoder.embeddings.requires_grad_(False)
        for layer in self.encoder.encoder.layer[:frozen_layers]:
            layer.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                           output_hidden_states=self.proto_layers == "mean4")
        h = out.last_hidden_state  # (B, L, H)
        logits = self.classifier(self.dropout(h))  # (B, L, K)
        z = torch.stack(out.hidden_states[-4:]).mean(dim=0) if self.proto_layers == "mean4" else h  # (B, L, H)
        if self.projection is not None:
            z = nn.functional.normalize(self.projection(z), dim=-1)  # (B, L, proto_dim)
        return z, logits

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the weights training changes: a checkpoint need not repeat the frozen encoder."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {n: t for n, t in self.state_dict().items() if n in names}
