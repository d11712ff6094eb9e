"""Fused Triton center loss vs the plain torch reference (and vs the public code's BCELoss form).

On a machine without CUDA the kernels run in Triton's CPU interpreter; TRITON_INTERPRET must be set
before the kernel module is imported (triton.jit reads it at decoration time).
"""
import os

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from shc.kernels.center_loss import fused_center_loss  # noqa: E402
from shc.losses import center_loss, center_loss_reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# one rounding of the fp32 result into the output dtype (fp16 gradients ~1/(Bq) are often subnormal: step 2^-24)
GRAD_RTOL = {torch.float32: 1e-5, torch.float16: 2 ** -10, torch.bfloat16: 2 ** -7}
GRAD_ATOL = {torch.float32: 0.0, torch.float16: 2 ** -24, torch.bfloat16: 0.0}


def make_case(B, q, multi_label, dtype, scale=3.0, n_classes=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = (torch.randn(B, q, generator=g) * scale).to(dtype).to(DEVICE)
    if multi_label:
        centers = torch.randint(0, 2, (B, q), generator=g).float() * 2 - 1
        labels = None
    else:
        centers = torch.randint(0, 2, (n_classes, q), generator=g).float() * 2 - 1
        labels = torch.randint(0, n_classes, (B,), generator=g)
        labels = labels.to(DEVICE)
    return u, centers.to(DEVICE), labels


def loss_and_grad(fn, u, centers, labels, lambd):
    u = u.detach().clone().requires_grad_()
    loss = fn(u, centers, labels, lambd)
    loss.backward()
    return loss.detach(), u.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("q", [12, 16, 32, 48, 64, 128, 300])
@pytest.mark.parametrize("B", [37, 301])
def test_triton_center_loss_matches_reference(B, q, multi_label, dtype):
    u, centers, labels = make_case(B, q, multi_label, dtype)
    loss, grad = loss_and_grad(fused_center_loss, u, centers, labels, 0.1)
    ref_loss, ref_grad = loss_and_grad(center_loss_reference, u, centers, labels, 0.1)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=0)
    scale = ref_grad.float().abs().max().item()
    torch.testing.assert_close(grad.float(), ref_grad.float(), rtol=GRAD_RTOL[dtype],
                               atol=max(1e-6 * scale, GRAD_ATOL[dtype]))


@pytest.mark.parametrize("lambd", [0.0, 1e-4, 10.0])
def test_triton_center_loss_lambda_and_saturation(lambd):
    """Wide logits (|u| up to ~40) and u == 0 exactly: the quantisation term and its sign(0)=0 gradient."""
    u, centers, labels = make_case(64, 32, False, torch.float32, scale=12.0)
    u[0, :4] = 0.0
    loss, grad = loss_and_grad(fused_center_loss, u, centers, labels, lambd)
    ref_loss, ref_grad = loss_and_grad(center_loss_reference, u, centers, labels, lambd)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6 * ref_grad.abs().max().item())


def public_bce_loss(u, centers, labels, lambd):
    """The public code's expression: BCELoss on (tanh u + 1)/2 (torch clamps log at -100)."""
    t = centers if labels is None else centers[labels]
    u = u.float()
    bce = F.binary_cross_entropy((u.tanh() + 1) / 2, (t.float() + 1) / 2)
    return bce + lambd * (u.tanh().abs() - 1).pow(2).mean()


