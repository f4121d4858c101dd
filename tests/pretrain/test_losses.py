"""The three MGCA losses against hand-computed values, the reference's per-sample loops, and gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pretrain.losses import (
    clipped_weights,
    instance_alignment_loss,
    prototype_alignment_loss,
    sinkhorn_codes,
    token_alignment_loss,
)

E1, E2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# ---------------------------------------------------------------------------------------------
# ITA


def test_instance_alignment_hand_value() -> None:
    # S = identity / T; every row and column: CE = log(1 + e^{-1/T}); two directions summed.
    emb = torch.stack([E1, E2])
    assert instance_alignment_loss(emb, emb, temperature=1.0).item() == pytest.approx(2 * math.log(1 + math.exp(-1)), abs=1e-6)
    assert instance_alignment_loss(emb, emb, temperature=0.5).item() == pytest.approx(2 * math.log(1 + math.exp(-2)), abs=1e-6)


def test_instance_alignment_is_not_symmetric_in_its_directions() -> None:
    # img 0 matches txt 0 and txt 1 equally: the image->text CE of row 0 is log 2, the text->image ones differ.
    img = torch.stack([F.normalize(E1 + E2, dim=0), E2])
    txt = torch.stack([E1, E2])
    s = img @ txt.t()
    expected = F.cross_entropy(s, torch.arange(2)) + F.cross_entropy(s.t(), torch.arange(2))
    rows = (math.log(2) + math.log(1 + math.exp(-1))) / 2  # row 0: [0.707, 0.707]; row 1: [0, 1]
    a = 1 / math.sqrt(2)
    columns = (-a + math.log(math.exp(a) + 1) + (-1 + math.log(math.exp(a) + math.e))) / 2
    assert expected.item() == pytest.approx(rows + columns, abs=1e-6)
    assert instance_alignment_loss(img, txt, temperature=1.0).item() == pytest.approx(rows + columns, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# CTA


def test_clipped_weights_hand_values() -> None:
    attention = torch.arange(11, dtype=torch.float32)[None]  # 0..10: 10th percentile 1, 90th 9
    expected = torch.tensor([1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9], dtype=torch.float32) / 55
    assert torch.allclose(clipped_weights(attention), expected)
    valid = torch.ones(1, 11, dtype=torch.bool)
    valid[0, 10] = False  # 0..9 valid: percentiles 0.9 and 8.1, sum 0.9 + 36 + 8.1 = 45
    expected = torch.tensor([0.9, 1, 2, 3, 4, 5, 6, 7, 8, 8.1, 0]) / 45
    assert torch.allclose(clipped_weights(attention, valid), expected)


def _two_token_case(temperature: float) -> tuple[float, float]:
    """Words e1, e2 against patches e1, e2 with equal attention: (CE with normalised context,
    CE with raw context). s = softmax weight of the own patch; context (s, 1-s)."""
    s = sigmoid(1 / temperature)
    norm = math.sqrt(s * s + (1 - s) ** 2)
    normalised = math.log(1 + math.exp(-(2 * s - 1) / (norm * temperature)))
    raw = math.log(1 + math.exp(-(2 * s - 1) / temperature))
    return normalised, raw


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_token_alignment_hand_values(temperature: float) -> None:
    tokens = torch.stack([E1, E2])[None]  # B=1, two words / patches
    equal = torch.ones(1, 2)
    no_pad = torch.zeros(1, 2, dtype=torch.bool)
    normalised, raw = _two_token_case(temperature)
    # ResNet (no patch attention): both sides normalise the context; each side's two directions are equal.
    resnet = token_alignment_loss(tokens, tokens, equal, None, no_pad, temperature)
    assert resnet.item() == pytest.approx(2 * normalised, abs=1e-5)
    # ViT: the patch side keeps the raw attended vectors (defect B12, kept for parity).
    vit = token_alignment_loss(tokens, tokens, equal, equal, no_pad, temperature)
    assert vit.item() == pytest.approx(normalised + raw, abs=1e-5)


def test_padding_words_are_masked_out_of_the_patch_attention() -> None:
    torch.manual_seed(0)
    words = F.normalize(torch.randn(2, 5, 8), dim=-1)
    patches = F.normalize(torch.randn(2, 4, 8), dim=-1)
    pad = torch.tensor([[False, False, False, True, True], [False, False, False, False, True]])
    attention = torch.rand(2, 5)
    other = words.clone()
    other[pad] = F.normalize(torch.randn(int(pad.sum()), 8), dim=-1)
    # Padding changes only the word side's negatives; the patch side never sees padding words.
    patch_only = lambda w: token_alignment_loss(w, patches, attention, None, pad) - _word_side(w, patches, attention, pad)  # noqa: E731
    assert torch.allclose(patch_only(words), patch_only(other), atol=1e-5)


def _word_side(words, patches, attention, pad, temperature=0.1):
    """The word half of CTA, from the reference loop (below)."""
    return _reference_token_loss(words, patches, attention, None, pad, temperature, sides=("word",))


def _reference_token_loss(words, patches, word_attn, patch_attn, pad, temperature=0.1, sides=("word", "patch")):
    """A transcription of mgca_module.py L119-221: per-sample loops, torch.quantile on the
    non-padding words, rearranged cross-entropies."""
    batch = len(words)
    total = torch.zeros(())
    if "word" in sides:
        context = F.normalize(torch.softmax(torch.bmm(words, patches.transpose(1, 2)) / temperature, -1) @ patches, dim=-1)
        weights = []
        for i in range(batch):
            w = word_attn[i].clone()
            w[pad[i]] = 0
            keep = ~pad[i]
            w[keep] = w[keep].clip(torch.quantile(w[keep], 0.1), torch.quantile(w[keep], 0.9))
            weights.append(w)
        weights = torch.stack(weights)
        weights = weights / weights.sum(1, keepdim=True)
        sim = torch.bmm(words, context.transpose(1, 2)) / temperature
        n = sim.shape[1]
        targets = torch.arange(n).repeat(batch)
        l1 = (F.cross_entropy(sim.reshape(-1, n), targets, reduction="none") * weights.reshape(-1)).sum() / batch
        l2 = (F.cross_entropy(sim.transpose(1, 2).reshape(-1, n), targets, reduction="none") * weights.reshape(-1)).sum() / batch
        total = total + (l1 + l2) / 2
    if "patch" in sides:
        sim = torch.bmm(patches, words.transpose(1, 2))
        sim[pad.unsqueeze(1).repeat(1, patches.shape[1], 1)] = float("-inf")
        context = torch.bmm(torch.softmax(sim / temperature, -1), words)
        if patch_attn is None:
            context = F.normalize(context, dim=-1)
            weights = torch.ones(batch, patches.shape[1]) / patches.shape[1]
        else:
            weights = torch.stack([a.clip(torch.quantile(a, 0.1), torch.quantile(a, 0.9)) for a in patch_attn])
            weights = weights / weights.sum(1, keepdim=True)
        sim = torch.bmm(patches, context.transpose(1, 2)) / temperature
        n = sim.shape[1]
        targets = torch.arange(n).repeat(batch)
        l1 = (F.cross_entropy(sim.reshape(-1, n), targets, reduction="none") * weights.reshape(-1)).sum() / batch
        l2 = (F.cross_entropy(sim.transpose(1, 2).reshape(-1, n), targets, reduction="none") * weights.reshape(-1)).sum() / batch
        total = total + (l1 + l2) / 2
    return total


@pytest.mark.parametrize("vit", [False, True])
def test_token_alignment_matches_the_reference_loops(vit: bool) -> None:
    torch.manual_seed(1)
    words = F.normalize(torch.randn(3, 7, 16), dim=-1)
    patches = F.normalize(torch.randn(3, 9, 16), dim=-1)
    lengths = torch.tensor([7, 4, 5])
    pad = torch.arange(7)[None] >= lengths[:, None]
    word_attn = torch.rand(3, 7).masked_fill(pad, 0)
    patch_attn = torch.rand(3, 9) if vit else None
    ours = token_alignment_loss(words, patches, word_attn, patch_attn, pad)
    assert ours.item() == pytest.approx(_reference_token_loss(words, patches, word_attn, patch_attn, pad).item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# CPA


def test_prototype_alignment_hand_value() -> None:
    # Scores = identity: the codes are exp(I/eps) rows normalised, q = sigmoid(1/eps); the predicted
    # distributions are softmax(I/tau), p = sigmoid(1/tau). Loss = -(q log p + (1-q) log(1-p)).
    emb = torch.stack([E1, E2])
    eps, tau = 0.5, 0.25
    q, p = sigmoid(1 / eps), sigmoid(1 / tau)
    expected = -(q * math.log(p) + (1 - q) * math.log(1 - p))
    loss = prototype_alignment_loss(emb, emb, emb, epsilon=eps, sinkhorn_iterations=3, temperature=tau)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_prototype_gradient_keeps_its_radial_part() -> None:
    # The reference normalises the prototypes in place, outside autograd: the loss sees the weight
    # itself, so its gradient is not projected onto the sphere's tangent (as F.normalize's would be).
    img, txt = _leaf(4, 8), _leaf(4, 8)
    prototypes = F.normalize(torch.randn(10, 8, generator=torch.Generator().manual_seed(1)), dim=1).requires_grad_()
    prototype_alignment_loss(img, txt, prototypes).backward()
    radial = (prototypes.grad * prototypes.detach()).sum(dim=1)
    assert radial.abs().max() > 1e-3  # projected gradients would give 0 up to float32 rounding (~1e-7)
    scaled = (2 * prototypes.detach()).requires_grad_()
    assert prototype_alignment_loss(img, txt, scaled).item() != pytest.approx(prototype_alignment_loss(img, txt, prototypes).item())


def _reference_sinkhorn(q: torch.Tensor, iterations: int) -> torch.Tensor:
    """mgca_module.py L266-291 (u, r, c form) on Q of shape K x B."""
    q = q / q.sum()
    k, b = q.shape
    r, c = torch.ones(k) / k, torch.ones(b) / b
    for _ in range(iterations):
        u = q.sum(dim=1)
        q = q * (r / u).unsqueeze(1)
        q = q * (c / q.sum(dim=0)).unsqueeze(0)
    return (q / q.sum(dim=0, keepdim=True)).t()


def test_sinkhorn_matches_the_reference_form() -> None:
    torch.manual_seed(2)
    scores = F.normalize(torch.randn(6, 16), dim=1) @ F.normalize(torch.randn(10, 16), dim=1).t()
    codes = sinkhorn_codes(scores, epsilon=0.05, iterations=3)
    expected = _reference_sinkhorn(torch.exp(scores / 0.05).t().double(), 3).float()
    assert torch.allclose(codes, expected, atol=1e-6)
    assert torch.allclose(codes.sum(dim=1), torch.ones(6))


# ---------------------------------------------------------------------------------------------
# Gradients


def _leaf(*shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape), dim=-1).requires_grad_(True)


def test_gradients_reach_every_input_that_should_learn() -> None:
    torch.manual_seed(3)
    img, txt = _leaf(4, 8), _leaf(4, 8)
    instance_alignment_loss(img, txt).backward()
    assert img.grad.abs().sum() > 0 and txt.grad.abs().sum() > 0

    words, patches = _leaf(2, 6, 8), _leaf(2, 5, 8)
    word_attn, patch_attn = torch.rand(2, 6, requires_grad=True), torch.rand(2, 5, requires_grad=True)
    pad = torch.tensor([[False] * 4 + [True] * 2, [False] * 6])
    token_alignment_loss(words, patches, word_attn, patch_attn, pad).backward()
    assert words.grad.abs().sum() > 0 and patches.grad.abs().sum() > 0
    assert word_attn.grad is None and patch_attn.grad is None  # weights are detached, as the reference

    img, txt, prototypes = _leaf(4, 8), _leaf(4, 8), torch.randn(10, 8, requires_grad=True)
    prototype_alignment_loss(img, txt, prototypes).backward()
    assert img.grad.abs().sum() > 0 and txt.grad.abs().sum() > 0 and prototypes.grad.abs().sum() > 0
