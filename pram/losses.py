"""The losses of PRAM (§3 and Appendix A of the paper), as small pure functions.

Shapes: N tokens, K classes, H hidden units, S source languages (prototype banks).
Every decision the paper leaves open is written where it is taken, and listed in the README.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence per row, natural log (Eq. 8). Classes on the last axis, no reduction.

    JS(q || p) = 1/2 KL(p || m) + 1/2 KL(q || m) with m = (p + q) / 2; symmetric, in [0, ln 2].
    Logs are taken of values clamped at the smallest normal float, so a probability of exactly zero gives
    0 * log 0 = 0 with a finite gradient (xlogy's gradient at 0 would be infinite, and NaN after the chain rule).
    """
    tiny = torch.finfo(p.dtype).tiny
    log_m = torch.log((0.5 * (p + q)).clamp_min(tiny))
    kl_pm = p * (torch.log(p.clamp_min(tiny)) - log_m)
    kl_qm = q * (torch.log(q.clamp_min(tiny)) - log_m)
    return 0.5 * (kl_pm + kl_qm).sum(dim=-1)


def similarity_distribution(
    h: torch.Tensor, prototypes: torch.Tensor, tau: float, known: torch.Tensor | None = None,
    center: torch.Tensor | None = None,
) -> torch.Tensor:
    """q: softmax over classes of cos(h, C_k) / tau (Eq. 6-7). h (N, H), prototypes (K, H) -> (N, K).

    The printed Eq. 7 puts tau outside the exponential, where it would cancel; we divide the cosine by
    tau inside it, as in SimCLR (Chen et al., 2020), which the paper cites for the temperature.
    `known` (K,) marks classes that have a prototype yet; the others get probability zero.
    `center` (H,) (proto_space `centered`, beyond the paper) is subtracted from tokens and prototypes alike
    before the cosine: on an anisotropic encoder every representation shares a large common direction, which
    makes all cosines close to each other and q close to uniform.
    """
    if center is not None:
        h, prototypes = h - center, prototypes - center
    cos = F.normalize(h, dim=-1) @ F.normalize(prototypes, dim=-1).T  # (N, K)
    logits = cos / tau
    if known is not None:
        logits = logits.masked_fill(~known, float("-inf"))
    return logits.softmax(dim=-1)