@pytest.mark.parametrize("multi_label", [False, True])
def test_triton_center_loss_matches_public_bceloss_when_not_saturated(multi_label):
    u, centers, labels = make_case(129, 64, multi_label, torch.float32, scale=1.0)
    u = u.clamp(-3, 3)
    loss, grad = loss_and_grad(fused_center_loss, u, centers, labels, 1e-4)
    pub_loss, pub_grad = loss_and_grad(public_bce_loss, u, centers, labels, 1e-4)
    torch.testing.assert_close(loss, pub_loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(grad, pub_grad, rtol=1e-3, atol=1e-4 * pub_grad.abs().max().item())


def test_triton_center_loss_differs_from_bceloss_where_it_clamps():
    """A confidently wrong bit (u=-20, t=+1): BCELoss caps the loss at 100 with zero gradient
    (tanh rounds to -1 in fp32); the stable form gives 2|u| = 40 and keeps the full gradient -2/(Bq)."""
    u = torch.full((1, 16), -20.0, device=DEVICE)
    centers = torch.ones(1, 16, device=DEVICE)
    loss, grad = loss_and_grad(fused_center_loss, u, centers, None, 0.0)
    pub_loss, pub_grad = loss_and_grad(public_bce_loss, u, centers, None, 0.0)
    assert loss.item() == pytest.approx(40.0, rel=1e-6)
    assert pub_loss.item() == pytest.approx(100.0, rel=1e-6)
    torch.testing.assert_close(grad, torch.full_like(u, -2.0 / 16))
    assert torch.count_nonzero(pub_grad) == 0


def test_triton_center_loss_strided_u_int32_labels_int8_centers():
    u_big, centers, labels = make_case(50, 80, False, torch.float32)
    u = u_big[:, 8:72]  # row stride 80, not 64
    centers = centers[:, 8:72].to(torch.int8).contiguous()
    loss, grad = loss_and_grad(fused_center_loss, u, centers, labels.int(), 1e-4)
    ref_loss, ref_grad = loss_and_grad(center_loss_reference, u, centers, labels, 1e-4)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("multi_label", [False, True])
def test_triton_center_loss_many_programs(monkeypatch, multi_label):
    """Small blocks: many programs, partial sums combined by atomic adds."""
    from shc.kernels import center_loss as module

    monkeypatch.setattr(module, "_ELEMENTS_PER_PROGRAM", 256)
    u, centers, labels = make_case(301, 48, multi_label, torch.float32)
    loss, grad = loss_and_grad(fused_center_loss, u, centers, labels, 0.1)
    ref_loss, ref_grad = loss_and_grad(center_loss_reference, u, centers, labels, 0.1)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_center_loss_scaled_and_repeated_backward(dtype):
    """The gradient is written by the forward launch: backward must scale it by grad_output, and a
    retained graph run backward twice must accumulate the same gradient twice (nothing mutated in place)."""
    u, centers, labels = make_case(37, 48, False, dtype)
    u = u.detach().clone().requires_grad_()
    loss = fused_center_loss(u, centers, labels, 0.1)
    (2.5 * loss).backward(retain_graph=True)
    first = u.grad.clone()
    (2.5 * loss).backward()
    ref_u = u.detach().clone().requires_grad_()
    (2.5 * center_loss_reference(ref_u, centers, labels, 0.1)).backward()
    scale = ref_u.grad.float().abs().max().item()
    torch.testing.assert_close(first.float(), ref_u.grad.float(), rtol=2 * GRAD_RTOL[dtype], atol=1e-6 * scale)
    torch.testing.assert_close(u.grad, 2 * first)


def test_triton_center_loss_without_grad():
    """No gradient wanted (no_grad, or u without requires_grad): the same value, no backward graph."""
    u, centers, labels = make_case(37, 48, False, torch.float32)
    ref = center_loss_reference(u, centers, labels, 0.1)
    plain = fused_center_loss(u, centers, labels, 0.1)
    with torch.no_grad():
        inside = fused_center_loss(u.clone().requires_grad_(), centers, labels, 0.1)
    assert plain.grad_fn is None and inside.grad_fn is None
    torch.testing.assert_close(plain, ref, rtol=1e-6, atol=0)
    torch.testing.assert_close(inside, ref, rtol=1e-6, atol=0)


def test_triton_center_loss_gradient_is_deterministic():
    u, centers, labels = make_case(301, 64, False, torch.float32)
    _, g1 = loss_and_grad(fused_center_loss, u, centers, labels, 1e-4)
    _, g2 = loss_and_grad(fused_center_loss, u, centers, labels, 1e-4)
    assert torch.equal(g1, g2)


def test_triton_center_loss_out_of_range_label_poisons_only_its_row():
    u, centers, labels = make_case(10, 16, False, torch.float32, n_classes=3)
    labels[4] = 3
    labels[7] = -1
    loss, grad = loss_and_grad(fused_center_loss, u, centers, labels, 1e-4)
    assert torch.isnan(loss)
    bad = torch.zeros(10, dtype=torch.bool, device=DEVICE)
    bad[[4, 7]] = True
    assert torch.isnan(grad[bad]).all() and torch.isfinite(grad[~bad]).all()


@pytest.mark.parametrize("fn", [fused_center_loss, center_loss])
def test_kernel_center_loss_rejects_bad_input(fn):
    u, centers, labels = make_case(8, 16, False, torch.float32)
    with pytest.raises(ValueError, match="q=16"):
        fn(u, centers[:, :12], labels)
    with pytest.raises(ValueError, match="target matrix"):
        fn(u, centers, None)
    with pytest.raises(TypeError, match="integer class ids"):
        fn(u, centers, labels.float())
    with pytest.raises(ValueError, match="1-D"):
        fn(u, centers, labels[:5])
    with pytest.raises(ValueError, match="floating"):
        fn(u.long(), centers, labels)
    with pytest.raises(ValueError, match="non-empty"):
        fn(u[:0], centers, labels[:0])


def test_kernel_center_loss_dispatch_cpu_uses_reference():
    u, centers, labels = make_case(8, 16, False, torch.float32)
    u = u.cpu().requires_grad_()
    loss = center_loss(u, centers.cpu(), labels.cpu())
    assert "FusedCenterLoss" not in type(loss.grad_fn).__name__
    assert torch.equal(loss, center_loss_reference(u, centers.cpu(), labels.cpu()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="dispatch to Triton needs CUDA tensors")
def test_kernel_center_loss_dispatch_cuda(monkeypatch):
    u, centers, labels = make_case(8, 16, False, torch.float32)
    u.requires_grad_()
    assert "FusedCenterLoss" in type(center_loss(u, centers, labels).grad_fn).__name__
    trainable = centers.clone().requires_grad_()
    assert "FusedCenterLoss" not in type(center_loss(u, trainable, labels).grad_fn).__name__
    monkeypatch.setenv("SHC_DISABLE_TRITON", "1")
    assert "FusedCenterLoss" not in type(center_loss(u, centers, labels).grad_fn).__name__
