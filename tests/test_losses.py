"""The losses of PRAM against numbers worked out by hand (or by a plain-Python reference written here)."""

import math

import pytest
import torch

from pram.losses import (
    apc_loss,
    batch_class_means,
    beta_weight,
    downsample_non_entities,
    js_divergence,
    old_weight,
    similarity_distribution,
    update_prototypes,
)
from pram.objective import Banks, Weights, pram_objective


def test_js_divergence_by_hand():
    p = torch.tensor([[0.5, 0.5], [0.2, 0.8], [1.0, 0.0]])
    q = torch.tensor([[1.0, 0.0], [0.2, 0.8], [0.0, 1.0]])
    # Row 0: m = (0.75, 0.25); KL(p||m) = .5 ln(.5/.75) + .5 ln(.5/.25) = 0.1438410; KL(q||m) = ln(1/.75) = 0.2876821
    expected_0 = 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25) + math.log(1 / 0.75))
    assert expected_0 == pytest.approx(0.2157616, abs=1e-6)
    js = js_divergence(p, q)
    assert js.shape == (3,)
    assert js[0].item() == pytest.approx(expected_0, abs=1e-6)
    assert js[1].item() == pytest.approx(0.0, abs=1e-7)  # identical distributions
    assert js[2].item() == pytest.approx(math.log(2), abs=1e-6)  # disjoint supports: the maximum, ln 2
    assert torch.allclose(js_divergence(q, p), js)  # symmetric


def test_similarity_distribution_divides_cosine_by_tau():
    h = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    q = similarity_distribution(h, prototypes, tau=0.5)
    # Token 0: cos = (1, 0) -> logits (2, 0) -> e^2 / (e^2 + 1) = 0.8807971
    assert q[0, 0].item() == pytest.approx(math.exp(2) / (math.exp(2) + 1), abs=1e-6)
    # Token 1: cos = (1/sqrt 2, 1/sqrt 2): equal similarity, uniform q
    assert q[1].tolist() == pytest.approx([0.5, 0.5], abs=1e-6)
    known = torch.tensor([True, False])
    assert similarity_distribution(h, prototypes, 0.5, known)[:, 1].tolist() == [0.0, 0.0]


def test_prototype_update_weights_the_old_prototype_by_lambda():
    old = torch.tensor([[1.0, 0.0], [5.0, 5.0], [7.0, 7.0]])
    known = torch.tensor([True, False, True])
    h = torch.tensor([[0.0, 1.0], [0.0, 3.0], [2.0, 4.0]])
    labels = torch.tensor([0, 0, 1])
    means, counts = batch_class_means(h, labels, 3)
    assert means.tolist() == [[0.0, 2.0], [2.0, 4.0], [0.0, 0.0]]
    assert counts.tolist() == [2, 1, 0]
    new, new_known = update_prototypes(old, known, means, counts > 0, lam=0.9)
    assert new[0].tolist() == pytest.approx([0.9, 0.2])  # 0.9 * (1, 0) + 0.1 * (0, 2)
    assert new[1].tolist() == [2.0, 4.0]  # first sight: the batch mean as it is
    assert new[2].tolist() == [7.0, 7.0]  # absent from the batch: unchanged
    assert new_known.tolist() == [True, True, True]
    assert old[0].tolist() == [1.0, 0.0]  # pure: the input is not modified


def test_downsampling_counts():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 10 + [1, 3])  # n_e = 2, n_o = 10 > 1.5 * 2
    keep = downsample_non_entities(labels, 1.5, g)
    assert int(keep.sum()) == 2 + 3  # every entity and int(1.5 * 2) = 3 O tokens
    assert keep[-2:].all()
    few = torch.tensor([0, 0, 0, 5, 6])  # n_o = 3 <= 1.5 * 2: all kept
    assert downsample_non_entities(few, 1.5, g).all()
    no_entity = torch.zeros(7, dtype=torch.long)  # Eq. 11 literally: n_o^ds = gamma * 0
    assert int(downsample_non_entities(no_entity, 2.0, g).sum()) == 0