def batch_class_means(h: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean of the representations in this batch (Eq. 4 on a mini-batch).

    h (N, H), labels (N,) in [0, K) -> means (K, H) (zero where absent) and counts (K,).
    """
    onehot = F.one_hot(labels, num_classes).to(h.dtype)  # (N, K)
    counts = onehot.sum(dim=0)  # (K,)
    sums = onehot.T @ h  # (K, H)
    means = sums / counts.clamp(min=1).unsqueeze(-1)
    return means, counts


@torch.no_grad()
def update_prototypes(
    prototypes: torch.Tensor, known: torch.Tensor, batch_means: torch.Tensor, present: torch.Tensor, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Moving-average prototype update (Eq. 5). Returns new (prototypes, known); inputs are left untouched.

    Decisions where the paper is ambiguous:
    - lam weights the OLD prototype: C_k <- lam * C_k + (1 - lam) * mean_k(batch), as in Xie et al. (2018),
      whom the paper cites; with lam in [0.8, 0.99] the prototypes then change slowly, which is the point.
      (`lam_weights new`, the text of Eq. 5 read literally, calls this with 1 - lam: see `old_weight`.)
    - A class seen for the first time takes its batch mean as it is (no blend with a zero vector).
    - A class absent from the batch keeps its prototype unchanged.
    - Prototypes are running statistics, not parameters: no gradient flows into them (hence no_grad); the
      gradient of the APC term reaches the encoder through the token side of the cosine only.
    """
    blended = torch.where(known.unsqueeze(-1), lam * prototypes + (1 - lam) * batch_means, batch_means)
    new = torch.where(present.unsqueeze(-1), blended, prototypes)
    return new, known | present


def old_weight(lam: float, lam_weights: str = "old") -> float:
    """The weight Eq. 5 gives the old prototype: lam (lam_weights old, our default) or 1 - lam (new: the text of
    Eq. 5 read literally, lam on the new batch mean)."""
    if lam_weights not in ("old", "new"):
        raise ValueError(f"unknown lam_weights {lam_weights!r}")
    return lam if lam_weights == "old" else 1.0 - lam


@torch.no_grad()
def update_center(center: torch.Tensor, h: torch.Tensor, seen: bool, keep: float) -> torch.Tensor:
    """Running mean of the source representations (proto_space `centered`): center (H,), h (N, H) -> (H,).

    The same moving average as the prototypes (weight `keep` on the old value); the first batch sets it."""
    if h.shape[0] == 0:
        return center
    mean = h.mean(dim=0)
    return keep * center + (1 - keep) * mean if seen else mean


def downsample_non_entities(labels: torch.Tensor, gamma: float, generator: torch.Generator | None = None,
                            outside: int = 0) -> torch.Tensor:
    """Keep every entity token and at most gamma * n_e non-entity tokens (Appendix A, Eq. 11).

    labels (N,) -> bool mask (N,) of the tokens that enter L_sup and L_c.
    If n_o / n_e > gamma, a uniformly random gamma * n_e (rounded down) of the O tokens is kept; else all of them.
    A batch with no entity at all (n_e = 0) keeps NO token: Eq. 11 read literally (n_o / 0 > gamma, so
    n_o^ds = gamma * 0). On this machine that reading beat keeping every O token (German F1 44.1 against
    12.9 in the probe of science-notes.md), because an all-O target batch otherwise pulls the model to O.
    """
    is_o = labels == outside
    n_e = int((~is_o).sum())
    n_o = int(is_o.sum())
    keep = ~is_o
    if n_o <= gamma * n_e:
        return keep | is_o
    n_keep = int(gamma * n_e)
    o_positions = is_o.nonzero(as_tuple=True)[0]
    chosen = o_positions[torch.randperm(n_o, generator=generator, device="cpu")[:n_keep].to(labels.device)]
    keep = keep.clone()
    keep[chosen] = True
    return keep


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values over mask; exactly zero (with a gradient path) when nothing is selected."""
    if not bool(mask.any()):
        return values.sum() * 0.0
    return values[mask].mean()


def apc_loss(
    h: torch.Tensor,
    probs: torch.Tensor,
    prototypes: torch.Tensor,
    known: torch.Tensor,
    tau: float,
    guidance: str = "both",
    center: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token attribution-prediction consistency: JS(q || p) for tokens h (N, H), p (N, K) -> (N,).

    A class with no prototype yet is left out of both distributions: q is zero there by construction and
    p is renormalised over the known classes, so the term never pushes p away from a class only because
    its prototype has not been seen yet. With fewer than two known classes the term is zero.

    guidance (§4.6): "both" = APC; "prediction" = prediction-guided (PG: no gradient through the
    prediction path, p is a fixed target for q); "similarity" = similarity-guided (SG: no gradient
    through the similarity path, q is a fixed target for p).
    """
    if int(known.sum()) < 2:
        return h.sum(dim=-1) * 0.0
    q = similarity_distribution(h, prototypes[known], tau, center=center)  # (N, K_known)
    p = probs[:, known]
    p = p / p.sum(dim=-1, keepdim=True).clamp(min=1e-12)
    if guidance == "prediction":
        p = p.detach()
    elif guidance == "similarity":
        q = q.detach()
    elif guidance != "both":
        raise ValueError(f"unknown guidance {guidance!r}")
    return js_divergence(p, q)


def beta_weight(step: int, beta: float, start: int, ramp: int) -> float:
    """Weight of the target APC term at a training step (a schedule beyond the paper, see README).

    Zero before `start`; then rises linearly over `ramp` steps to `beta` (ramp 0 switches it on at once).
    """
    if step < start:
        return 0.0
    if ramp <= 0:
        return beta
    return beta * min(1.0, (step - start + 1) / ramp)
