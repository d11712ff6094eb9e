"""End to end on `synthetic`: outputs, metrics vs the evaluator, determinism, resume, cache reuse, bad inputs."""
import json

import numpy as np
import pytest

from shc.cli.train import main
from shc.metrics import evaluate
from shc.train import TrainConfig, run_pipeline

TINY = dict(dataset="synthetic", data_options=dict(sizes=(8, 3, 8), image_size=16), bits=16, epochs=3,
            classify_epochs=2, batch_size=16, test_map=2, eval_batch_size=64, threads=1, progress=False)


def tiny(tmp_path, name="run", **overrides):
    return TrainConfig(**{**TINY, "out": str(tmp_path / name), **overrides})


class Recorder:
    """Pipeline callback: remembers which stage trained which epochs; can interrupt after one."""

    def __init__(self, stop_at=None):
        self.epochs, self.stop_at = [], stop_at

    def __call__(self, stage, record):
        self.epochs.append((stage, record["epoch"]))
        if (stage, record["epoch"]) == self.stop_at:
            raise KeyboardInterrupt

    def stages(self):
        return {s for s, _ in self.epochs}


def load_codes(out):
    return {n: np.load(out / "codes" / f"{n}.npy") for n in ("query_codes", "db_codes", "query_labels", "db_labels")}


@pytest.mark.parametrize("centers", ["shc", "mds", "csq"])
def test_end_to_end(tmp_path, centers):
    metrics = run_pipeline(tiny(tmp_path, centers=centers))
    out = tmp_path / "run"
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["dataset"] == "synthetic" and metrics["bits"] == 16 and metrics["centers"] == centers
    codes = load_codes(out)
    assert codes["query_codes"].shape == (30, 16) and codes["db_codes"].shape == (80, 16)
    assert set(np.unique(codes["db_codes"])) <= {-1, 1}
    # "mAP" is exactly what the evaluator (shc-eval) reports on the saved codes
    report = evaluate(codes["query_codes"], codes["db_codes"], codes["query_labels"], codes["db_labels"],
                      topk=(100, 1000, "all")).to_dict()
    assert metrics["mAP"] == report["mAP"] and set(metrics["mAP"]) == {"100", "1000", "all"}
    assert set(metrics["mAP_expected"]) == {"100", "1000", "all"}
    # a 3-epoch net on 80 images: far above chance (≈ 0.1 for 10 classes); semantic centers put sibling classes
    # only d apart, so they score lower than data-independent ones this early in training
    assert metrics["mAP"]["all"] > 0.4
    centers_arr = np.load(out / "centers.npy")
    assert centers_arr.shape == (10, 16) and metrics["center_report"]["meets_d"]
    assert (out / "similarity.npy").exists() == (centers == "shc")
    assert (out / "checkpoints" / "hashnet.pt").exists()
    assert (out / "checkpoints" / "classifier.pt").exists() == (centers == "shc")
    evaluated = [r["epoch"] for r in metrics["history"] if r.get("mAP")]
    assert evaluated == [2, 3]  # every test_map epochs and always the last
    best = metrics["best_on_query"]["mAP"]["all"]
    assert best["value"] == max(r["mAP"]["all"] for r in metrics["history"] if r.get("mAP"))
    assert set(metrics["seconds"]) >= {"stage1", "stage2", "stage3", "eval", "total"}
    for png in ("pr_curve.png", "training.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_similarity_is_semantic(tmp_path):
    run_pipeline(tiny(tmp_path, epochs=1, test_map=1))
    s = np.load(tmp_path / "run" / "similarity.npy")
    assert s.shape == (10, 10) and np.all(np.diag(s) == 1)
    # synthetic: classes 0-2, 3-5, 6-9 share super-class patterns; siblings must look more alike
    siblings = np.mean([s[a, b] for a in range(3) for b in range(3) if a != b])
    strangers = np.mean([s[a, b] for a in range(3) for b in range(6, 10)])
    assert siblings > strangers


def test_multilabel_end_to_end(tmp_path):
    cfg = tiny(tmp_path, data_options=dict(sizes=(8, 3, 8), image_size=16, multi_label=True))
    metrics = run_pipeline(cfg)
    codes = load_codes(tmp_path / "run")
    assert codes["db_labels"].ndim == 2
    report = evaluate(codes["query_codes"], codes["db_codes"], codes["query_labels"], codes["db_labels"],
                      topk=(100, 1000, "all")).to_dict()
    assert metrics["mAP"] == report["mAP"]


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    run_pipeline(tiny(tmp_path, name="straight"))
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny(tmp_path, name="broken"), callback=Recorder(stop_at=("stage3", 2)))
    rec = Recorder()
    run_pipeline(tiny(tmp_path, name="broken", resume=True), callback=rec)
    assert rec.epochs == [("stage3", 3)]  # stage 1 reused, stage 3 continued from its epoch-2 checkpoint
    a, b = load_codes(tmp_path / "straight"), load_codes(tmp_path / "broken")
    for name in a:  # deterministic on CPU, and the resumed run is the uninterrupted one
        np.testing.assert_array_equal(a[name], b[name])
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    broken = json.loads((tmp_path / "broken" / "metrics.json").read_text())
    assert [r["loss"] for r in straight["history"]] == [r["loss"] for r in broken["history"]]