def test_beta_schedule_zero_before_start_then_ramps():
    assert [beta_weight(s, 2.0, start=10, ramp=0) for s in (0, 9, 10, 50)] == [0, 0, 2.0, 2.0]
    assert beta_weight(9, 2.0, 10, 4) == 0.0
    assert [beta_weight(s, 2.0, 10, 4) for s in (10, 11, 12, 13, 14, 99)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]


def _js(p, q):
    m = [(a + b) / 2 for a, b in zip(p, q)]
    kl = lambda x: sum(a * math.log(a / c) for a, c in zip(x, m) if a > 0)  # noqa: E731
    return 0.5 * (kl(p) + kl(q))


def _softmax(xs):
    e = [math.exp(x) for x in xs]
    return [v / sum(e) for v in e]


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_eq10_total_by_hand_two_sources_and_target():
    """Two source banks, a target batch, no down-sampling: L_sup + a * sum_i L_c^si + b * sum_i L_c^(t,si)."""
    torch.manual_seed(0)
    K, H = 3, 4
    src = [(torch.randn(4, H), torch.randn(4, K), torch.tensor([0, 1, 2, 1])),
           (torch.randn(3, H), torch.randn(3, K), torch.tensor([2, 0, 1]))]
    tgt = (torch.randn(5, H), torch.randn(5, K))
    w = Weights(tau=0.2, lam=0.9, alpha=0.7, beta=1.3, gamma=None)
    loss, terms, banks = pram_objective(src, tgt, Banks.empty(2, K, H), w)

    # Reference in plain Python: each bank starts empty, so after this batch a prototype is its class mean.
    protos = []
    for h, _, y in src:
        protos.append([[sum(h[j, d].item() for j in range(len(y)) if y[j] == k) / int((y == k).sum())
                        for d in range(H)] for k in range(K)])
    ce, n = 0.0, 0
    l_src = 0.0
    for i, (h, logits, y) in enumerate(src):
        js = []
        for j in range(len(y)):
            p = _softmax(logits[j].tolist())
            ce -= math.log(p[y[j]])
            n += 1
            q = _softmax([_cos(h[j].tolist(), c) / 0.2 for c in protos[i]])
            js.append(_js(p, q))
        l_src += sum(js) / len(js)
    l_tgt = 0.0
    for i in range(2):
        js = [_js(_softmax(tgt[1][j].tolist()), _softmax([_cos(tgt[0][j].tolist(), c) / 0.2 for c in protos[i]]))
              for j in range(5)]
        l_tgt += sum(js) / 5
    expected = ce / n + 0.7 * l_src + 1.3 * l_tgt
    assert terms["sup"] == pytest.approx(ce / n, abs=1e-5)
    assert terms["src_c"] == pytest.approx(l_src, abs=1e-5)
    assert terms["tgt_c"] == pytest.approx(l_tgt, abs=1e-5)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert banks.updates.tolist() == [1, 1]


def test_updating_one_bank_leaves_the_others_untouched():
    banks = Banks.empty(3, 2, 2)
    banks = banks.updated(1, torch.tensor([[1.0, 2.0]]), torch.tensor([1]), lam=0.9)
    assert banks.prototypes[1, 1].tolist() == [1.0, 2.0]
    assert banks.known.tolist() == [[False, False], [False, True], [False, False]]
    assert banks.prototypes[0].abs().sum() == 0 and banks.prototypes[2].abs().sum() == 0
    assert banks.updates.tolist() == [0, 1, 0]


def test_one_source_bank_is_the_single_source_objective():
    """n = 1 of Eq. 10 is Eq. 9: one bank, one target term."""
    torch.manual_seed(1)
    src = (torch.randn(6, 4), torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]))
    tgt = (torch.randn(5, 4), torch.randn(5, 3))
    w = Weights(0.2, 0.9, 1.0, 1.0, None)
    _one, terms_one, _ = pram_objective([src], tgt, Banks.empty(1, 3, 4), w)
    # Two identical sources: each term doubles, L_sup (a mean over all source tokens) stays.
    _two, terms_two, _ = pram_objective([src, src], tgt, Banks.empty(2, 3, 4), w)
    assert terms_two["sup"] == pytest.approx(terms_one["sup"], abs=1e-6)
    assert terms_two["src_c"] == pytest.approx(2 * terms_one["src_c"], abs=1e-6)
    assert terms_two["tgt_c"] == pytest.approx(2 * terms_one["tgt_c"], abs=1e-6)


