"""The PRAM objective of one training step (Eq. 9, and Eq. 10 for n source languages), on first pieces.

Single-source is the case n = 1 of the same code. Pure: no model in here, only representations and logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pram.losses import (
    apc_loss,
    batch_class_means,
    downsample_non_entities,
    masked_mean,
    old_weight,
    update_center,
    update_prototypes,
)


@dataclass(frozen=True)
class Banks:
    """One prototype bank per source language (§3.5): running class prototypes, which exist, and how often updated."""

    prototypes: torch.Tensor  # (S, K, H)
    known: torch.Tensor  # (S, K) bool
    updates: torch.Tensor  # (S,) int64: steps on which the bank saw at least one token
    center: torch.Tensor | None = None  # (S, H): running mean of each source's representations (centered)

    def __post_init__(self):
        if self.center is None:  # a checkpoint from before proto_space: no center was kept
            object.__setattr__(self, "center", torch.zeros_like(self.prototypes[:, 0]))

    @classmethod
    def empty(cls, n_sources: int, num_classes: int, hidden: int, device="cpu") -> Banks:
        return cls(torch.zeros(n_sources, num_classes, hidden, device=device),
                   torch.zeros(n_sources, num_classes, dtype=torch.bool, device=device),
                   torch.zeros(n_sources, dtype=torch.long, device=device),
                   torch.zeros(n_sources, hidden, device=device))

    def updated(self, i: int, h: torch.Tensor, labels: torch.Tensor, lam: float) -> Banks:
        """A copy with bank i moved toward this batch's class means (Eq. 4-5), and its center toward the batch
        mean of every token; the other banks untouched. lam is the weight on the old values."""
        means, counts = batch_class_means(h.detach(), labels, self.prototypes.shape[1])
        present = counts > 0
        new_c, new_known = update_prototypes(self.prototypes[i], self.known[i], means, present, lam)
        prototypes, known, updates = self.prototypes.clone(), self.known.clone(), self.updates.clone()
        center = self.center.clone()
        center[i] = update_center(self.center[i], h.detach(), bool(self.updates[i] > 0), lam)
        prototypes[i], known[i] = new_c, new_known
        updates[i] += int(bool(present.any()))
        return Banks(prototypes, known, updates, center)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The banks as named tensors, for a checkpoint's trainer.safetensors."""
        return {"banks.prototypes": self.prototypes, "banks.known": self.known, "banks.updates": self.updates,
                "banks.center": self.center}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], device="cpu") -> Banks:
        center = tensors.get("banks.center")
        return cls(tensors["banks.prototypes"].to(device), tensors["banks.known"].to(device),
                   tensors["banks.updates"].to(device), None if center is None else center.to(device))

    def centers(self, i: int, centered: bool) -> torch.Tensor | None:
        """The center that q of bank i subtracts (proto_space centered), or None."""
        return self.center[i] if centered else None


@dataclass(frozen=True)
class Weights:
    """The knobs of Eq. 9/10 and Appendix A for one step (beta already scheduled)."""

    tau: float
    lam: float
    alpha: float
    beta: float
    gamma: float | None
    apc: str = "both"
    guidance: str = "both"
    lam_weights: str = "old"
    centered: bool = False


def _keep(labels: torch.Tensor, gamma: float | None, generator: torch.Generator | None) -> torch.Tensor:
    if gamma is None:
        return torch.ones_like(labels, dtype=torch.bool)
    return downsample_non_entities(labels, gamma, generator)


def pram_objective(
    sources: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    target: tuple[torch.Tensor, torch.Tensor] | None,
    banks: Banks,
    w: Weights,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float], Banks]:
    """Total loss, its terms, and the updated banks (see `objective_parts`)."""
    parts, terms, banks = objective_parts(sources, target, banks, w, generator)
    return sum(parts.values()), terms, banks


def objective_parts(
    sources: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    target: tuple[torch.Tensor, torch.Tensor] | None,
    banks: Banks,
    w: Weights,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, float], Banks]:
    """The three weighted terms of Eq. 9/10 as tensors (`sup`, `apc_source` = alpha * L_c^s,
    `apc_target` = beta * L_c^t; their sum is the loss), the terms as numbers, and the updated banks.

    sources: per source language i, first-piece (h (N_i, H), logits (N_i, K), labels (N_i,)); h is the
    representation of prototypes and q (the last layer, the mean of the last four, or the projection head's).
    target: first-piece (h (M, H), logits (M, K)) of the unlabelled target batch, or None.
    Order as in Algorithm 1: the banks are updated from this batch first, then q is computed with them.
    L_sup is the mean cross-entropy over the kept tokens of all sources together (Eq. 3);
    each L_c term is the mean JS divergence over its kept tokens (Eq. 8), summed over banks (Eq. 10).
    """
    keep_old = old_weight(w.lam, w.lam_weights)
    for i, (h, _, labels) in enumerate(sources):
        banks = banks.updated(i, h, labels, keep_old)

    ce_sum, n_kept = sources[0][1].sum() * 0.0, 0  # a tensor even when no token is kept
    src_terms, tgt_terms = [], []
    for i, (h, logits, labels) in enumerate(sources):
        keep = _keep(labels, w.gamma, generator)
        ce_sum = ce_sum + F.cross_entropy(logits[keep], labels[keep], reduction="sum")
        n_kept += int(keep.sum())
        if w.apc in ("both", "source"):
            per_token = apc_loss(h, logits.softmax(-1), banks.prototypes[i], banks.known[i], w.tau, w.guidance,
                                 banks.centers(i, w.centered))
            src_terms.append(masked_mean(per_token, keep))
    l_sup = ce_sum / max(1, n_kept)

    if target is not None and w.apc in ("both", "target") and w.beta > 0:
        h_t, logits_t = target
        p_t = logits_t.softmax(-1)
        # Appendix A: target tokens are down-sampled by their pseudo-labels, the classifier's argmax.
        keep_t = _keep(p_t.argmax(-1).detach(), w.gamma, generator)
        for i in range(len(sources)):
            per_token = apc_loss(h_t, p_t, banks.prototypes[i], banks.known[i], w.tau, w.guidance,
                                 banks.centers(i, w.centered))
            tgt_terms.append(masked_mean(per_token, keep_t))

    zero = l_sup * 0.0
    l_src = sum(src_terms, zero)
    l_tgt = sum(tgt_terms, zero)
    parts = {"sup": l_sup, "apc_source": w.alpha * l_src, "apc_target": w.beta * l_tgt}
    loss = l_sup + parts["apc_source"] + parts["apc_target"]
    terms = {"loss": loss.item(), "sup": l_sup.item(), "src_c": l_src.item(), "tgt_c": l_tgt.item(),
             "kept_source": n_kept}
    return parts, terms, banks