def test_interrupted_without_resume_starts_over(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny(tmp_path, centers="csq"), callback=Recorder(stop_at=("stage3", 1)))
    rec = Recorder()
    run_pipeline(tiny(tmp_path, centers="csq"), callback=rec)
    assert rec.epochs == [("stage3", 1), ("stage3", 2), ("stage3", 3)]


def test_rerun_reuses_and_invalidates(tmp_path):
    first = run_pipeline(tiny(tmp_path))
    rec = Recorder()
    again = run_pipeline(tiny(tmp_path), callback=rec)
    assert rec.epochs == [] and again["mAP"] == first["mAP"]  # everything reused
    rec = Recorder()
    run_pipeline(tiny(tmp_path, lambd=1e-3), callback=rec)
    assert rec.stages() == {"stage3"}  # a stage-3 option: stage 1 and the centers still valid
    rec = Recorder()
    run_pipeline(tiny(tmp_path, classify_epochs=1), callback=rec)
    assert rec.stages() == {"stage1", "stage3"}  # new similarity -> new centers -> new hashing net
    centers = np.load(tmp_path / "run" / "centers.npy")
    np.save(tmp_path / "run" / "centers.npy", -centers)  # tampered with: its content hash no longer matches
    rec = Recorder()
    run_pipeline(tiny(tmp_path, classify_epochs=1), callback=rec)
    # recomputed from the cached S (same centers), so the trained hashing network is still valid
    assert rec.epochs == [] and np.array_equal(np.load(tmp_path / "run" / "centers.npy"), centers)


def test_shared_stage1_cache(tmp_path):
    cache = tmp_path / "cache"
    run_pipeline(tiny(tmp_path, name="a", stage1_cache=str(cache)))
    rec = Recorder()
    run_pipeline(tiny(tmp_path, name="b", bits=32, stage1_cache=str(cache)), callback=rec)
    assert rec.stages() == {"stage3"}  # stage 1 came from the cache
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "similarity.npy"), np.load(tmp_path / "b" / "similarity.npy"))
    assert (tmp_path / "b" / "checkpoints" / "classifier.pt").exists()
    assert len(list(cache.iterdir())) == 1


