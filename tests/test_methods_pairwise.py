"""The pairwise and triplet methods (DPSH, HashNet, DTSH, IDHN): every loss against a plain reference written here
(numpy loops over pairs and triplets), the worked values of the reference doc's §10, their memory banks and
schedules, end to end on the synthetic set (single- and multi-label) with shc-eval and load_run reproducing the
run, option errors, and kill -9 + --resume ending byte-identical to an uninterrupted run."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from shc.cli.train import main
from shc.methods import MethodContext, create_method, resolve_method_options
from shc.methods.dtsh import draw_by_class, draw_by_labels
from shc.methods.pairwise import bank_likelihood, bank_likelihood_torch, draw_true, label_bitmaps, softplus
from shc.train import TrainConfig, run_pipeline

PAIRWISE = ("dtsh", "hashnet", "dpsh", "idhn")
TINY = dict(dataset="synthetic", data_options=dict(sizes=(8, 3, 8), image_size=16), bits=16, epochs=2,
            batch_size=16, test_map=2, eval_batch_size=64, threads=1, progress=False)


def context(bits=3, num_classes=2, train_size=2, multi_label=False, seed=0):
    return MethodContext(bits=bits, num_classes=num_classes, multi_label=multi_label, train_size=train_size,
                         seed=seed)


def sp(x):
    return np.log1p(np.exp(-abs(x))) + max(x, 0.0)


def sim(a, b):
    return float(np.dot(a, b) > 0)


def onehot(ids, c):
    return np.eye(c)[ids]


# ------------------------------------------------------------------------------------ §10's worked values
U2 = [[0.5, -1, 2], [1, 1, -0.5]]
U3 = [[1, .5, -1], [.8, 1, -.2], [-1, .3, 1]]
X_IDHN = [[2, -1, .5, 3], [1, 1, -2, .5]]
Y_IDHN = [[1, 1, 0], [0, 1, 0.]]


@pytest.mark.parametrize("method, options, u, labels, ctx, epoch, expected", [
    # DPSH's DH form with the memory = this batch (a bank of 2 rows holding it)
    ("dpsh", {"form": "dh"}, U2, [0, 1], dict(), 0, 0.3062071),
    ("hashnet", {"form": "dh"}, U2, [0, 1], dict(), 0, 1.2788008),           # β = 1
    ("hashnet", {"form": "dh"}, U2, [0, 1], dict(), 20, 1.2474192),          # β = √2
    ("dtsh", {"form": "dh", "margin": 1.0}, U3, [0, 0, 1], dict(train_size=3), 0, 0.2959047),
    ("dtsh", {"form": "dh", "margin": 5.0}, U3, [0, 0, 1], dict(train_size=3), 0, 2.2057281),
    ("idhn", {}, X_IDHN, Y_IDHN, dict(bits=4, num_classes=3, multi_label=True), 0, 0.1551199),
    ("idhn", {"form": "dh"}, X_IDHN, Y_IDHN, dict(bits=4, num_classes=3, multi_label=True), 0, 0.3931315),
])
def test_worked_values_of_the_reference(method, options, u, labels, ctx, epoch, expected):
    m = create_method(method, context(**ctx), options)
    m.start_epoch(None, None, epoch, 2)
    u, labels = torch.tensor(u), torch.tensor(labels)
    assert m.loss(u, labels, torch.arange(len(u))).item() == pytest.approx(expected, abs=1e-5)


def test_dtsh_dh_parts_and_margin_scales():
    m = create_method("dtsh", context(train_size=3), {"form": "dh", "margin": 1.0, "lambd": 0.0})
    assert m.loss(torch.tensor(U3), torch.tensor([0, 0, 1]), torch.arange(3)).item() == pytest.approx(0.1381269,
                                                                                                       abs=1e-6)
    for bits in (16, 32, 64):  # the official margin is q/2
        assert create_method("dtsh", context(bits=bits)).margin == bits / 2


def test_hashnet_continuation_schedules():
    paper = create_method("hashnet", context(bits=32))
    assert paper.alpha == pytest.approx(10 / 32)
    for t, beta in ((0, 1), (199, 1), (200, 2 ** 0.5), (2000, 11 ** 0.5), (10_000, 51 ** 0.5)):
        paper.steps.fill_(t)
        assert paper.beta() == pytest.approx(beta)
    dh = create_method("hashnet", context(bits=32), {"form": "dh"})
    assert dh.alpha == pytest.approx(0.1)
    for epoch, beta in ((0, 1), (19, 1), (20, 1.41421), (40, 1.73205), (60, 2), (80, 2.23607)):
        dh.start_epoch(None, None, epoch, 2)
        assert dh.beta() == pytest.approx(beta, abs=1e-5)
    # the iteration count advances with every step and is state
    paper.steps.fill_(0)
    for _ in range(3):
        paper.loss(torch.randn(4, 32), torch.tensor([0, 0, 1, 1]), torch.arange(4))
    assert paper.state_dict()["steps"] == 3


def test_presets_select_a_reference_and_stay_overridable():
    assert resolve_method_options("hashnet", {"form": "dh"})["alpha"] == 0.1
    assert resolve_method_options("hashnet", {"form": "dh", "alpha": 0.2})["alpha"] == 0.2
    assert resolve_method_options("dpsh", {})["eta"] == 10.0 and resolve_method_options("dpsh", {"form": "dh"})[
        "eta"] == 0.1
    with pytest.raises(ValueError, match="form must be one of official, dh"):
        resolve_method_options("dpsh", {"form": "paper"})


# ------------------------------------------------------------------------------------ plain references
def dpsh_reference(batches, n, c, bits, eta, form):
    """Loss of each batch in turn: a Python bank, Python loops over (batch row, bank row)."""
    bank_u, bank_y, losses = np.zeros((n, bits)), np.zeros((n, c)), []
    for u, y, idx in batches:
        for row, i in enumerate(idx):
            bank_u[i], bank_y[i] = u[row], y[row]
        lik = quant = 0.0
        for row in range(len(u)):
            for j in range(n):
                theta = 0.5 * np.dot(u[row], bank_u[j])
                lik += sp(theta) - sim(y[row], bank_y[j]) * theta
            quant += np.sum((u[row] - np.sign(u[row])) ** 2)
        if form == "official":
            losses.append((lik + eta * quant) / (n * len(u)))
        else:
            losses.append(lik / (n * len(u)) + eta * quant / u.size)
    return losses


@pytest.mark.parametrize("form", ["official", "dh"])
@pytest.mark.parametrize("multi_label", [False, True])
def test_dpsh_against_reference(form, multi_label):
    rng = np.random.default_rng(1)
    n, c, bits = 9, 4, 6
    m = create_method("dpsh", context(bits=bits, num_classes=c, train_size=n, multi_label=multi_label),
                      {"form": form, "eta": 3.0})
    batches, got = [], []
    for idx in ([0, 4, 7], [1, 4, 8, 2]):  # the second batch revisits row 4
        u = rng.normal(size=(len(idx), bits)) * 3
        y = (rng.random((len(idx), c)) < 0.4).astype(float) if multi_label else onehot(rng.integers(0, c, len(idx)), c)
        batches.append((u, y, idx))
        labels = torch.tensor(y, dtype=torch.float32) if multi_label else torch.tensor(y.argmax(1))
        got.append(m.loss(torch.tensor(u, dtype=torch.float32), labels, torch.tensor(idx)).item())
    np.testing.assert_allclose(got, dpsh_reference(batches, n, c, bits, 3.0, form), rtol=1e-5)
    assert m.bank.filled.sum() == 6 and torch.equal(m.bank.filled, torch.isin(torch.arange(n), torch.tensor(
        [0, 1, 2, 4, 7, 8])))


def test_dpsh_gradient_only_through_the_batch():
    m = create_method("dpsh", context(bits=4, num_classes=3, train_size=5))
    u = torch.randn(3, 4, dtype=torch.float32, requires_grad=True)
    labels = torch.tensor([0, 1, 0])
    m.loss(u, labels, torch.tensor([0, 1, 2])).backward()
    # the reference gradient: Σ_j (σ(Θ_ij) − s_ij) ½U_j + 2η(u_i − b_i), over N·B
    bank = m.bank.codes.numpy().astype(np.float64)
    uu, expected = u.detach().numpy().astype(np.float64), np.zeros((3, 4))
    y = onehot(labels.numpy(), 3)
    bank_y = m.bank.labels.numpy()
    for i in range(3):
        for j in range(5):
            theta = 0.5 * uu[i] @ bank[j]
            expected[i] += (1 / (1 + np.exp(-theta)) - sim(y[i], bank_y[j])) * 0.5 * bank[j]
        expected[i] += 2 * 10.0 * (uu[i] - np.sign(uu[i]))
    np.testing.assert_allclose(u.grad.numpy(), expected / 15, rtol=1e-4, atol=1e-7)


def hashnet_reference(u, y, alpha, beta, self_pairs):
    h = np.tanh(beta * u)
    pos, neg = [], []
    for i in range(len(u)):
        for j in range(len(u)):
            if i == j and not self_pairs:
                continue
            ip = alpha * np.dot(h[i], h[j])
            s = sim(y[i], y[j])
            (pos if s else neg).append(sp(ip) - s * ip)
    return sum(np.mean(side) for side in (pos, neg) if side)


@pytest.mark.parametrize("options", [{}, {"form": "dh"}, {"self_pairs": True}])
def test_hashnet_against_reference(options):
    rng = np.random.default_rng(2)
    m = create_method("hashnet", context(bits=8, num_classes=3, multi_label=True), options)
    m.steps.fill_(450)  # β = sqrt(1 + 0.005·400) in the paper form
    m.start_epoch(None, None, 45, 5)  # β = sqrt(3) in the DH form
    u = rng.normal(size=(5, 8))
    y = (rng.random((5, 3)) < 0.5).astype(float)
    got = m.loss(torch.tensor(u, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), torch.arange(5))
    alpha, beta = (0.1, 3 ** 0.5) if options.get("form") == "dh" else (10 / 8, 3 ** 0.5)
    assert got.item() == pytest.approx(hashnet_reference(u, y, alpha, beta, m.opts["self_pairs"]), rel=1e-5)


def test_hashnet_single_class_batch_has_no_negatives():
    m = create_method("hashnet", context(bits=8))
    u = torch.randn(4, 8)
    loss = m.loss(u, torch.zeros(4, dtype=torch.int64), torch.arange(4))
    assert loss.item() == pytest.approx(hashnet_reference(u.numpy(), onehot([0] * 4, 2), 10 / 8, 1, False),
                                        rel=1e-5)


def dtsh_dh_reference(u, y, margin, lambd, clamp):
    ip = u @ u.T
    rows = []
    for r in range(len(u)):
        terms = []
        for p in range(len(u)):
            for n in range(len(u)):
                if sim(y[r], y[p]) and not sim(y[r], y[n]):
                    t = ip[r, p] - ip[r, n] - margin
                    terms.append(sp(-(np.clip(t, -100, 50) if clamp else t)))
        if terms:
            rows.append(np.mean(terms))
    return (np.mean(rows) if rows else 0.0) + lambd * np.mean((u - np.sign(u)) ** 2)


@pytest.mark.parametrize("clamp", [False, True])
def test_dtsh_dh_against_reference(clamp):
    rng = np.random.default_rng(3)
    u = rng.normal(size=(6, 8)) * 6  # large enough that the clamp bites
    y = (rng.random((6, 3)) < 0.4).astype(float)
    m = create_method("dtsh", context(bits=8, num_classes=3, multi_label=True, train_size=6),
                      {"form": "dh", "clamp": clamp})
    got = m.loss(torch.tensor(u, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), torch.arange(6))
    assert got.item() == pytest.approx(dtsh_dh_reference(u, y, 5.0, 1.0, clamp), rel=1e-5)


def test_dtsh_official_samples_from_the_bank_outside_the_batch():
    """One available positive and one available negative per anchor: every draw is that pair, so the loss is
    the plain reference's; rows of the batch and unseen rows are never drawn."""
    bits, n = 4, 8
    m = create_method("dtsh", context(bits=bits, num_classes=3, train_size=n), {"positives": 3, "negatives": 2})
    rng = np.random.default_rng(4)
    first = rng.normal(size=(3, bits))
    m.loss(torch.tensor(first, dtype=torch.float32), torch.tensor([0, 1, 2]), torch.tensor([5, 6, 7]))
    u = rng.normal(size=(2, bits))
    got = m.loss(torch.tensor(u, dtype=torch.float32), torch.tensor([0, 1]), torch.tensor([0, 1]))
    # anchor 0 (class 0): positive row 5, negatives rows 6, 7 (both class ≠ 0) -> draws among {6, 7}
    # so compute the reference over the draws' possible values only when they are unique: make it so
    bank = first
    terms0 = [sp(-(0.5 * u[0] @ bank[0] - 0.5 * u[0] @ bank[k] - 2.0)) for k in (1, 2)]
    terms1 = [sp(-(0.5 * u[1] @ bank[1] - 0.5 * u[1] @ bank[k] - 2.0)) for k in (0, 2)]
    quant = np.mean((u - np.sign(u)) ** 2)
    lows = min(terms0) / 2 + min(terms1) / 2 + quant
    highs = max(terms0) / 2 + max(terms1) / 2 + quant
    assert lows - 1e-6 <= got.item() <= highs + 1e-6
    # with one negative class available the draw is forced: the exact value
    m2 = create_method("dtsh", context(bits=bits, num_classes=2, train_size=4), {"positives": 3, "negatives": 2})
    m2.loss(torch.tensor(first[:2], dtype=torch.float32), torch.tensor([0, 1]), torch.tensor([2, 3]))
    got2 = m2.loss(torch.tensor(u, dtype=torch.float32), torch.tensor([0, 1]), torch.tensor([0, 1]))
    exact = np.mean([sp(-(0.5 * u[0] @ first[0] - 0.5 * u[0] @ first[1] - 2.0)),
                     sp(-(0.5 * u[1] @ first[1] - 0.5 * u[1] @ first[0] - 2.0))]) + quant
    assert got2.item() == pytest.approx(exact, rel=1e-5)
    # an anchor without an available positive (its class only in the batch) takes no triplet
    m3 = create_method("dtsh", context(bits=bits, num_classes=2, train_size=4))
    only_quant = m3.loss(torch.tensor(u, dtype=torch.float32), torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert only_quant.item() == pytest.approx(quant, rel=1e-5)


@pytest.mark.parametrize("draw", [draw_by_class, draw_by_labels])
def test_dtsh_draws_are_uniform_over_the_available_rows_of_the_class(draw):
    """Both draws (by class, single-label only; by labels, any bank) against the sets written out here: every
    available row of the anchor's class as a positive, of another class as a negative, about equally often; never
    a batch row nor an unwritten one; an anchor without an available positive or negative takes none."""
    classes = np.array([3, 0, 1, 2, 0, 1, 1, 0, 2, 2, 0, 1, 2, 0, 1, 1, 0, 2, 0, 1])  # class 3: only row 0
    n, written = 24, len(classes)  # rows 20..23 never written
    m = create_method("dtsh", context(bits=4, num_classes=4, train_size=n))
    m.bank.write(torch.zeros(written, 4), torch.tensor(classes), torch.arange(written))
    batch = torch.tensor([0, 1, 2, 3, 5])  # anchors of class 3 (no other row), 0, 1, 2, 1
    available = torch.ones(n, dtype=torch.bool)
    available[batch] = False
    available[written:] = False
    draws = 20000
    anchors, j, k = draw(m.bank, torch.tensor(onehot(classes[batch], 4), dtype=torch.float32), available, draws, draws, torch.Generator().manual_seed(0))
    assert anchors.tolist() == [False, True, True, True, True]
    for row, drawn_pos, drawn_neg in zip(batch[anchors].tolist(), j.numpy(), k.numpy()):
        rows = np.flatnonzero(available.numpy())
        for drawn, expected in ((drawn_pos, rows[classes[rows] == classes[row]]),
                                (drawn_neg, rows[classes[rows] != classes[row]])):
            counts = np.bincount(drawn, minlength=n)
            assert np.flatnonzero(counts).tolist() == expected.tolist()
            p = 1 / len(expected)
            assert np.abs(counts[expected] - draws * p).max() < 6 * np.sqrt(draws * p * (1 - p))


def test_dtsh_draws_by_class_follow_the_generator():
    """The single-label draws written out: the available rows sorted by class (stable), a positive the
    ⌊r·count⌋-th row of the anchor's class, a negative the ⌊r·(A − count)⌋-th row of the others in that order; the
    positives' numbers first."""
    classes = np.array([1, 0, 2, 1, 0, 0, 2, 1])
    m = create_method("dtsh", context(bits=4, num_classes=3, train_size=len(classes)))
    m.bank.write(torch.zeros(len(classes), 4), torch.tensor(classes), torch.arange(len(classes)))
    available = torch.tensor([1, 1, 1, 0, 1, 1, 1, 1], dtype=torch.bool)
    anchors, j, k = draw_by_class(m.bank, torch.eye(3)[:2], available, 5, 4, torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(2)
    r_pos, r_neg = (torch.rand(2, n, generator=gen, dtype=torch.float64).numpy() for n in (5, 4))
    rows = np.flatnonzero(available.numpy())
    rows = rows[np.argsort(classes[rows], kind="stable")]  # [1 4 5 | 0 7 | 2 6]
    for a, c in enumerate([0, 1]):
        same, other = rows[classes[rows] == c], rows[classes[rows] != c]
        assert j[a].tolist() == same[(r_pos[a] * len(same)).astype(int)].tolist()
        assert k[a].tolist() == other[(r_neg[a] * len(other)).astype(int)].tolist()
    assert anchors.all()


@pytest.mark.parametrize("multi_label", [False, True])
def test_dtsh_draws_are_reproducible_from_the_step_count(multi_label):
    """A method resumed from another's state draws what an uninterrupted one would: the single-label bank's class
    ids are rebuilt from the checkpointed labels (they are not a checkpoint entry)."""
    ctx = context(bits=8, num_classes=3, train_size=40, multi_label=multi_label)
    rng = np.random.default_rng(5)
    batches = [(torch.tensor(rng.normal(size=(8, 8)), dtype=torch.float32), torch.tensor(rng.integers(0, 3, 8)),
                torch.tensor(rng.permutation(40)[:8])) for _ in range(6)]
    if multi_label:
        batches = [(u, torch.tensor(onehot(y, 3) + onehot((y + 1) % 3, 3) * rng.integers(0, 2, (8, 1)), dtype=torch.float32), i)
                   for u, y, i in batches]
    whole = create_method("dtsh", ctx, {"positives": 4, "negatives": 4})
    losses = [whole.loss(*b).item() for b in batches]
    first = create_method("dtsh", ctx, {"positives": 4, "negatives": 4})
    for b in batches[:3]:
        first.loss(*b)
    state = first.state_dict()
    assert "bank_classes" not in state and not any("class" in key for key in state)
    resumed = create_method("dtsh", ctx, {"positives": 4, "negatives": 4})
    resumed.load_state_dict(state)
    if not multi_label:
        assert torch.equal(resumed.bank.classes, first.bank.classes)
        assert resumed.bank.classes.tolist() == [int(first.bank.labels[i].argmax()) if first.bank.filled[i] else 3
                                                 for i in range(40)]
    assert [resumed.loss(*b).item() for b in batches[3:]] == losses[3:]


def idhn_reference(x, y, bits, beta, gamma, alpha, form, bank=None):
    d = x / (1 + np.abs(x))
    others, other_y = (d, y) if bank is None else bank
    total = []
    for i in range(len(d)):
        for j in range(len(others)):
            na, nb = np.linalg.norm(y[i]), np.linalg.norm(other_y[j])
            w = y[i] @ other_y[j] / (na * nb) if na * nb > 0 else 0.0
            ip = d[i] @ others[j]
            theta = beta * ip / bits if form == "official" else beta * ip
            if w > 0.99 or w < 0.01:
                total.append(sp(theta) - w * theta)
            elif form == "official":
                total.append(gamma * bits * ((ip + bits) / (2 * bits) - w) ** 2)
            else:
                total.append(gamma * (theta + bits - 2 * w * bits) ** 2)
    return np.mean(total) + alpha * np.mean(np.abs(np.abs(d) - 1))


@pytest.mark.parametrize("form", ["official", "dh"])
def test_idhn_against_reference(form):
    rng = np.random.default_rng(6)
    bits, c, n = 8, 4, 7
    x = rng.normal(size=(5, bits)) * 2
    y = (rng.random((5, c)) < 0.5).astype(float)
    y[2] = 0  # an image without labels: w = 0, no NaN
    idx = [0, 2, 3, 5, 6]
    m = create_method("idhn", context(bits=bits, num_classes=c, train_size=n, multi_label=True), {"form": form})
    got = m.loss(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), torch.tensor(idx))
    bank = None
    if form == "dh":
        bank_d, bank_y = np.zeros((n, bits)), np.zeros((n, c))
        bank_d[idx], bank_y[idx] = x / (1 + np.abs(x)), y
        bank = (bank_d, bank_y)
    expected = idhn_reference(x, y, bits, m.opts["beta"], 0.1, 0.1, form, bank)
    assert np.isfinite(got.item()) and got.item() == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------------------------ numerics
def test_softplus_gradcheck_and_range():
    x = torch.tensor([-1e4, -30.0, -1.0, 0.0, 0.5, 30.0, 1e4], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(softplus, (x[1:-1].detach().clone().requires_grad_(),))
    np.testing.assert_allclose(softplus(x).detach().numpy(), [sp(v) for v in x.detach().numpy()], rtol=1e-12,
                               atol=1e-15)  # log(1 + e) for log1p(e): an absolute error under ε


@pytest.mark.parametrize("one_label", [True, False])
def test_bank_likelihood_in_chunks_against_reference_and_gradcheck(one_label):
    rng = np.random.default_rng(7)
    n, c, bits = 11, 4, 5
    ids = rng.integers(0, c, n)
    bank_y = onehot(ids, c) if one_label else (rng.random((n, c)) < 0.4).astype(float)
    bank_y[3] = 0  # a row not written yet
    y = onehot(rng.integers(0, c, 3), c) if one_label else (rng.random((3, c)) < 0.4).astype(float)
    bank, u = rng.normal(size=(n, bits)) * 3, rng.normal(size=(3, bits)) * 3
    expected = sum(sp(0.5 * u[i] @ bank[j]) - sim(y[i], bank_y[j]) * 0.5 * u[i] @ bank[j]
                   for i in range(3) for j in range(n))
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    for chunk in (2, 4096):
        got = bank_likelihood_torch(t(u), t(bank), t(y), t(bank_y), one_label, chunk=chunk)
        assert got.item() == pytest.approx(expected, rel=1e-12)
    assert torch.autograd.gradcheck(lambda x: bank_likelihood_torch(x, t(bank), t(y), t(bank_y), one_label, chunk=3),
                                    (t(u).requires_grad_(),))


@pytest.mark.parametrize("multi_label", [False, True])
def test_bank_similar_and_dissimilar_rows(multi_label):
    rng = np.random.default_rng(9)
    n, c = 10, 4
    bank = create_method("dpsh", context(bits=3, num_classes=c, train_size=n, multi_label=multi_label)).bank
    written = [0, 2, 3, 5, 6, 9]
    y_bank = (rng.random((6, c)) < 0.5).astype(float) if multi_label else onehot(rng.integers(0, c, 6), c)
    bank.write(torch.zeros(6, 3), torch.tensor(y_bank, dtype=torch.float32) if multi_label
               else torch.tensor(y_bank.argmax(1)), torch.tensor(written))
    y = (rng.random((3, c)) < 0.5).astype(float) if multi_label else onehot(rng.integers(0, c, 3), c)
    labels = torch.tensor(y, dtype=torch.float32) if multi_label else torch.tensor(y.argmax(1))
    rows = torch.tensor([1, 1, 1, 0, 1, 1, 1, 1, 0, 1], dtype=torch.float32)
    full = np.zeros((n, c))
    full[written] = y_bank
    for use_rows in (None, rows):
        keep = (bank.filled.numpy() if use_rows is None else use_rows.numpy() * bank.filled.numpy())
        same = np.array([[sim(y[i], full[j]) * keep[j] for j in range(n)] for i in range(3)])
        np.testing.assert_array_equal(bank.similar(labels, use_rows).numpy(), same)
        np.testing.assert_array_equal(bank.similar(labels, use_rows, same=False).numpy(), keep - same)


def test_draw_true_is_the_kth_true_entry():
    rng = np.random.default_rng(8)
    mask = torch.from_numpy(rng.random((5, 23)) < 0.3).float()
    mask[2] = 0
    mask[3] = 0
    mask[3, 22] = 1  # a single one, in the ragged last block
    drawn = draw_true(mask, 40, torch.Generator().manual_seed(3), block=4)
    r = torch.rand(5, 40, generator=torch.Generator().manual_seed(3)).numpy().astype(np.float64)
    for row in (0, 1, 3, 4):
        trues = np.flatnonzero(mask[row].numpy())
        np.testing.assert_array_equal(drawn[row].numpy(), trues[(r[row] * len(trues)).astype(int)])
    # uniform: every True entry of a row comes up about equally often
    counts = np.bincount(draw_true(mask[:1], 20000, torch.Generator().manual_seed(4), block=4)[0].numpy(),
                         minlength=23)
    trues = np.flatnonzero(mask[0].numpy())
    assert counts[trues].min() > 0.8 * 20000 / len(trues) and counts.sum() == counts[trues].sum()


@pytest.mark.parametrize("method", PAIRWISE)
@pytest.mark.parametrize("form", ["default", "dh"])
def test_no_overflow_at_1024_bits_and_degenerate_batches(method, form):
    options = {} if form == "default" else {"form": "dh"}
    m = create_method(method, context(bits=1024, num_classes=3, train_size=8, multi_label=True), options)
    u = (torch.randn(4, 1024) * 50).requires_grad_()
    for labels in (torch.tensor([[1, 0, 0]] * 4, dtype=torch.float32),      # one class: no negatives
                   torch.tensor([[0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 1, 1]], dtype=torch.float32)):  # empty rows
        loss = m.loss(u, labels, torch.arange(4))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(u.grad).all()
        u.grad = None


# ------------------------------------------------------------------------------------ end to end
@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("method", PAIRWISE)
def test_end_to_end(tmp_path, check_run, method, multi_label):
    data = dict(TINY["data_options"], multi_label=multi_label)
    out = tmp_path / "run"
    metrics = run_pipeline(TrainConfig(**{**TINY, "data_options": data}, method=method, out=str(out)))
    assert metrics["method"] == method and metrics["method_options"] == resolve_method_options(method, {})
    assert not (out / "centers.npy").exists() and not (out / "similarity.npy").exists()
    check_run(out, metrics, data, images=3)


@pytest.mark.parametrize("argv, message", [
    (["--method", "dpsh", "--method-option", "margin=1"], "method dpsh takes no option 'margin'; it takes: eta, form"),
    (["--method", "hashnet", "--method-option", "beta_every=fast"], "option beta_every takes an integer"),
    (["--method", "dtsh", "--method-option", "clamp=1"], "option clamp takes True or False"),
    (["--method", "idhn", "--method-option", "form=paper"], "form must be one of official, dh"),
])
def test_option_errors_exit_2_before_work(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert main(["--dataset", "synthetic", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------------------------ two ranks
def _bank_worker(rank, world_size, store):
    from datetime import timedelta
    from shc.train.dist import Dist
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size,
                                         timeout=timedelta(seconds=60))
    dist = Dist.current()
    ragged = dist.all_gather(torch.arange(rank + 2, dtype=torch.float32)[:, None] + 10 * rank)  # 2 and 3 rows
    assert ragged[:, 0].tolist() == [0, 1, 10, 11, 12]
    ctx = MethodContext(bits=3, num_classes=2, multi_label=False, train_size=6, dist=dist)
    method = create_method("dpsh", ctx)
    method.loss(torch.full((3, 3), float(rank + 1)), torch.full((3,), rank), torch.tensor([rank, rank + 2, rank + 4]))
    # every rank holds both ranks' rows
    assert method.bank.filled.all()
    assert method.bank.codes[:, 0].tolist() == [1, 2, 1, 2, 1, 2]
    assert method.bank.labels.argmax(1).tolist() == [0, 1, 0, 1, 0, 1]
    torch.distributed.destroy_process_group()


def test_banks_hold_every_ranks_rows(tmp_path):
    torch.multiprocessing.spawn(_bank_worker, args=(2, str(tmp_path / "store")), nprocs=2, join=True)


# ------------------------------------------------------------------------------------ kill -9, then --resume
def test_kill_then_resume_is_byte_identical(tmp_path):
    """A DPSH run SIGKILLed once its stage-3 checkpoint of epoch 1 or 2 exists, then --resume: the same codes
    as an uninterrupted run (the memory bank comes back from the checkpoint)."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def command(out, *extra):
        return [sys.executable, "-m", "shc.cli.train", "--dataset", "synthetic", "--data-option",
                "sizes=(24, 3, 8)", "--data-option", "image_size=16", "--method", "dpsh", "--bits", "16",
                "--epochs", "6", "--batch-size", "16", "--test_map", "6", "--threads", "1", "--no-progress",
                "--out", str(out), *extra]

    subprocess.run(command(tmp_path / "whole"), env=env, check=True, capture_output=True, cwd=tmp_path)
    proc = subprocess.Popen(command(tmp_path / "cut"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=tmp_path)
    killed_at = None
    for line in proc.stdout:
        if line.startswith("stage3 epoch ") and line.split()[2].split("/")[0] in ("1", "2"):
            proc.send_signal(signal.SIGKILL)
            killed_at = line.split()[2]
            break
    proc.wait()
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    state = torch.load(tmp_path / "cut" / "checkpoints" / "hashnet.pt", map_location="cpu", weights_only=False)
    assert 1 <= state["epoch"] < 6 and not (tmp_path / "cut" / "metrics.json").exists()
    resumed = subprocess.run(command(tmp_path / "cut", "--resume"), env=env, check=True, capture_output=True,
                             text=True, cwd=tmp_path)
    assert f"stage3 epoch {state['epoch'] + 1}/6" in resumed.stdout
    assert "stage3 epoch 1/6" not in resumed.stdout  # continued, not started over
    for name in ("query_codes", "db_codes"):
        whole = (tmp_path / "whole" / "codes" / f"{name}.npy").read_bytes()
        assert (tmp_path / "cut" / "codes" / f"{name}.npy").read_bytes() == whole
