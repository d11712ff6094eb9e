"""The methods with heads of their own — GreedyHash, OrthoHash, LTH, VTDH: their losses and heads against plain
numpy references and the worked values of the reference doc (baselines.md §10), the straight-through sign's
gradient, OrthoHash's codebook, LTH's prototypes, the ViT backbone, end to end (single- and multi-label) with the
evaluator and load_run reproducing the run, resume, and the bad inputs the CLI refuses."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shc.cli.train import main
from shc.methods import MethodContext, create_method, hashing_model, list_methods
from shc.methods.greedyhash import GreedyHashHead, SignSTE, greedyhash_loss
from shc.methods.lth import class_balanced_weights
from shc.methods.orthohash import OrthoHashHead, make_codebook, orthohash_loss
from shc.methods.vtdh import cubic_quantization, vtdh_loss
from shc.models import HashNet, create_backbone
from shc.train import TrainConfig, run_pipeline

HEAD_METHODS = ["vtdh", "lth", "greedyhash", "orthohash"]
TINY = dict(dataset="synthetic", data_options=dict(sizes=(8, 3, 8), image_size=16), bits=16, epochs=2,
            batch_size=16, test_map=2, eval_batch_size=64, threads=1, progress=False)
TOL = dict(rtol=1e-5, atol=1e-6)


def ctx(bits=8, classes=3, multi_label=False, **kw):
    return MethodContext(bits=bits, num_classes=classes, multi_label=multi_label, **kw)


# ------------------------------------------------------------------------------------------- numpy references
def sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def log_softmax(row):
    row = np.asarray(row, np.float64)
    m = row.max()
    return row - m - np.log(np.exp(row - m).sum())


def ref_cross_entropy(logits, labels, classes, weights=None):
    """mean over rows of −Σ_c w_c·t_c·log p_c; t = one-hot, or y/Σy for multi-hot rows (empty rows add 0)."""
    w = np.ones(classes) if weights is None else np.asarray(weights, np.float64)
    total = 0.0
    for row, label in zip(np.asarray(logits, np.float64), np.asarray(labels)):
        y = np.eye(classes)[label] if np.ndim(label) == 0 else np.asarray(label, np.float64)
        t = y / y.sum() if y.sum() > 0 else y
        total -= sum(w[c] * t[c] * log_softmax(row)[c] for c in range(classes))
    return total / len(logits)


def ref_multi_hot(labels, classes):
    labels = np.asarray(labels)
    return np.eye(classes)[labels] if labels.ndim == 1 else (labels > 0).astype(np.float64)


def labels_cases():
    """(single-label ids, multi-hot rows with an empty row) for a batch of 4 over 3 classes."""
    return torch.tensor([0, 2, 1, 2]), torch.tensor([[1., 1, 0], [0, 0, 1], [0, 0, 0], [1, 0, 1]])


# ------------------------------------------------------------------------------------------- §10 worked values
def test_worked_values_of_the_reference():
    # GreedyHash: h = [0.5, −2, 1], W = [[1, 0, 1], [0, 1, −1]], y = 0
    h = torch.tensor([[0.5, -2.0, 1.0]])
    w = torch.tensor([[1.0, 0, 1], [0, 1, -1]])
    assert greedyhash_loss(h, SignSTE.apply(h) @ w.T, torch.tensor([0]), 0.1).item() == \
        pytest.approx(0.0556499, abs=1e-5)
    # OrthoHash: v = [1, −2, .5, .5] against three codewords, s = 8, m = 0.2
    v = torch.tensor([[1.0, -2, 0.5, 0.5]])
    head = OrthoHashHead(4, torch.tensor([[1.0, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1]]))
    cos = F.normalize(v, dim=1) @ F.normalize(head.codebook, dim=1).T
    np.testing.assert_allclose(cos[0].numpy(), [0, 0.6396021, -0.4264014], atol=1e-6)
    assert orthohash_loss(v, cos, torch.tensor([1]), scale=8, margin=0.2).item() == \
        pytest.approx(0.0302127, abs=1e-5)
    assert orthohash_loss(v, cos, torch.tensor([[1.0, 1, 0]]), scale=8, margin=0.2).item() == \
        pytest.approx(2.5653594, abs=1e-5)
    # LTH: class-balanced CE, counts [100, 10]
    lth = create_method("lth", ctx(classes=2, class_counts=np.array([100, 10])), {"beta": 0.9})
    logits, y = torch.tensor([[2.0, 0.5], [0.2, 1.0]]), torch.tensor([0, 1])
    np.testing.assert_allclose(lth.weights.numpy(), [0.651339, 1], atol=1e-6)
    assert lth.loss((None, logits), y, None).item() == pytest.approx(0.2511445, abs=1e-5)
    plain = create_method("lth", ctx(classes=2, class_counts=np.array([100, 10])))
    assert plain.loss((None, logits), y, None).item() == pytest.approx(0.2862570, abs=1e-5)
    np.testing.assert_allclose(class_balanced_weights([500, 5], 0.999).numpy(), [0.0127, 1], atol=1e-4)
    # VTDH: the reference's value is the published code's form; its BCE is ours, and its cubic term
    # mean((|tanh u| − 1)³) = −0.2923040 is the negative of ours (|tanh u| ≤ 1): Bug 1 fixed by the outer abs
    u, center = torch.tensor([[0.5, -1, 2, 0]]), torch.tensor([[1.0, -1, 1, 1]])
    assert vtdh_loss(u, center, lambd=0, w_bal=0).item() == pytest.approx(0.2878717, abs=1e-5)
    assert cubic_quantization(torch.tanh(u)).item() == pytest.approx(0.2923040, abs=1e-5)
    assert vtdh_loss(u, center, lambd=1e-4, w_bal=0).item() == pytest.approx(0.2878717 + 1e-4 * 0.2923040,
                                                                              abs=1e-6)


# ------------------------------------------------------------------------------------------- GreedyHash
def test_sign_straight_through_forward_and_float64_gradcheck():
    h = torch.tensor([-1.5, -0.0, 0.0, 2.0, 1e-9], dtype=torch.float64)
    assert SignSTE.apply(h).tolist() == [-1, 1, 1, 1, 1]  # sign(0) = +1
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    # the STE's backward is the identity's: SignSTE(x) + (x − SignSTE(x)) with the bracket detached is x in value
    # (finite differences: the identity) and passes the gradient through SignSTE's backward only
    assert torch.autograd.gradcheck(lambda t: SignSTE.apply(t) + (t - SignSTE.apply(t)).detach(), (x,))
    g = torch.randn(5, 7, dtype=torch.float64)
    (grad,) = torch.autograd.grad(SignSTE.apply(x), x, g)
    assert torch.equal(grad, g)


@pytest.mark.parametrize("multi", [False, True])
def test_greedyhash_head_and_loss_against_numpy(multi):
    torch.manual_seed(0)
    method = create_method("greedyhash", ctx(bits=6, classes=3, multi_label=multi), {"alpha": 0.3})
    head = method.head(5)
    assert isinstance(head, GreedyHashHead) and head.classify.bias is None
    x = torch.randn(4, 5)
    labels = labels_cases()[multi]
    h, logits = head.train()(x)
    loss = method.loss((h, logits), labels, None)
    hn = (x @ head.encode.weight.T + head.encode.bias).detach().numpy().astype(np.float64)
    ref_logits = sign(hn) @ head.classify.weight.detach().numpy().T
    np.testing.assert_allclose(logits.detach().numpy(), ref_logits, **TOL)
    ref = ref_cross_entropy(ref_logits, labels.numpy(), 3) + 0.3 * np.mean(np.abs(np.abs(hn) - 1) ** 3)
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    loss.backward()  # the classifier is trained (its gradient reaches it), the STE feeds the encoder
    assert head.classify.weight.grad.abs().sum() > 0 and head.encode.weight.grad.abs().sum() > 0
    assert torch.equal(head.eval()(x), h.detach())


# ------------------------------------------------------------------------------------------- OrthoHash
def ref_cos(v, codebook):
    return np.array([[np.dot(a, c) / (np.linalg.norm(a) * np.linalg.norm(c)) for c in codebook] for a in v])


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("quan_type", ["cs", "l1", "l2"])
def test_orthohash_head_and_loss_against_numpy(multi, quan_type):
    torch.manual_seed(1)
    method = create_method("orthohash", ctx(bits=8, classes=3, multi_label=multi, seed=5),
                           {"quan": 0.5, "quan_type": quan_type, "margin": 0.3})
    head = method.head(6)
    assert head.encode.bias is None and isinstance(head.norm, nn.BatchNorm1d)
    assert torch.equal(head.codebook, make_codebook("B", 3, 8, seed=5))  # drawn from the run's seed
    x = torch.randn(4, 6)
    labels = labels_cases()[multi]
    v, cos = head.train()(x)
    vn = v.detach().numpy().astype(np.float64)
    book = head.codebook.numpy()
    np.testing.assert_allclose(cos.detach().numpy(), ref_cos(vn, book), **TOL)
    y = ref_multi_hot(labels.numpy(), 3)
    ce = ref_cross_entropy(8 * (ref_cos(vn, book) - 0.3 * y), labels.numpy(), 3)
    b = sign(vn)
    quan = {"cs": np.mean([1 - np.dot(a, s) / (np.linalg.norm(a) * np.linalg.norm(s)) for a, s in zip(vn, b)]),
            "l1": np.mean(np.abs(vn - b)), "l2": np.mean((vn - b) ** 2)}[quan_type]
    assert method.loss((v, cos), labels, None).item() == pytest.approx(ce + 0.5 * quan, rel=1e-5)


def test_orthohash_codebooks():
    for kind in ("B", "N", "O"):
        book = make_codebook(kind, 12, 16, seed=3)
        assert book.shape == (12, 16) and set(book.unique().tolist()) <= {-1.0, 1.0}
        assert torch.equal(book, make_codebook(kind, 12, 16, seed=3))        # the seed decides
        assert not torch.equal(book, make_codebook(kind, 12, 16, seed=4))
    np.testing.assert_array_equal(make_codebook("N", 12, 16, seed=3).numpy(),
                                  sign(np.random.default_rng(3).standard_normal((12, 16))))
    np.testing.assert_array_equal(make_codebook("B", 12, 16, seed=3).numpy(),
                                  np.random.default_rng(3).integers(0, 2, (12, 16)) * 2 - 1)
    # 'O': greedy rejection sampling keeps every pair far apart: 12 rows of 16 bits at >= 7/16 (Bernoulli rows: 2/16)
    book = make_codebook("O", 12, 16, seed=3).numpy()
    distance = (16 - book @ book.T) / 32
    assert distance[~np.eye(12, dtype=bool)].min() >= 7 / 16
    bernoulli = make_codebook("B", 12, 16, seed=3).numpy()
    assert ((16 - bernoulli @ bernoulli.T) / 32)[~np.eye(12, dtype=bool)].min() < 7 / 16
    # 64 rows of 6 bits: no code of 64 words keeps 2 bits apart, the floor's fallback still ends (distinct rows)
    assert len(np.unique(make_codebook("O", 64, 6, seed=0).numpy(), axis=0)) == 64
    with pytest.raises(ValueError, match="codebook must be one of B, N, O"):
        make_codebook("M", 3, 8, seed=0)


# ------------------------------------------------------------------------------------------- LTH
def ref_lth_head(head, x):
    """(u, logits) of an LTH head in plain numpy from its weights (float64)."""
    p = {k: v.detach().numpy().astype(np.float64) for k, v in head.state_dict().items()}
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    f = relu(relu(x) @ p["direct.1.weight"].T + p["direct.1.bias"])
    a = np.array([np.exp(log_softmax(r)) for r in f @ p["hallucinator.weight"].T + p["hallucinator.bias"]])
    g = np.tanh(f @ p["selector.weight"].T + p["selector.bias"])
    f = f + g * (a @ p["prototypes"])
    u = f @ p["encode.weight"].T + p["encode.bias"]
    return u, np.tanh(u) @ p["classify.weight"].T + p["classify.bias"]


def test_lth_head_against_numpy():
    torch.manual_seed(2)
    head = create_method("lth", ctx(bits=6, classes=3), {"feature_dim": 10}).head(5)
    head.prototypes.normal_()  # as if an epoch had started
    x = torch.randn(4, 5)
    u, logits = head.train()(x)
    ref_u, ref_logits = ref_lth_head(head, x.numpy().astype(np.float64))
    np.testing.assert_allclose(u.detach().numpy(), ref_u, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits.detach().numpy(), ref_logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(head.eval()(x), u.detach())
    plain = create_method("lth", ctx(bits=6, classes=3), {"meta_embedding": False, "feature_dim": 10}).head(5)
    assert not hasattr(plain, "prototypes") and plain.train()(x)[1].shape == (4, 3)


@pytest.mark.parametrize("multi", [False, True])
def test_lth_loss_against_numpy(multi):
    counts = np.array([30, 0, 4])  # class 1 has no training image: weighted as if it had one, no 0/0
    method = create_method("lth", ctx(classes=3, multi_label=multi, class_counts=counts), {"beta": 0.99})
    w = (1 - 0.99) / (1 - 0.99 ** np.maximum(counts, 1))
    w = w / w.max()
    np.testing.assert_allclose(method.weights.numpy(), w, rtol=1e-6)
    logits, labels = torch.randn(4, 3) * 3, labels_cases()[multi]
    loss = method.loss((None, logits), labels, None)
    assert loss.item() == pytest.approx(ref_cross_entropy(logits.numpy(), labels.numpy(), 3, w), rel=1e-5)


class StubSplit:
    """The training split as the prototype pass reads it: fixed (images, labels) in order."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def batches(self, batch_size, *, train, device="cpu", rank=0, world_size=1, **_):
        assert not train  # in order, unaugmented
        for i in range(0, len(self.labels), batch_size):
            yield self.images[i:i + batch_size], self.labels[i:i + batch_size], torch.arange(i, i + batch_size)


