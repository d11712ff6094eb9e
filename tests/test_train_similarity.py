"""shc.similarity against a slow per-sample reference written like the public code."""
import numpy as np
import pytest
import torch

from shc.similarity import accumulate_similarity, class_similarity, finalize_similarity


def reference_similarity(logits, labels, mask="gt", multilabel="negatives"):
    """One sample at a time, plain Python loops over classes (the public code's style)."""
    logits = logits.double()
    n, c = logits.shape
    s = [[0.0] * c for _ in range(c)]
    for i in range(n):
        z = logits[i].clone()
        if labels.dim() == 1:
            rows, masked = [int(labels[i])], [int(labels[i])]
        else:
            pos = [j for j in range(c) if labels[i, j] > 0]
            if not pos:
                continue
            rows = pos[:1] if multilabel == "first" else pos
            masked = rows if multilabel == "first" else pos
        if mask == "argmax":
            masked = [int(torch.argmax(z))]
        for j in masked:
            z[j] = float("-inf")
        if torch.isinf(z).all():
            continue
        p = torch.softmax(z, 0)
        for r in rows:
            for j in range(c):
                s[r][j] += float(p[j]) / len(rows)
    s = [[(s[a][b] + s[b][a]) / 2 for b in range(c)] for a in range(c)]
    out = []
    for a in range(c):
        mu = sum(s[a]) / c
        scale = max(abs(max(s[a]) - mu), abs(min(s[a]) - mu)) or 1.0
        out.append([1.0 if a == b else (s[a][b] - mu) / scale for b in range(c)])
    return np.array(out)


@pytest.fixture
def single():
    g = torch.Generator().manual_seed(1)
    return torch.randn(40, 6, generator=g) * 3, torch.randint(0, 6, (40,), generator=g)


@pytest.fixture
def multi():
    g = torch.Generator().manual_seed(2)
    labels = (torch.rand(30, 5, generator=g) < 0.35).float()
    labels[0] = 0  # an image without labels contributes nothing
    labels[1] = 1  # all positive: nothing left to softmax over
    return torch.randn(30, 5, generator=g) * 2, labels


@pytest.mark.parametrize("mask", ["gt", "argmax"])
def test_single_label_matches_reference(single, mask):
    logits, labels = single
    got = class_similarity(logits, labels, mask=mask).numpy()
    np.testing.assert_allclose(got, reference_similarity(logits, labels, mask), atol=1e-12)


@pytest.mark.parametrize("rule", ["negatives", "first"])
@pytest.mark.parametrize("mask", ["gt", "argmax"])
def test_multi_label_matches_reference(multi, rule, mask):
    logits, labels = multi
    got = class_similarity(logits, labels, mask=mask, multilabel=rule).numpy()
    np.testing.assert_allclose(got, reference_similarity(logits, labels, mask, rule), atol=1e-12)


def test_batched_accumulation_equals_one_shot(single):
    logits, labels = single
    s_raw = torch.zeros(6, 6, dtype=torch.float64)
    for sl in (slice(0, 7), slice(7, 30), slice(30, 40)):
        accumulate_similarity(s_raw, logits[sl], labels[sl])
    np.testing.assert_allclose(finalize_similarity(s_raw).numpy(), class_similarity(logits, labels).numpy(),
                               atol=1e-14)


def test_hand_computed_case():
    # two classes of three: class 0 images put all non-self mass on class 1, class 1 splits evenly
    logits = torch.tensor([[0.0, 50.0, -50.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1])
    s = class_similarity(logits, labels).numpy()
    # S_raw rows: [0, 1, 0], [.5, 0, .5], [0, 0, 0] (up to e^-100); symmetrised: [[0,.75,0],[.75,0,.25],[0,.25,0]]
    # row 0: mu=.25, scale=.5 -> [-.5, 1, -.5]; row 1: mu=1/3, scale=5/12 -> [1, -.8, -.2]; row 2: mu=1/12, scale=1/6
    expected = np.array([[1, 1, -0.5], [1, 1, -0.2], [-0.5, 1, 1]])
    np.testing.assert_allclose(s, expected, atol=1e-12)


def test_rows_in_range_and_unit_diagonal(single):
    s = class_similarity(*single).numpy()
    assert np.all(np.diag(s) == 1.0)
    assert s.min() >= -1 - 1e-12 and s.max() <= 1 + 1e-12


def test_bad_inputs(single):
    logits, labels = single
    with pytest.raises(ValueError, match="mask"):
        class_similarity(logits, labels, mask="pred")
    with pytest.raises(ValueError, match="multilabel"):
        class_similarity(logits, labels, multilabel="all")
    with pytest.raises(ValueError, match="class ids"):
        class_similarity(logits, labels + 6)
    with pytest.raises(ValueError, match="batch size"):
        class_similarity(logits, labels[:-1])
    with pytest.raises(ValueError, match="multi-hot"):
        class_similarity(logits, torch.zeros(40, 5))