@pytest.mark.parametrize("apc,src_zero,tgt_zero", [("none", True, True), ("source", False, True),
                                                    ("target", True, False), ("both", False, False)])
def test_variants_drop_their_terms(apc, src_zero, tgt_zero):
    torch.manual_seed(2)
    src = [(torch.randn(6, 4), torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]))]
    tgt = (torch.randn(5, 4), torch.randn(5, 3))
    loss, terms, _ = pram_objective(src, tgt, Banks.empty(1, 3, 4), Weights(0.2, 0.9, 1.0, 1.0, None, apc))
    assert (terms["src_c"] == 0) == src_zero
    assert (terms["tgt_c"] == 0) == tgt_zero
    assert loss.item() == pytest.approx(terms["sup"] + terms["src_c"] + terms["tgt_c"], abs=1e-6)


@pytest.mark.parametrize("guidance,grad_h,grad_p", [("both", True, True), ("prediction", True, False),
                                                     ("similarity", False, True)])
def test_gradient_variants_stop_the_path_they_name(guidance, grad_h, grad_p):
    """PG: no gradient through the prediction path; SG: none through the similarity path; only there."""
    torch.manual_seed(3)
    h = torch.randn(5, 4, requires_grad=True)
    logits = torch.randn(5, 3, requires_grad=True)
    prototypes, known = torch.randn(3, 4), torch.tensor([True, True, True])
    apc_loss(h, logits.softmax(-1), prototypes, known, 0.2, guidance).sum().backward()
    flows = lambda t: t.grad is not None and bool(t.grad.abs().sum() > 0)  # noqa: E731
    assert flows(h) == grad_h
    assert flows(logits) == grad_p


def test_a_class_without_prototype_is_left_out_of_both_distributions():
    h = torch.tensor([[1.0, 0.0]])
    probs = torch.tensor([[0.5, 0.25, 0.25]])
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    known = torch.tensor([True, True, False])
    js = apc_loss(h, probs, prototypes, known, tau=1.0)
    p = [0.5 / 0.75, 0.25 / 0.75, 0.0]  # p renormalised over the known classes
    q = _softmax([1.0, 0.0]) + [0.0]
    assert js.item() == pytest.approx(_js(p, q), abs=1e-6)
    assert apc_loss(h, probs, prototypes, torch.tensor([True, False, False]), 1.0).item() == 0.0


def test_a_target_batch_with_no_predicted_entity_contributes_nothing():
    """Eq. 11 literally: every target token predicted O -> no token kept -> the target term is exactly 0."""
    src = [(torch.randn(4, 4), torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))]
    logits_t = torch.tensor([[5.0, 0.0, 0.0]] * 6)  # argmax O everywhere
    tgt = (torch.randn(6, 4), logits_t)
    _, terms, _ = pram_objective(src, tgt, Banks.empty(1, 3, 4), Weights(0.2, 0.9, 1.0, 1.0, 1.5),
                                 torch.Generator().manual_seed(0))
    assert terms["tgt_c"] == 0.0


def test_centering_sharpens_q_on_an_anisotropic_encoder_by_the_worked_out_amount():
    # Every vector shares a large common component c = (10, 0, 0), as on an anisotropic encoder; the classes
    # differ by one unit along e2 or e3. The token is class 0's prototype.
    c = torch.tensor([10.0, 0.0, 0.0])
    prototypes = torch.stack([c + torch.tensor([0.0, 1.0, 0.0]), c + torch.tensor([0.0, 0.0, 1.0])])
    h = prototypes[:1]
    tau = 0.5
    # hidden: cos = 1 and 100/101; centered (c subtracted): cos = 1 and 0.
    def entropy_of(cosines):
        logits = [x / tau for x in cosines]
        z = sum(math.exp(v) for v in logits)
        q = [math.exp(v) / z for v in logits]
        return -sum(p * math.log(p) for p in q)
    hidden_expected, centered_expected = entropy_of([1.0, 100 / 101]), entropy_of([1.0, 0.0])
    assert centered_expected == pytest.approx(0.36533, abs=1e-5)  # by hand: 0.8808 ln(1/0.8808) + 0.1192 ln(1/0.1192)
    assert hidden_expected == pytest.approx(math.log(2) - 4.9e-5, abs=1e-5)  # nearly uniform
    def entropy(q):
        return float(-(q * q.log()).sum())
    hidden = similarity_distribution(h, prototypes, tau)
    centered = similarity_distribution(h, prototypes, tau, center=c)
    assert entropy(hidden) == pytest.approx(hidden_expected, abs=1e-6)
    assert entropy(centered) == pytest.approx(centered_expected, abs=1e-6)
    assert entropy(hidden) - entropy(centered) == pytest.approx(hidden_expected - centered_expected, abs=1e-6)


