"""shc._engine.bank_likelihood (csrc/likelihood.cpp, DPSH's fused bank likelihood) against a float64 numpy
reference, on every ISA path this CPU can run, and shc.methods.pairwise.bank_likelihood's engine route against its
torch route. numpy only but for the last tests (marked by 'torch' in their names: the sanitizer run skips them)."""
import numpy as np
import pytest

from shc import _engine


def reference(h, bank, labels, bank_labels):
    """(Σ_ij softplus(Θ_ij) − s_ij Θ_ij, Σ_j (σ(Θ_ij) − s_ij) U_j) in float64, Θ = h·bankᵀ, s_ij = shared bit."""
    theta = h.astype(np.float64) @ bank.astype(np.float64).T
    s = ((labels[:, None, :] & bank_labels[None, :, :]) != 0).any(-1)
    total = (np.logaddexp(0.0, theta) - s * theta).sum()
    grad = (0.5 + 0.5 * np.tanh(0.5 * theta) - s) @ bank.astype(np.float64)  # σ without overflow
    return total, grad


def bitmaps(rng, rows, classes, per_row):
    """(rows, ⌈C/32⌉) uint32 bitmaps with up to ``per_row`` random labels each (some rows none)."""
    words = np.zeros((rows, (classes + 31) // 32), np.uint32)
    for i in range(rows):
        for c in rng.choice(classes, rng.integers(0, per_row + 1), replace=False):
            words[i, c // 32] |= np.uint32(1 << (c % 32))
    return words


# batch sizes around the 16-lane vectors, banks around the 8-row steps and 2048-row chunks, 1..3 label words
SHAPES = [(1, 1, 1, 1), (3, 5, 7, 10), (16, 8, 8, 10), (17, 13, 9, 33), (64, 32, 2049, 10), (33, 64, 301, 80)]


@pytest.mark.parametrize("b, q, n, classes", SHAPES)
def test_every_isa_path_matches_the_reference(b, q, n, classes, restore_isa):
    rng = np.random.default_rng(b * 1000 + n)
    h = (rng.normal(size=(b, q)) * 2).astype(np.float32)
    bank = rng.normal(size=(n, q)).astype(np.float32)
    labels, bank_labels = bitmaps(rng, b, classes, 2), bitmaps(rng, n, classes, 2)
    bank[n // 2:] *= 0  # rows not written yet: zero codes and no labels
    bank_labels[n // 2:] = 0
    total, grad = reference(h, bank, labels, bank_labels)
    for isa in _engine.runnable_isas():
        _engine.set_isa(isa)
        got_total, got_grad = _engine.bank_likelihood(h, bank, labels, bank_labels, 1)
        assert got_total == pytest.approx(total, rel=1e-6), isa
        np.testing.assert_allclose(got_grad, grad, rtol=0, atol=2e-6 * np.abs(grad).max() + 1e-6, err_msg=isa)


def test_extreme_values_neither_overflow_nor_lose_the_tails(restore_isa):
    """|Θ| up to 1e8 (softplus(Θ) = Θ exactly, σ saturates) and tiny Θ (softplus = log 2 + Θ/2)."""
    h = np.array([[1e4, -1e4], [1e-4, 0.0], [30.0, 0.0]], np.float32)
    bank = np.array([[1e4, 0.0], [1.0, 0.0], [-1.0, 0.0]], np.float32)
    labels = np.array([[1], [2], [1]], np.uint32)
    bank_labels = np.array([[1], [2], [0]], np.uint32)
    total, grad = reference(h, bank, labels, bank_labels)
    for isa in _engine.runnable_isas():
        _engine.set_isa(isa)
        got_total, got_grad = _engine.bank_likelihood(h, bank, labels, bank_labels, 1)
        assert np.isfinite(got_total) and got_total == pytest.approx(total, rel=1e-6), isa
        np.testing.assert_allclose(got_grad, grad, rtol=1e-6, atol=1e-6, err_msg=isa)


def test_the_result_does_not_depend_on_the_thread_count():
    rng = np.random.default_rng(3)
    h, bank = rng.normal(size=(40, 16)).astype(np.float32), rng.normal(size=(20_000, 16)).astype(np.float32)
    labels, bank_labels = bitmaps(rng, 40, 10, 1), bitmaps(rng, 20_000, 10, 1)
    one = _engine.bank_likelihood(h, bank, labels, bank_labels, 1)
    for threads in (2, 3):
        other = _engine.bank_likelihood(h, bank, labels, bank_labels, threads)
        assert other[0] == one[0]
        np.testing.assert_array_equal(other[1], one[1])


def test_mismatched_shapes_are_refused():
    h, bank = np.zeros((2, 4), np.float32), np.zeros((5, 4), np.float32)
    labels, bank_labels = np.zeros((2, 1), np.uint32), np.zeros((5, 1), np.uint32)
    with pytest.raises(ValueError, match="same number of columns"):
        _engine.bank_likelihood(h, np.zeros((5, 3), np.float32), labels, bank_labels, 1)
    with pytest.raises(ValueError, match="bank_labels"):
        _engine.bank_likelihood(h, bank, labels, np.zeros((5, 2), np.uint32), 1)
    with pytest.raises(ValueError, match="2-D"):
        _engine.bank_likelihood(h[0], bank, labels, bank_labels, 1)


@pytest.mark.parametrize("multi_label", [False, True])
def test_torch_dpsh_loss_through_the_engine_equals_the_torch_route(multi_label):
    """The same DPSH loss and gradient from bank_likelihood's two routes: the engine's (float32 on the CPU) and
    bank_likelihood_torch on the same bank, in float64."""
    import torch

    from shc.methods import MethodContext, create_method
    from shc.methods.base import as_multi_hot
    from shc.methods.pairwise import bank_likelihood, bank_likelihood_torch, label_bitmaps

    torch.manual_seed(3)
    classes, n, bits = (80, 500, 16) if multi_label else (10, 500, 16)
    ctx = MethodContext(bits=bits, num_classes=classes, multi_label=multi_label, train_size=n, seed=0)
    bank = create_method("dpsh", ctx).bank
    rng = np.random.default_rng(5)
    rows = torch.from_numpy(rng.permutation(n)[:400])
    bank_y = (torch.rand(400, classes) < 0.05).float() if multi_label else torch.randint(0, classes, (400,))
    bank.write(torch.randn(400, bits) * 3, bank_y, rows)
    y = (torch.rand(24, classes) < 0.05).float() if multi_label else torch.randint(0, classes, (24,))
    u = (torch.randn(24, bits) * 2).requires_grad_()
    got = bank_likelihood(u, bank, as_multi_hot(y, classes))
    got.backward()
    u64 = u.detach().double().requires_grad_()
    want = bank_likelihood_torch(u64, bank.codes.double(), as_multi_hot(y, classes).double(), bank.labels.double(),
                                 not multi_label)
    want.backward()
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    # float32 sums of 400 terms: an absolute error in proportion to the largest gradient (as the kernel tests)
    torch.testing.assert_close(u.grad.double(), u64.grad, rtol=1e-5, atol=2e-6 * u64.grad.abs().max().item())
    # the bank's bitmaps are its labels packed, kept up to date by write() and rebuilt by load_state_dict
    torch.testing.assert_close(bank.bitmaps, label_bitmaps(bank.labels), rtol=0, atol=0)
    restored = create_method("dpsh", ctx).bank
    restored.load_state_dict(bank.state_dict())
    torch.testing.assert_close(restored.bitmaps, bank.bitmaps, rtol=0, atol=0)


def test_torch_label_bitmaps_pack_bit_c_of_word_c_over_32():
    import torch

    from shc.methods.pairwise import label_bitmaps

    y = torch.zeros(3, 70)
    y[0, [0, 31, 32, 69]] = 1
    y[2, 5] = 1
    words = label_bitmaps(y).numpy().view(np.uint32)
    assert words.shape == (3, 3)
    assert words[0].tolist() == [1 | (1 << 31), 1, 1 << 5]
    assert words[1].tolist() == [0, 0, 0] and words[2].tolist() == [1 << 5, 0, 0]
