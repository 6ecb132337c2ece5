"""The basic cross-lingual NER model (Eq. 1-2): a multilingual encoder and a linear token classifier.

This file holds only the model; the losses are in `losses.py` and the training loop in `train.py`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from pram.encoder import load_encoder


class TokenClassifier(nn.Module):
    """h = mPLM(x) (Eq. 1); p = softmax(W h + b) (Eq. 2). Returns h and the logits, not p."""

    def __init__(self, encoder: PreTrainedModel, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)

    @classmethod
    def from_encoder(cls, name_or_path: str, num_labels: int, frozen_layers: int = 3,
                     freeze_embeddings: bool = True) -> "TokenClassifier":
        encoder = load_encoder(name_or_path, add_pooling_layer=False)
        model = cls(encoder, num_labels, dropout=encoder.config.hidden_dropout_prob)
        model.freeze(frozen_layers, freeze_embeddings)
        return model

    def freeze(self, frozen_layers: int, freeze_embeddings: bool) -> None:
        """Freeze the embeddings and the bottom layers, as the paper does after Wu et al. (2020b)."""
        if freeze_embeddings:
            self.encoder.embeddings.requires_grad_(False)
        for layer in self.encoder.encoder.layer[:frozen_layers]:
            layer.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        logits = self.classifier(self.dropout(h))  # (B, L, K)
        return h, logits

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the weights training changes: a checkpoint need not repeat the frozen encoder."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {n: t for n, t in self.state_dict().items() if n in names}