def test_the_bank_center_is_a_running_mean_of_every_source_token():
    banks = Banks.empty(1, 3, 2)
    first = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    banks = banks.updated(0, first, torch.tensor([0, 1]), lam=0.9)
    assert torch.allclose(banks.center[0], torch.tensor([2.0, 1.0]))  # the first batch sets it
    banks = banks.updated(0, torch.tensor([[12.0, 11.0]]), torch.tensor([2]), lam=0.9)
    assert torch.allclose(banks.center[0], torch.tensor([0.9 * 2 + 0.1 * 12, 0.9 * 1 + 0.1 * 11]))


def test_lam_weights_new_reads_eq5_literally():
    assert old_weight(0.9, "old") == 0.9
    assert old_weight(0.9, "new") == pytest.approx(0.1)
    banks = Banks.empty(1, 2, 1).updated(0, torch.tensor([[1.0]]), torch.tensor([0]), lam=0.9)
    w = Weights(0.2, 0.9, 1.0, 1.0, None, lam_weights="new")
    src = (torch.tensor([[3.0]]), torch.zeros(1, 2), torch.tensor([0]))
    _, _, after = pram_objective([src], None, banks, w)
    assert float(after.prototypes[0, 0, 0]) == pytest.approx(0.1 * 1.0 + 0.9 * 3.0)  # lam on the new mean


def test_alignment_is_the_cosine_of_prototype_and_target_class_mean_worked_by_hand():
    """Labels O, B-PER, B-LOC. Bank 0 knows every class, bank 1 only PER. Target dev means: PER (1, 1), LOC
    (0, 2); O has no token and is never scored anyway. Hidden space: PER cos((1, 0), (1, 1)) = 1/sqrt 2 in bank
    0 and cos((0, 1), (1, 1)) = 1/sqrt 2 in bank 1; LOC cos((1, 1), (0, 2)) = 1/sqrt 2 in bank 0 alone.
    Centered, bank 0 on (0, -1) and bank 1 on (1, 0): PER cos((1, 1), (1, 2)) = 3/sqrt 10 and
    cos((-1, 1), (0, 1)) = 1/sqrt 2, LOC cos((1, 2), (0, 3)) = 2/sqrt 5."""
    from pram.config import TrainConfig
    from pram.metrics import alignment
    from pram.objective import Banks

    names = ["O", "B-PER", "B-LOC"]
    prototypes = torch.tensor([[[5.0, 5.0], [1.0, 0.0], [1.0, 1.0]],
                               [[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])
    known = torch.tensor([[True, True, True], [False, True, False]])
    banks = Banks(prototypes, known, torch.tensor([3, 3]), torch.tensor([[0.0, -1.0], [1.0, 0.0]]))
    means = torch.tensor([[9.0, 9.0], [1.0, 1.0], [0.0, 2.0]])
    counts = torch.tensor([0.0, 4.0, 2.0])
    hidden = alignment(banks, TrainConfig(proto_space="hidden"), means, counts, names)
    assert hidden == pytest.approx({"align_cos_target_B-PER": 2 ** -0.5, "align_cos_target_B-LOC": 2 ** -0.5,
                                    "align_cos_target": 2 ** -0.5})
    centered = alignment(banks, TrainConfig(proto_space="centered"), means, counts, names)
    per, loc = (3 / 10 ** 0.5 + 2 ** -0.5) / 2, 2 / 5 ** 0.5
    assert centered == pytest.approx({"align_cos_target_B-PER": per, "align_cos_target_B-LOC": loc,
                                      "align_cos_target": (per + loc) / 2})