# ------------------------------------------------------------------------------------------- CLI
def run_cli(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_cli_small_run(tmp_path, capsys):
    out = tmp_path / "cli"
    code, err = run_cli(capsys, "--dataset", "synthetic", "--data-option", "sizes=(8,3,8)", "--data-option",
                        "image_size=16", "--code_length", "16", "--epoch", "1", "--classify_epoch", "1",
                        "--test_map", "1", "--batch-size", "16", "--beta", "1.0", "--topk", "5", "--centers", "csq",
                        "--no-progress", "--out", str(out))
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["mAP"]) == {"5", "100", "1000", "all"} and metrics["bits"] == 16
    # shc-eval on the saved codes reports exactly metrics.json's numbers
    from shc.cli.eval import main as eval_main
    codes = out / "codes"
    assert eval_main(["--query-codes", str(codes / "query_codes.npy"), "--db-codes", str(codes / "db_codes.npy"),
                      "--query-labels", str(codes / "query_labels.npy"), "--db-labels", str(codes / "db_labels.npy"),
                      "--topk", "5", "100", "1000", "all", "--json", str(tmp_path / "eval.json"), "--quiet"]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["mAP"] == metrics["mAP"]


@pytest.mark.parametrize("argv,message", [
    (["--dataset", "fashion-mnist", "--data-root", "/nonexistent/fmnist"], "not found"),
    (["--dataset", "synthetic", "--num_classes", "7"], "num_classes 7"),
    (["--dataset", "synthetic", "--bits", "0"], "bits"),
    (["--dataset", "synthetic", "--topk", "ten"], "topk"),
    (["--dataset", "synthetic", "--pretrained", "/nonexistent.pth"], "not found"),
    (["--dataset", "synthetic", "--backbone", "vgg"], "backbone"),
    (["--dataset", "no-such-set"], "unknown dataset"),
    (["--dataset", "synthetic", "--data-option", "sizes"], "KEY=VALUE"),
    (["--dataset", "synthetic", "--compile", "fast"], "compile must be one of"),
])
def test_cli_bad_inputs(tmp_path, capsys, argv, message):
    code, err = run_cli(capsys, *argv, "--out", str(tmp_path / "bad"), "--no-progress")
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_unknown_choice_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--centers", "foo"])
    assert exc.value.code == 2


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_cuda_requested_without_cuda(tmp_path, capsys):
    code, err = run_cli(capsys, "--dataset", "synthetic", "--gpu", "0", "--out", str(tmp_path / "x"))
    assert code == 2 and "CUDA is not available" in err and err.count("\n") == 1


def test_presets_follow_dataset_aliases():
    assert TrainConfig(dataset="FashionMNIST").resolved().backbone == "compact"
    paper = TrainConfig(dataset="cifar-100-new-seg").resolved()
    assert (paper.backbone, paper.epochs, paper.classify_epochs, paper.lr, paper.test_map) == ("resnet34", 100, 100,
                                                                                              1e-4, 5)
    assert TrainConfig(dataset="fmnist", epochs=3).resolved().epochs == 3  # flags override presets
    assert TrainConfig(dataset="mscoco").resolved().topk == (100, 1000, 5000, "all")  # the COCO papers' mAP@5000
    assert TrainConfig(dataset="fmnist", topk=(50,)).resolved().topk == (50, 100, 1000, "all")
    with pytest.raises(ValueError, match="centers"):
        TrainConfig(centers="random").resolved()


def test_compile_option_trains_through_torch_compile(tmp_path, monkeypatch):
    """--compile MODE: both training stages go through torch.compile(model, mode) and the result is the same run
    (a real compile costs ~40 s per model on this CPU, so torch.compile is replaced by a recording identity)."""
    import torch

    calls = []

    def fake_compile(model, mode=None):
        calls.append(mode)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    plain = run_pipeline(tiny(tmp_path, name="plain", epochs=1, test_map=1))
    assert calls == []
    compiled = run_pipeline(tiny(tmp_path, name="compiled", epochs=1, test_map=1, compile="reduce-overhead"))
    assert calls == ["reduce-overhead", "reduce-overhead"]  # stage 1 and stage 3
    assert compiled["mAP"] == plain["mAP"]
