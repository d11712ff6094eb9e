"""What a new user meets (issue 26): own small images on a CPU, a run used from another directory, the
engine-only install, one list syntax everywhere, shc-encode's output straight into shc-eval, per-epoch history
and replaying a run's configuration."""
import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shc.cli.eval import main as eval_main
from shc.cli.search import main as search_main
from shc.cli.train import main as train_main

REPO = Path(__file__).resolve().parents[1]
CLASSES, PER_CLASS = 3, {"train": 6, "test": 2}

# runs `python -m MODULE ARGS` with the top-level modules named in BLOCKED missing, as after `pip install .`
BLOCKER = """
import runpy, sys
blocked = set(sys.argv[1].split(","))
class Missing:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing)
module = sys.argv[2]
sys.argv = [module] + sys.argv[3:]
runpy.run_module(module, run_name="__main__")
"""


def python(*argv, cwd=None, env=None):
    return subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def small_images(root: Path) -> Path:
    """An ImageFolder tree of 28x28 grey PNGs (the size a new user's digits or icons have), a class a shade."""
    rng = np.random.default_rng(0)
    for split, count in PER_CLASS.items():
        for c in range(CLASSES):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (28, 28)) + 90 * c
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / f"c{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run dir, data dir, stdout): the CPU recipe on small images, trained from the directory above both with
    relative paths, loader settings given as data options."""
    base = tmp_path_factory.mktemp("newuser")
    small_images(base / "data")
    stdout = io.StringIO()
    cwd = os.getcwd()
    os.chdir(base)
    try:
        with contextlib.redirect_stdout(stdout):
            code = train_main(["--dataset", "custom", "--data-root", "data", "--backbone", "compact", "--crop", "28",
                               "--classify_epoch", "1", "--epoch", "3", "--test_map", "2", "--batch-size", "6",
                               "--bits", "16", "--threads", "1", "--image-cache", "off", "--topk", "5", "10,all",
                               "--data-option", "skip_unreadable=True", "--data-option", "workers=1",
                               "--out", "run", "--no-progress"])
    finally:
        os.chdir(cwd)
    assert code == 0
    return base / "run", base / "data", stdout.getvalue()


# ------------------------------------------------------------------------------------- 1. own images on a CPU
def test_crop_alone_sets_the_resize_and_the_settings_are_printed(run):
    out, _, stdout = run
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["data_options"] == {"resize_size": 32, "crop_size": 28}  # 28 * 256 / 224 = 32
    assert config["workers"] == 1 and config["skip_unreadable"] is True  # data options that are loader fields
    assert config["topk"] == [5, 10, 100, 1000, "all"]
    settings = next(line for line in stdout.splitlines() if line.startswith("settings: "))
    assert settings.startswith("settings: compact backbone (--backbone), 28x28 input (resized to 32, --resize/--crop), "
                               "stage 1 1 epochs (--classify_epoch), stage 3 3 epochs (--epoch), batch 6,")
    epochs = [line for line in stdout.splitlines() if line.startswith("stage3 epoch")]
    assert [line.endswith(" left") for line in epochs] == [True, True, False]  # none after the last


def test_resize_and_crop_flags(tmp_path):
    from shc.cli.train import build_parser, config_from_args
    for argv, sizes in ((["--resize", "64"], {"resize_size": 64, "crop_size": 56}),
                        (["--resize", "40", "--crop", "36"], {"resize_size": 40, "crop_size": 36})):
        args = build_parser().parse_args(["--dataset", "custom", *argv])
        assert config_from_args(args).data_options == sizes


def test_most_images_upscaled_more_than_twice_is_noted(tmp_path, capsys):
    from shc.data import load_dataset
    data = small_images(tmp_path / "data")
    load_dataset("custom", str(data), image_cache="off", progress=False)
    assert capsys.readouterr().err == (
        "shc: note: custom: 18 of 18 sampled training images are upscaled more than 2x (shorter side 28 px typically,"
        " resized to 256): this costs time and cache space and adds no detail; consider --resize 28 --crop 24 "
        "(resize_size/crop_size)\n")
    load_dataset("custom", str(data), image_cache="off", progress=False, resize_size=32, crop_size=28)
    assert capsys.readouterr().err == ""


def test_stage_time_estimates(monkeypatch):
    import shc.progress as progress
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    said = []
    clock = progress.StageClock("stage3", epochs=100, start_epoch=2, steps=10, say=said.append)
    now[0] = 6.0
    clock.batch_done()  # the first batch (with the warm-up) is not timed
    now[0] = 8.0
    clock.batch_done()  # 8 s in: too early to say
    now[0] = 14.0
    clock.batch_done()  # 4 s a batch since the first -> 40 s an epoch, 98 epochs left
    clock.batch_done()
    assert said == ["stage3: ~40 s per epoch at the pace of its first 3 batches, ~65 min for 98 epochs"]
    now[0] = 150.0
    assert clock.epoch_done(3) == ", ~4 h left"  # 150 s for epoch 3, 97 to go
    now[0] = 300.0
    assert clock.epoch_done(4) == ", ~4 h left"
    assert clock.epoch_done(100) == ""
    assert [progress.duration(s) for s in (0.2, 89, 91, 5399, 5400, 7200)] == \
        ["~1 s", "~89 s", "~2 min", "~90 min", "~1.5 h", "~2 h"]


# ------------------------------------------------------------------------------------- 2. runs that move
def test_search_works_from_another_directory(run, tmp_path, monkeypatch, capsys):
    out, data, _ = run
    db_paths = json.loads((out / "codes" / "db_paths.json").read_text())
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in db_paths)
    config = json.loads((out / "checkpoints" / "hashnet.json").read_text())
    assert config["dataset"]["data_root"] == str(data) and config["working_dir"] == str(out.parent)
    monkeypatch.chdir(tmp_path)
    assert search_main(["--run", str(out), "--images", str(data / "test"), "--topk", "2", "--json", "r.json",
                        "--no-progress", "--quiet"]) == 0
    results = json.loads(Path("r.json").read_text())
    assert [r["path"] for q in results["queries"] for r in q["results"]] == \
        [db_paths[r["index"]] for q in results["queries"] for r in q["results"]]


def test_an_older_run_with_relative_paths_resolves_them_where_it_was_trained(run, tmp_path, monkeypatch, capsys):
    """Before absolute paths: db_paths.json relative to where shc-train ran, which --out (metrics.json) tells."""
    out, data, _ = run
    old = tmp_path / "old"
    shutil.copytree(out.parent, old, ignore=shutil.ignore_patterns("tensorboard"))
    run_dir = old / "run"
    absolute = json.loads((run_dir / "codes" / "db_paths.json").read_text())
    relative = [os.path.relpath(p, out.parent) for p in absolute]
    assert all(p.startswith("data/") for p in relative)
    (run_dir / "codes" / "db_paths.json").write_text(json.dumps(relative))
    config = json.loads((run_dir / "checkpoints" / "hashnet.json").read_text())
    del config["working_dir"]
    config["dataset"]["data_root"] = "data"
    (run_dir / "checkpoints" / "hashnet.json").write_text(json.dumps(config))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    del metrics["working_dir"]
    metrics["config"]["out"] = "run"
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    from shc.integrity import read_manifest, write_manifest
    manifest = read_manifest(run_dir)  # the edited files are the run's now (readers check them against it)
    write_manifest(run_dir, manifest["model"], manifest["files"])
    monkeypatch.chdir(tmp_path)
    assert search_main(["--run", str(run_dir), "--images", str(old / "data" / "test"), "--topk", "2", "--json",
                        "r.json", "--no-progress", "--quiet"]) == 0
    paths = [r["path"] for q in json.loads(Path("r.json").read_text())["queries"] for r in q["results"]]
    assert paths and all(p.startswith(str(old / "data") + os.sep) for p in paths)


# ------------------------------------------------------------------------------------- 3. the one-line promise
@pytest.mark.parametrize("blocked,module,argv,extra", [
    ("torch", "shc.cli.train", [], "train"),
    ("torch", "shc.cli.compare", [], "train"),
    ("torch", "shc.cli.encode", ["--run", "r", "--images", "i", "--out", "o.npy"], "train"),
    ("torch", "shc.cli.search", ["--run", "r", "--images", "i"], "train"),
    ("torch", "shc.cli.export", ["--run", "r", "--format", "onnx", "--out", "m.onnx"], "train"),
    ("torch", "shc.cli.cache", ["list"], "train"),
    ("numba", "shc.cli.centers", ["--classes", "4", "--bits", "8", "--method", "mds", "--out", "c.npy"], "centers"),
    ("torch", "shc.cli.eval", ["--query-codes", "q.pt", "--db-codes", "q.pt", "--query-labels", "l.npy",
                               "--db-labels", "l.npy"], "train"),
])
def test_a_missing_extra_is_one_line_naming_it(tmp_path, blocked, module, argv, extra):
    import torch
    torch.save(torch.ones(3, 8), tmp_path / "q.pt")
    np.save(tmp_path / "l.npy", np.arange(3))
    done = python("-c", BLOCKER, blocked, module, *argv, cwd=tmp_path)
    prog = "shc-" + module.rsplit(".", 1)[1]
    assert done.returncode == 2 and done.stderr == (
        f'{prog}: error: this needs {blocked}, which is not installed: pip install "shc[{extra}]" (from a checkout: '
        f'pip install ".[{extra}]")\n'), done.stderr


def test_an_unbuilt_source_tree_says_what_to_run(tmp_path):
    shutil.copytree(REPO / "shc", tmp_path / "shc", ignore=shutil.ignore_patterns("_engine*", "__pycache__"))
    site = Path(np.__file__).parents[1]  # numpy's site-packages, without its .pth files (-S): no installed shc
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{site}"}
    message = ("shc's compiled engine (shc._engine) is not built in this source tree: run `pip install -e .` in it "
               "(or `python setup.py build_ext --inplace`)")
    done = python("-S", "-c", "import shc; shc.evaluate", cwd=tmp_path, env=env)
    assert done.returncode == 1 and done.stderr.splitlines()[-1] == f"ModuleNotFoundError: {message}"
    done = python("-S", "-m", "shc.cli.eval", "--query-codes", "a", "--db-codes", "b", "--query-labels", "c",
                  "--db-labels", "d", cwd=tmp_path, env=env)
    assert done.returncode == 2 and done.stderr == f"shc-eval: error: {message}\n"


def test_loader_settings_as_data_options():
    from shc.train import TrainConfig
    cfg = TrainConfig(dataset="custom", data_options={"workers": 1, "skip_unreadable": True, "crop_size": 28,
                                                      "resize_size": 32}).resolved()
    assert (cfg.workers, cfg.skip_unreadable, cfg.data_options) == (1, True, {"crop_size": 28, "resize_size": 32})
    assert TrainConfig(workers=1, data_options={"workers": 1}).resolved().workers == 1  # the same, both ways
    with pytest.raises(ValueError, match="workers is given twice, as 2 and as data option workers=1"):
        TrainConfig(workers=2, data_options={"workers": 1}).resolved()


def test_shc_cache_builds_what_shc_train_reads(tmp_path, capsys):
    """The same flags (--resize/--crop, loader settings as data options) in shc-cache build as in shc-train."""
    from shc.cli.cache import main as cache_main
    from shc.data.image_cache import list_stores
    data = small_images(tmp_path / "data")
    assert cache_main(["build", "--dataset", "custom", "--data-root", str(data), "--crop", "28", "--data-option",
                       "workers=1", "--data-option", "skip_unreadable=True", "--image-cache",
                       str(tmp_path / "cache")]) == 0
    assert [(len(s), s.resize_size) for s in list_stores(tmp_path / "cache")] == [(24, 32)]
    code = cache_main(["build", "--dataset", "custom", "--data-root", str(data), "--workers", "2", "--data-option",
                       "workers=1", "--image-cache", str(tmp_path / "cache")])
    assert code == 2 and capsys.readouterr().err.endswith(
        "shc-cache: error: workers is given twice, as 2 and as data option workers=1\n")


def test_a_failed_argument_check_leaves_no_directory(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    code = train_main(["--dataset", "synthetic", "--num_classes", "99", "--out", str(out), "--no-progress"])
    assert code == 2 and "does not match" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------- 4. consistency
def test_topk_lists_either_way_in_shc_eval(tmp_path, capsys):
    rng = np.random.default_rng(1)
    files = {"q": rng.choice([-1, 1], (20, 16)), "d": rng.choice([-1, 1], (60, 16)),
             "ql": rng.integers(0, 3, 20), "dl": rng.integers(0, 3, 60)}
    for name, array in files.items():
        np.save(tmp_path / f"{name}.npy", array)
    common = ["--query-codes", tmp_path / "q.npy", "--db-codes", tmp_path / "d.npy", "--query-labels",
              tmp_path / "ql.npy", "--db-labels", tmp_path / "dl.npy", "--quiet", "--json"]
    reports = []
    for topk in (["5", "10", "all"], ["5,10,all"], ["5,10", "all"]):
        assert eval_main([str(a) for a in common] + [str(tmp_path / "r.json"), "--topk", *topk]) == 0
        reports.append(json.loads((tmp_path / "r.json").read_text())["mAP"])
    assert reports[0] == reports[1] == reports[2] and list(reports[0]) == ["5", "10", "all"]


def test_encoded_codes_and_labels_go_straight_into_shc_eval(run, tmp_path, capsys):
    """shc-encode --packed of the query images: FILE_labels.npy holds the run's label ids, and shc-eval takes the
    bit width from the sidecar; the report equals the one of the run's own query codes."""
    from shc.cli.encode import main as encode_main
    out, data, _ = run
    q = tmp_path / "q.npy"
    assert encode_main(["--run", str(out), "--images", str(data / "test"), "--out", str(q), "--packed",
                        "--workers", "0", "--no-progress"]) == 0
    assert capsys.readouterr().out.endswith(f"label ids in {tmp_path / 'q_labels.npy'} (for shc-eval)\n")
    assert np.array_equal(np.load(tmp_path / "q_labels.npy"), np.load(out / "codes" / "query_labels.npy"))
    db = ["--db-codes", str(out / "codes" / "db_codes.npy"), "--db-labels", str(out / "codes" / "db_labels.npy")]
    assert eval_main(["--query-codes", str(q), "--query-labels", str(tmp_path / "q_labels.npy"), *db, "--quiet",
                      "--json", str(tmp_path / "a.json")]) == 0
    assert eval_main(["--query-codes", str(out / "codes" / "query_codes.npy"), "--query-labels",
                      str(out / "codes" / "query_labels.npy"), *db, "--quiet", "--json", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["bits"] == 16 and a["mAP"] == b["mAP"]


def test_the_onnx_snippet_of_the_docs_is_right_for_a_colour_run_and_a_grey_image(run, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import shc
    from shc.cli.export import main as export_main
    out, data, _ = run
    doc = (REPO / "docs" / "inference.md").read_text()
    snippet = next(block.split("\n", 1)[1] for block in doc.split("```")[1::2]
                   if block.startswith("python") and "onnxruntime.InferenceSession" in block)
    grey = tmp_path / "grey.png"  # a 1-channel image for a model of 3 channels
    Image.open(data / "test" / "c1" / "0.png").convert("L").save(grey)
    monkeypatch.chdir(tmp_path)
    for fmt, name in (("onnx", "model.onnx"), ("torch", "model.pt2")):
        assert export_main(["--run", str(out), "--format", fmt, "--out", name]) == 0
    scope = {}
    exec(snippet.replace("runs/fmnist-32", str(out)).replace("queries/3/0000.png", str(grey)), scope)
    expected = shc.load_run(out, device="cpu").encode([str(grey)])
    assert np.array_equal(scope["codes"], expected) and scope["pixels"].shape == (1, 3, 28, 28)


# ------------------------------------------------------------------------------------- 6. history and replay
def test_history_csv_holds_every_epoch(run):
    out, _, _ = run
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    expected = [("stage1", r) for r in metrics["stage1"]["history"]] + [("stage3", r) for r in metrics["history"]]
    assert [(r["stage"], int(r["epoch"])) for r in rows] == [(s, r["epoch"]) for s, r in expected]
    for row, (_, record) in zip(rows, expected):
        assert float(row["loss"]) == record["loss"] and float(row["lr"]) == record["lr"]
        assert float(row["seconds"]) == record["seconds"]
        mAP = record.get("mAP", {})
        assert {k: float(row[f"mAP@{k}"]) for k in mAP} == mAP and all(
            row[f"mAP@{k}"] == "" for k in ("5", "10", "all") if not mAP)


def test_history_rows_are_written_as_training_goes(tmp_path):
    from shc.train import TrainConfig, run_pipeline
    seen = []
    out = tmp_path / "run"

    def look(stage, record):
        with open(out / "history.csv", newline="") as f:
            seen.append([(r["stage"], r["epoch"]) for r in csv.DictReader(f)])
    run_pipeline(TrainConfig(dataset="synthetic", centers="csq", bits=8, epochs=2, threads=1, progress=False,
                             out=str(out)), callback=look)
    assert seen == [[("stage3", "1")], [("stage3", "1"), ("stage3", "2")]]


def test_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from shc.train import TrainConfig, run_pipeline
    out = tmp_path / "run"
    metrics = run_pipeline(TrainConfig(dataset="synthetic", centers="csq", bits=8, epochs=2, test_map=1, threads=1,
                                       progress=False, tensorboard=True, out=str(out)))
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("stage3/loss")] == pytest.approx([r["loss"] for r in metrics["history"]])
    assert [e.step for e in events.Scalars("stage3/mAP@all")] == [1, 2]


def test_tensorboard_missing_is_one_line(tmp_path):
    done = python("-c", BLOCKER, "tensorboard", "shc.cli.train", "--dataset", "synthetic", "--tensorboard",
                  "--out", tmp_path / "run", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "pip install" in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()


def test_config_replays_a_run_with_flags_overriding(run, tmp_path, monkeypatch, capsys):
    import dataclasses
    from shc.cli.train import build_parser, config_from_args
    from shc.train import TrainConfig
    out, data, _ = run
    monkeypatch.chdir(tmp_path)  # the recorded relative paths are resolved where the run was trained
    recorded = json.loads((out / "metrics.json").read_text())["config"]
    for source in (out, out / "metrics.json"):
        argv = ["--config", str(source), "--bits", "32", "--data-option", "crop_size=24"]
        cfg = config_from_args(build_parser().parse_args(argv), argv)
        changed = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)
                   if _jsonish(getattr(cfg, f.name)) != recorded[f.name]}
        assert changed == {"bits": 32, "data_root": str(data), "out": str(out),
                           "data_options": {"resize_size": 32, "crop_size": 24}}
    for argv, check in ((["--lambd", "0.01"], lambda c: c.method_options["lambd"] == 0.01),  # not the recorded one
                        (["--method", "csq"], lambda c: (c.method, c.centers) == ("csq", "csq")),
                        (["--centers", "mds"], lambda c: (c.method, c.centers) == ("mds", "mds"))):
        argv = ["--config", str(out), *argv]
        assert check(config_from_args(build_parser().parse_args(argv), argv).resolved())
    code = train_main(["--config", str(tmp_path / "nowhere")])
    assert code == 2 and capsys.readouterr().err == f"shc-train: error: --config {tmp_path / 'nowhere'}: no such file\n"


def _jsonish(value):
    return json.loads(json.dumps(value))


# ------------------------------------------------------------------------------------- 5. install as a library
def test_extras_declare_ranges_and_only_setup_pins_torch():
    """pip keeps a research environment's torch (a CPU-only build stays one) when it fits the range."""
    import tomllib
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not [req for reqs in extras.values() for req in reqs if "==" in req]
    assert "torch>=2.6,<3" in extras["train"] and extras["centers"] == ["numba>=0.59"]
    assert "torch==2.14.1 torchvision==0.29.1" in (REPO / "scripts" / "setup.sh").read_text()