@pytest.mark.parametrize("multi", [False, True])
def test_lth_prototypes_are_class_means_of_the_direct_feature(multi):
    torch.manual_seed(3)
    method = create_method("lth", ctx(bits=6, classes=4, multi_label=multi), {"feature_dim": 7})
    backbone = nn.Sequential(nn.Linear(5, 5), nn.BatchNorm1d(5))
    model = HashNet(backbone, 6, head=method.head(5))
    images = torch.randn(10, 5)
    labels = torch.tensor([0, 2, 2, 1, 0, 0, 2, 1, 1, 0]) if not multi else \
        torch.tensor([[1., 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]] * 2)
    model.train()
    method.start_epoch(model, StubSplit(images, labels), epoch=0, batch_size=3)
    with torch.no_grad():
        model.eval()  # BatchNorm's running statistics, as in the pass
        f = model.head.direct(backbone(images)).numpy().astype(np.float64)
    y = ref_multi_hot(labels.numpy(), 4)
    for c in range(4):  # class 3 never occurs: a zero prototype
        members = [f[i] for i in range(10) if y[i, c]]
        expected = np.mean(members, axis=0) if members else np.zeros(7)
        np.testing.assert_allclose(model.head.prototypes[c].numpy(), expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------- VTDH
def ref_vtdh_head(head, x):
    """u of a VTDH head in eval mode (no dropout), numpy loops over the images."""
    p = {k: v.detach().numpy().astype(np.float64) for k, v in head.state_dict().items()}
    x = x.numpy().astype(np.float64)
    tokens = x.reshape(x.shape[0], x.shape[1], -1).transpose(0, 2, 1) if x.ndim == 4 else x

    def h(z):
        return np.maximum(z @ p["hash.1.weight"].T + p["hash.1.bias"], 0) @ p["hash.3.weight"].T + p["hash.3.bias"]

    out = []
    for t in tokens:
        scores = t @ p["attention.keys.weight"].T                                   # N × S
        e = np.exp(scores - scores.max(0))
        a = e / e.sum(0)                                                            # softmax over tokens
        a = np.array([row / (row.sum() + 1e-9) for row in a])                       # then over units
        ea = a @ p["attention.values.weight"].T
        out.append(h(t.reshape(-1)) + h(ea.reshape(-1)))
    return np.array(out)


@pytest.mark.parametrize("shape", [(3, 6, 2, 3), (3, 5, 6)])  # a (B, C, H, W) map, (B, N, D) tokens
def test_vtdh_head_against_numpy(shape):
    torch.manual_seed(4)
    dim, tokens = (shape[1], shape[2] * shape[3]) if len(shape) == 4 else (shape[2], shape[1])
    method = create_method("vtdh", ctx(bits=5, classes=3), {"hidden": 16, "units": 4})
    head = method.head(dim)
    x = torch.randn(*shape)
    head.eval()(x)  # sizes the lazy Linear(N·D, hidden)
    assert head.hash[1].weight.shape == (16, tokens * dim)
    np.testing.assert_allclose(head(x).detach().numpy(), ref_vtdh_head(head, x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        method.head(dim)(torch.randn(2, dim, 1, 1))
    with pytest.raises(ValueError, match=r"takes \(B, %d, H, W\) maps or \(B, N, %d\) tokens, got \(2, %d\)"
                       % (dim, dim, dim)):
        head(torch.randn(2, dim))  # a pooled feature vector: the backbone was not built with feature_map=True


@pytest.mark.parametrize("multi", [False, True])
def test_vtdh_loss_against_numpy(multi):
    from shc.centers import csq_centers
    from shc.train.stage3 import tie_break_center
    method = create_method("vtdh", ctx(bits=8, classes=3, multi_label=multi, seed=7), {"lambd": 0.2, "w_bal": 0.3})
    centers = csq_centers(3, 8, seed=7).astype(np.float64)
    tie = tie_break_center(8, 7).numpy()
    labels = labels_cases()[multi]
    targets = []
    for label in labels.numpy():  # CSQ's rule: the sign of the summed label centers, zero bits from the tie center
        if np.ndim(label) == 0:
            targets.append(centers[label])
        else:
            summed = sum((centers[c] for c in range(3) if label[c] > 0), np.zeros(8))
            targets.append([tie[k] if summed[k] == 0 else np.sign(summed[k]) for k in range(8)])
    t = (np.array(targets) + 1) / 2
    u = torch.randn(4, 8) * 2
    un = u.numpy().astype(np.float64)
    p = (np.tanh(un) + 1) / 2
    bce = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    cubic = np.mean(np.abs(np.abs(np.tanh(un)) - 1) ** 3)
    balance = np.mean(np.abs(p.mean(0) - 0.5))  # from the codes (Bug 2 fixed)
    assert method.loss(u, labels, None).item() == pytest.approx(bce + 0.2 * cubic + 0.3 * balance, rel=1e-5)
    assert vtdh_loss(torch.full((2, 1024), 60.0), -torch.ones(2, 1024), lambd=1e-4, w_bal=0.01).isfinite()


# ------------------------------------------------------------------------------------------- the ViT backbone
def test_vit_backbone_tokens_cls_and_refusals(tmp_path):
    torch.manual_seed(5)
    with warnings.catch_warnings():  # "no ImageNet weights": none are wanted here
        warnings.simplefilter("ignore")
        vit = create_backbone("vit_b_32", feature_map=True)
    assert vit.num_features == 768
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        tokens = vit.eval()(x)
        vit.feature_map = False
        cls = vit(x)
    assert tokens.shape == (2, 50, 768) and cls.shape == (2, 768) and torch.equal(cls, tokens[:, 0])
    head = create_method("vtdh", ctx(bits=8, classes=3), {"hidden": 32}).head(768)
    assert head.eval()(tokens).shape == (2, 8)
    with pytest.raises(ValueError, match="3x224x224 colour images only, got 3x32x32"):
        vit(torch.randn(1, 3, 32, 32))
    for kw in (dict(in_channels=1), dict(small_input=True)):
        with pytest.raises(ValueError, match="vit_b_32 backbone takes 3x224x224"):
            create_backbone("vit_b_32", **kw)
    foreign = tmp_path / "foreign.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match="does not hold vit_b_32 weights"):
        create_backbone("vit_b_32", pretrained=str(foreign))


# ------------------------------------------------------------------------------------------- end to end
def test_registry_order():
    names = list_methods()
    assert [n for n in names if n in ("shc", "mds", "csq", *HEAD_METHODS)] == \
        ["shc", "mds", "csq", "vtdh", "lth", "greedyhash", "orthohash"]


@pytest.mark.parametrize("multi", [False, True], ids=["single", "multi"])
@pytest.mark.parametrize("method", HEAD_METHODS)
def test_end_to_end_codes_metrics_and_load_run(tmp_path, check_run, method, multi):
    data = dict(TINY["data_options"], multi_label=multi)
    out = tmp_path / "run"
    # (LTH trains at its lr_scale 0.1 of the preset's 1e-3: at the full rate tanh u saturates, one code for all)
    metrics = run_pipeline(TrainConfig(**{**TINY, "data_options": data}, method=method, out=str(out)))
    assert metrics["method"] == method and metrics["centers"] is None and not (out / "centers.npy").exists()
    codes = check_run(out, metrics, data)
    assert len(np.unique(codes["db_codes"], axis=0)) > 1  # not collapsed to one code
    if not multi:  # shc-export: a batch-dynamic program, checked by the command against the eager model's codes
        from shc.cli.export import main as export_main
        assert export_main(["--run", str(out), "--format", "torch", "--out", str(tmp_path / "m.pt2")]) == 0


def test_load_run_has_orthohash_codebook_and_batchnorm(tmp_path):
    import shc
    from shc.data import load_dataset
    out = tmp_path / "run"
    run_pipeline(TrainConfig(**TINY, method="orthohash", method_options={"codebook": "O"}, seed=3, out=str(out)))
    encoder = shc.load_run(out, device="cpu")
    net = encoder.net
    state = torch.load(out / "checkpoints" / "hashnet.pt", weights_only=True)["model"]
    assert torch.equal(net.head.codebook, make_codebook("O", 10, 16, seed=3))
    assert torch.equal(state["head.codebook"], net.head.codebook)
    assert state["head.norm.num_batches_tracked"] > 0  # BatchNorm's running statistics came with the run
    assert torch.equal(net.head.norm.running_mean, state["head.norm.running_mean"])
    query = load_dataset("synthetic", seed=3, **TINY["data_options"]).query
    np.testing.assert_array_equal(encoder.encode(query.images), np.load(out / "codes" / "query_codes.npy"))


@pytest.mark.parametrize("method", ["lth", "vtdh"])
def test_resume_ends_where_an_uninterrupted_run_ends(tmp_path, method):
    """LTH's prototypes (recomputed each epoch) and VTDH's dropout masks (seeded per epoch) after a kill."""
    def stop_after_one(stage, record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    cfg = dict(TINY, method=method, method_options={"feature_dim": 32} if method == "lth" else {"hidden": 64})
    whole = run_pipeline(TrainConfig(**cfg, out=str(tmp_path / "whole")))
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(TrainConfig(**cfg, out=str(tmp_path / "cut")), callback=stop_after_one)
    resumed = run_pipeline(TrainConfig(**cfg, out=str(tmp_path / "cut"), resume=True))
    for name in ("query_codes", "db_codes"):
        np.testing.assert_array_equal(np.load(tmp_path / "whole" / "codes" / f"{name}.npy"),
                                      np.load(tmp_path / "cut" / "codes" / f"{name}.npy"))
    assert [r["loss"] for r in resumed["history"]] == [r["loss"] for r in whole["history"]]
    a = torch.load(tmp_path / "whole" / "checkpoints" / "hashnet.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoints" / "hashnet.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if method == "lth":
        assert a["head.prototypes"].abs().sum() > 0


def test_methods_train_on_the_benchmark_shape():
    """The compact backbone, 1×28×28 Fashion-MNIST-shaped input, batch 64, 32 bits: one training step each."""
    for name in HEAD_METHODS:
        method = create_method(name, ctx(bits=32, classes=10, class_counts=np.full(10, 500), train_size=5000))
        net = hashing_model(method, create_backbone("compact", in_channels=1, small_input=True,
                                                    feature_map=method.feature_map))
        optimizer = torch.optim.RMSprop(net.parameters(), lr=1e-3)
        loss = method.loss(net.train()(torch.randn(64, 1, 28, 28)), torch.randint(0, 10, (64,)), torch.arange(64))
        loss.backward()
        optimizer.step()
        assert loss.isfinite() and net.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 32)


# ------------------------------------------------------------------------------------------- bad input
def test_option_ranges_are_refused_when_the_configuration_resolves():
    for method, options, message in (("lth", {"beta": 1.0}, "beta must be in"),
                                     ("vtdh", {"code_dropout": 1.0}, "code_dropout must be in")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(**TINY, method=method, method_options=options).resolved()


@pytest.mark.parametrize("argv, message", [
    (["--method", "greedyhash", "--method-option", "margin=0.3"],
     "method greedyhash takes no option 'margin'; it takes: alpha"),
    (["--method", "orthohash", "--method-option", "codebook='Z'"], "option codebook must be one of B, N, O"),
    (["--method", "orthohash", "--method-option", "scale='big'"], "option scale takes a finite number"),
    (["--method", "lth", "--method-option", "feature_dim=2.5"], "option feature_dim takes an integer"),
    (["--method", "lth", "--method-option", "beta=1.0"], "option beta must be in [0, 1)"),
    (["--method", "lth", "--method-option", "meta_embedding=1"], "option meta_embedding takes True or False"),
    (["--method", "vtdh", "--method-option", "units=0"], "option units must be a positive integer"),
    (["--method", "vtdh", "--backbone", "vit_b_32"], "vit_b_32 backbone takes 3x224x224 colour images only"),
    (["--method", "vtdh", "--backbone", "resnet18", "--data-option", "image_size=8"],
     "feature map has 1 position for this image size"),
])
@pytest.mark.filterwarnings("ignore:no ImageNet weights")  # resnet18 without weights: beside the point here
def test_cli_refuses_before_training(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    code = main(["--dataset", "synthetic", "--data-option", "sizes=(8,3,8)", "--threads", "1", "--epochs", "1",
                 "--no-progress", "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (out / "checkpoints" / "hashnet.pt").exists() and not (out / "metrics.json").exists()
