"""Stage-3 pieces: multi-label targets, codes, sharded encoding, artifacts, the epoch loop's checkpoints."""
import numpy as np
import pytest
import torch

from shc.data import load_dataset
from shc.models import HashNet, create_backbone
from shc.train.artifacts import (DamagedCheckpoint, fingerprint, load_array_artifact, load_checkpoint,
                                 save_array_artifact, save_checkpoint)
from shc.train.dist import Dist
from shc.train.stage3 import encode_split, hashing_loss, multilabel_targets, sign_codes, tie_break_center


def test_csq_multilabel_rule_matches_loop():
    g = torch.Generator().manual_seed(0)
    centers = torch.randint(0, 2, (6, 8), generator=g).float() * 2 - 1
    labels = (torch.rand(20, 6, generator=g) < 0.4).float()
    labels[0, :2] = 1  # make sure some sums are zero: two labels disagree on half their bits
    labels[0, 2:] = 0
    tie = tie_break_center(8, seed=3)
    got = multilabel_targets(labels, centers, "csq", tie)
    for i in range(20):
        total = sum(centers[c] for c in range(6) if labels[i, c] > 0) if labels[i].any() else torch.zeros(8)
        want = [tie[b] if total[b] == 0 else torch.sign(total[b]) for b in range(8)]
        assert got[i].tolist() == [float(w) for w in want]
    assert (got[0] == tie).any()  # the tie center was actually used
    first = multilabel_targets(labels, centers, "first")
    for i in range(1, 20):
        if labels[i].any():
            assert torch.equal(first[i], centers[int(torch.nonzero(labels[i])[0])])
    with pytest.raises(ValueError, match="rule"):
        multilabel_targets(labels, centers, "sum")


def test_tie_center_is_seeded():
    assert torch.equal(tie_break_center(32, 5), tie_break_center(32, 5))
    assert not torch.equal(tie_break_center(32, 5), tie_break_center(32, 6))
    assert set(tie_break_center(32, 5).tolist()) == {-1.0, 1.0}


def test_hashing_loss_single_label_uses_class_centers():
    centers = torch.tensor([[1, -1, 1, 1], [-1, -1, 1, -1]], dtype=torch.int8)
    u = torch.randn(3, 4)
    labels = torch.tensor([1, 0, 1])
    loss = hashing_loss(centers, lambd=0.5, multi_label=False)(u, labels)
    t = (centers.float()[labels] + 1) / 2
    p = (torch.tanh(u) + 1) / 2
    want = torch.nn.functional.binary_cross_entropy(p, t) + 0.5 * ((u.tanh().abs() - 1) ** 2).mean()
    assert torch.allclose(loss, want, atol=1e-6)


def test_sign_codes_zero_is_plus_one():
    assert sign_codes(torch.tensor([[-0.5, 0.0, 2.0, -0.0]])).tolist() == [[-1, 1, 1, 1]]


class _OneShard(Dist):
    """What one rank holds before the gather: its rows and their split indices."""

    def gather_rows(self, rows, indices, total):
        return rows, indices


def test_sharded_encoding_equals_whole():
    ds = load_dataset("synthetic", seed=0, sizes=(4, 3, 5), image_size=16)
    torch.manual_seed(0)
    net = HashNet(create_backbone("compact", in_channels=3), 12)
    whole = encode_split(net, ds.database, batch_size=7, device="cpu", progress=False)
    assert whole.dtype == np.int8 and whole.shape == (len(ds.database), 12)
    assert set(np.unique(whole)) <= {-1, 1}
    out = np.zeros_like(whole)
    for rank in range(3):
        rows, idx = encode_split(net, ds.database, batch_size=7, device="cpu", dist=_OneShard(rank, 3),
                                 progress=False)
        out[idx] = rows
    np.testing.assert_array_equal(out, whole)


def test_gather_rows_detects_holes():
    with pytest.raises(RuntimeError, match="covered"):
        Dist().gather_rows(np.zeros((2, 3)), np.array([0, 2]), 4)


def test_array_artifact_fingerprint_and_integrity(tmp_path):
    path = tmp_path / "a.npy"
    fp = fingerprint(stage=1, x=[1, 2])
    assert fp == fingerprint(x=(1, 2), stage=1) and fp != fingerprint(stage=1, x=[1, 3])
    a = np.arange(12.0).reshape(3, 4)
    save_array_artifact(path, a, fp)
    np.testing.assert_array_equal(load_array_artifact(path, fp), a)
    assert load_array_artifact(path, fingerprint(stage=2)) is None  # other inputs: recompute
    np.save(path, a + 1)  # content changed behind our back: not trusted
    assert load_array_artifact(path, fp) is None
    assert load_array_artifact(tmp_path / "missing.npy", fp) is None
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_roundtrip_and_corruption(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"epoch": 3, "epochs": 5, "model": {"w": torch.ones(2)}}, "fp1")
    assert load_checkpoint(path, "fp1")["epoch"] == 3
    assert load_checkpoint(path, "fp2") is None
    path.write_bytes(b"truncated")
    with pytest.raises(DamagedCheckpoint, match="c.pt is not the file that was written"):  # its digest differs
        load_checkpoint(path, "fp1")
    path.with_name("c.pt.sha256").unlink()  # an older shc's checkpoint, without a digest: unreadable is absent
    assert load_checkpoint(path, "fp1") is None
