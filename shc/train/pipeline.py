"""The three SHC stages end to end: ``run_pipeline(TrainConfig(...)) -> metrics dict`` (metrics.json).

Stage 1 (classifier -> similarity S; skipped for --centers csq|mds), stage 2 (hash centers), stage 3
(hashing network, evaluated every ``test_map`` epochs). Every stage's artifact is fingerprinted with all it
depends on, so a rerun reuses what matches and recomputes what does not; ``resume`` continues an interrupted
stage from its last per-epoch checkpoint. Rank 0 writes; every rank gets the same S and centers (``Dist``).

Under torchrun / ``shc-train --nproc N`` (WORLD_SIZE > 1) the same call joins the process group, trains stages 1
and 3 with DistributedDataParallel on rank shards of every global batch, and encodes and evaluates sharded.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from shc.integrity import retire_manifest, run_lock, write_manifest
from shc.train.artifacts import (DamagedCheckpoint, array_digest, atomic_write, ensure_writable_dir, fingerprint,
                                 load_array_artifact, save_array_artifact, write_array, write_json)
from shc.train.dist import Dist
from shc.train.evaluation import Evaluator, best_on_query
from shc.train.history import EpochLog
from shc.train.launch import DEFAULT_TIMEOUT_S, default_threads, process_group
from shc.train.loop import LoopOptions, checkpoint_state, prepare_model, say

# The longest code shc-train makes: 8x the paper's longest (128). Stage 2 grows steeply with it (SHC centers for
# 10 classes: 4 s at 1024 bits, 20 s at 2048, 70 s at 4096 on a 2-core CPU), with no progress to show.
MAX_BITS = 1024

# Defaults per dataset: the paper's settings for its datasets; a CPU-sized run for Fashion-MNIST.
PRESETS: dict[str, dict[str, Any]] = {
    "fashion-mnist": dict(backbone="compact", epochs=30, classify_epochs=15, lr=1e-3, batch_size=64, test_map=10),
    "synthetic": dict(backbone="compact", epochs=4, classify_epochs=3, lr=1e-3, batch_size=32, test_map=2),
    "paper": dict(backbone="resnet34", epochs=100, classify_epochs=100, lr=1e-4, batch_size=64, test_map=5),
}


# The stages' outputs a finished run's manifest lists (with the codes, metrics.json and the figures)
STAGE1_FILES = ("similarity.npy", "similarity.npy.fingerprint", "stage1.json", "checkpoints/classifier.pt",
                "checkpoints/classifier.pt.sha256")
STAGE2_FILES = ("centers.npy", "centers.npy.fingerprint")
STAGE3_FILES = ("checkpoints/hashnet.pt", "checkpoints/hashnet.pt.sha256", "checkpoints/hashnet.json")


# Cut-offs a dataset's papers report beside 100, 1000 and all (MS-COCO: mAP@5000), always computed for it.
PAPER_CUTOFFS: dict[str, tuple] = {"coco": (5000,)}


@dataclass
class TrainConfig:
    """Everything one run depends on. ``None`` fields take the dataset's preset (see PRESETS)."""

    dataset: str = "fashion-mnist"
    data_root: str | None = None
    data_options: dict = field(default_factory=dict)
    num_classes: int | None = None          # checked against the data when given
    bits: int = 32
    method: str | None = None               # a name in shc.methods.REGISTRY (None: centers, else "shc")
    method_options: dict = field(default_factory=dict)  # the method's hyper-parameters (its defaults for the rest)
    centers: str | None = None              # the centre methods' older spelling of method (shc, mds, csq)
    backbone: str | None = None
    pretrained: str | None = None
    epochs: int | None = None
    classify_epochs: int | None = None
    lr: float | None = None
    weight_decay: float = 1e-5
    final_lr: float = 1e-7
    batch_size: int | None = None           # the global batch: split evenly across distributed processes
    eval_batch_size: int = 512
    test_map: int | None = None
    lambd: float = 1e-4
    topk: tuple = (100, 1000, "all")
    seed: int = 0
    workers: int | None = None               # data-loading workers of file datasets (None: the cores available)
    image_cache: str | None = None           # decoded-image cache dir of file datasets (None: default; "off")
    skip_unreadable: bool = False            # leave corrupt / missing images out instead of failing
    threads: int | None = None               # torch CPU threads per process (None: default_threads())
    device: str = "auto"
    similarity_mask: str = "gt"
    similarity_multilabel: str = "negatives"
    multilabel_centers: str = "csq"
    out: str = "runs/shc"
    stage1_cache: str | None = None          # shared dir: several runs reuse one stage-1 result
    resume: bool = False
    progress: bool = True
    compile: str = "off"                     # torch.compile mode of the training step (shc.train.loop.COMPILE_MODES)
    dist_timeout: float = DEFAULT_TIMEOUT_S  # seconds before a collective waiting on a lost worker fails
    tensorboard: bool = False                # also write TensorBoard event files (needs the tensorboard package)

    def resolved(self) -> "TrainConfig":
        """A copy with presets filled in and every option checked (ValueError on bad input)."""
        from shc.data import canonical_name
        try:
            name = canonical_name(self.dataset)
        except (TypeError, ValueError):
            name = self.dataset  # load_dataset reports it with the list of choices
        preset = PRESETS.get(name, PRESETS["paper"])
        cfg = dataclasses.replace(self, **{k: v for k, v in preset.items() if getattr(self, k) is None})
        cfg = _loader_options_as_fields(cfg)
        cfg.topk = normalize_topk((*cfg.topk, *PAPER_CUTOFFS.get(name, ())))
        cfg.method, cfg.centers, cfg.method_options = resolve_method(cfg)
        if cfg.centers is not None:  # the record shows the values trained with, wherever they were given
            cfg.lambd, cfg.multilabel_centers = cfg.method_options["lambd"], cfg.method_options["multilabel"]
        _check_config(cfg)
        return cfg


def _loader_options_as_fields(cfg: TrainConfig) -> TrainConfig:
    """``data_options`` that are the loader's own fields (workers, skip_unreadable, image_cache, progress) moved
    into them: one setting, given either way (two different values: ValueError)."""
    from shc.data.registry import LOADER_OPTIONS, loader_settings

    if not isinstance(cfg.data_options, dict):
        raise ValueError(f"data_options must be a dict, got {type(cfg.data_options).__name__}")
    settings, rest = loader_settings(cfg.data_options, **{k: getattr(cfg, k) for k in LOADER_OPTIONS})
    return dataclasses.replace(cfg, data_options=rest, **settings)


def resolve_method(cfg: TrainConfig) -> tuple[str, str | None, dict]:
    """(method, centers, every method option resolved). ``centers`` is the method's name for the centre methods
    (None otherwise); ``lambd`` and ``multilabel_centers`` are the centre methods' lambd / multilabel options
    unless method_options sets them."""
    from shc.methods import CENTER_METHODS, check_method_name, get_method
    from shc.methods.base import resolve_options

    if cfg.method is not None and cfg.centers is not None and cfg.method != cfg.centers:
        raise ValueError(f"method {cfg.method!r} and centers {cfg.centers!r} disagree (centers is the centre "
                         f"methods' older name for method: give one)")
    if cfg.centers is not None and cfg.centers not in CENTER_METHODS:
        raise ValueError(f"centers must be one of {', '.join(CENTER_METHODS)}, got {cfg.centers!r} (other "
                         f"methods: method=NAME, --method NAME)")
    name = check_method_name(cfg.method or cfg.centers or "shc")
    method = get_method(name)
    given = dict(cfg.method_options or {})
    if name in CENTER_METHODS:
        given.setdefault("lambd", cfg.lambd)
        given.setdefault("multilabel", cfg.multilabel_centers)
    return name, name if method.uses_centers else None, resolve_options(method, given)


def normalize_topk(topk) -> tuple:
    """Sorted unique cut-offs, ints then "all": always including 100, 1000 and "all"."""
    values = set()
    for k in (100, 1000, "all", *topk):
        if isinstance(k, str) and k.strip().lower() == "all":
            values.add("all")
            continue
        try:
            k_int = int(k)
        except (TypeError, ValueError):
            raise ValueError(f"topk values must be positive integers or 'all', got {k!r}") from None
        if k_int < 1 or str(k_int) != str(k).strip():
            raise ValueError(f"topk values must be positive integers or 'all', got {k!r}")
        values.add(k_int)
    ints = sorted(v for v in values if v != "all")
    return (*ints, "all")


def _check_config(cfg: TrainConfig) -> None:
    from shc.centers import check_seed
    from shc.codes import engine_threads
    from shc.data.image_cache import check_workers
    from shc.methods import get_method
    from shc.models import list_backbones, min_input_size
    from shc.similarity import MASKS, MULTILABEL_RULES
    from shc.train.loop import check_compile_mode
    from shc.train.stage3 import MULTILABEL_CENTER_RULES

    def positive_int(name):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")

    for name in ("bits", "epochs", "classify_epochs", "batch_size", "eval_batch_size", "test_map"):
        positive_int(name)
    if cfg.bits > MAX_BITS:
        raise ValueError(f"bits must be at most {MAX_BITS} (the paper uses 16 to 128; stage 2's cost grows "
                         f"steeply with the code length), got {cfg.bits}")
    if cfg.backbone not in list_backbones():
        raise ValueError(f"unknown backbone {cfg.backbone!r}; choose one of {', '.join(list_backbones())}")
    usable = get_method(cfg.method).backbones
    if usable is not None and cfg.backbone not in usable:
        raise ValueError(f"method {cfg.method} cannot use the {cfg.backbone} backbone; it takes "
                         f"{', '.join(usable)} (--backbone)")
    for name in ("lr", "lambd", "weight_decay", "final_lr"):
        v = getattr(cfg, name)
        if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0 or (name == "lr" and v == 0):
            rule = "a finite number > 0" if name == "lr" else "a finite number >= 0"
            raise ValueError(f"{name} must be {rule}, got {v!r}")
    check_compile_mode(cfg.compile)
    if cfg.similarity_mask not in MASKS:
        raise ValueError(f"similarity mask must be one of {MASKS}, got {cfg.similarity_mask!r}")
    if cfg.similarity_multilabel not in MULTILABEL_RULES:
        raise ValueError(f"similarity multi-label rule must be one of {MULTILABEL_RULES}")
    if cfg.multilabel_centers not in MULTILABEL_CENTER_RULES:
        raise ValueError(f"multi-label center rule must be one of {MULTILABEL_CENTER_RULES}")
    if cfg.threads is not None:
        engine_threads(cfg.threads, "threads")  # 1 .. MAX_THREADS, as every thread count of the package
    check_seed(cfg.seed)
    size = cfg.data_options.get("crop_size", cfg.data_options.get("image_size"))
    if isinstance(size, int) and not isinstance(size, bool) and 0 < size < min_input_size(cfg.backbone):
        raise ValueError(f"crop_size {size} (and resize_size) too small for the {cfg.backbone} backbone, which halves "
                         f"its input three times: use at least {min_input_size(cfg.backbone)} px")
    if isinstance(cfg.dist_timeout, bool) or not isinstance(cfg.dist_timeout, (int, float)) \
            or not cfg.dist_timeout > 0 or not np.isfinite(cfg.dist_timeout):
        raise ValueError(f"dist_timeout must be a positive number of seconds, got {cfg.dist_timeout!r}")
    check_workers(cfg.workers)
    if cfg.pretrained and not os.path.isfile(cfg.pretrained):
        raise ValueError(f"pretrained weights file not found: {cfg.pretrained}")
    if cfg.tensorboard:
        from shc.train.history import check_tensorboard
        check_tensorboard()
    resolve_device(cfg.device)


def check_world_size(cfg: TrainConfig, world_size: int) -> None:
    """The global batch is split evenly: every process takes batch_size / world_size of it."""
    if cfg.batch_size % world_size:
        raise ValueError(f"batch size {cfg.batch_size} (the global batch) must be divisible by the "
                         f"{world_size} processes")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} GPU(s) visible")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {name!r} (use auto, cpu, cuda or cuda:N)")
    return device


# --------------------------------------------------------------------------------------------- pipeline
def run_pipeline(cfg: TrainConfig, *, dist: Dist | None = None,
                 callback: Callable[[str, dict], None] | None = None) -> dict:
    """Run (or reuse) the three stages into ``cfg.out`` and return the metrics.json content.

    callback(stage_name, epoch_record) is called after each epoch's checkpoint (progress hooks, tests).
    Under torchrun / ``shc-train --nproc`` every rank calls this; rank 0 returns the metrics, the others {}.
    """
    cfg = cfg.resolved()
    with process_group(resolve_device(cfg.device), cfg.dist_timeout) as (group, device):
        dist = dist or group
        check_world_size(cfg, dist.world_size)
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.threads or default_threads(dist.local_world_size))
        try:
            return _run(cfg, dist, device, callback)
        finally:
            torch.set_num_threads(threads)


def _run(cfg: TrainConfig, dist: Dist, device: torch.device, callback) -> dict:
    """The run under its directory's lock (rank 0 holds it)."""
    if dist.is_main:
        _check_writable(cfg)
    with run_lock(cfg.out) if dist.is_main else contextlib.nullcontext():
        return _run_stages(cfg, dist, device, callback)


def _run_stages(cfg: TrainConfig, dist: Dist, device: torch.device, callback) -> dict:
    """The stages in order; each returns what the next needs and times itself into ``seconds``."""
    from shc.methods import get_method

    out = Path(cfg.out)
    seconds: dict[str, float] = {}
    with _timed(seconds, "data"):
        dataset = _load_data(cfg, dist)
    if dist.is_main:  # the inputs loaded and checked: only now may the run change what a finished run left
        _retire_outputs(out)
    epoch_log = EpochLog(out, tensorboard=cfg.tensorboard) if dist.is_main else None  # history.csv as it goes
    job = _Job(cfg, dist, device, dataset, _callbacks(epoch_log and epoch_log.log, callback))
    job.log(f"data: {job.dataset!r}")
    method = get_method(cfg.method)
    job.log(settings_line(cfg, dataset, device, stage1=method.uses_similarity))
    with _timed(seconds, "stage1"):
        similarity, stage1_info = stage1_similarity(job) if method.uses_similarity else (None, {})
    with _timed(seconds, "stage2"):
        centers, center_info, fp2 = stage2_centers(job, similarity) if method.uses_centers else (None, {}, None)
    with _timed(seconds, "stage3"):
        evaluator, history, done_before, fp3 = stage3_hashing(job, centers)
    # the evaluations of the epochs trained in this call: the part of seconds["stage3"] spent evaluating
    seconds["stage3_eval"] = sum(r.get("eval_seconds", 0.0) for r in history[done_before:])
    with _timed(seconds, "eval"):
        codes, final = evaluator.final()
    seconds["total"] = sum(v for k, v in seconds.items() if k != "stage3_eval")
    if not dist.is_main:
        return {}
    metrics = {
        "dataset": job.dataset.name, "bits": cfg.bits, "method": cfg.method, "method_options": cfg.method_options,
        "centers": cfg.centers, "backbone": cfg.backbone,
        "seed": cfg.seed, "world_size": dist.world_size, "epochs": cfg.epochs,
        "classify_epochs": cfg.classify_epochs if similarity is not None else 0,
        "mAP": final["mAP"], "mAP_expected": final["mAP_expected"],
        "best_on_query": best_on_query(history), "retrieval": final["retrieval"],
        "stage1": {k: v for k, v in stage1_info.items() if k != "fingerprint"},
        "center_report": center_info, "seconds": seconds, "history": history,
        "fingerprints": {"stage2": fp2, "stage3": fp3},
        "config": dataclasses.asdict(cfg), "working_dir": os.getcwd(),  # what the config's relative paths mean
    }
    stage_files = [*(STAGE1_FILES if similarity is not None else ()), *(STAGE2_FILES if centers is not None else ()),
                   *STAGE3_FILES]  # not what an earlier run with another method left
    epoch_log.finish({"stage1": metrics["stage1"].get("history", []), "stage3": history})
    write_outputs(job, metrics, codes, final["pr_curves"], stage_files)
    job.log(f"final ({cfg.method}, {cfg.bits} bits): " + " ".join(
        f"mAP@{k} {v:.4f}" for k, v in final["mAP"].items()) + f"  -> {out / 'metrics.json'}")
    return metrics


def settings_line(cfg: TrainConfig, dataset, device: torch.device, *, stage1: bool) -> str:
    """What the run will do, in one line at its start: what takes the time, and the flags that change it."""
    classifier = f"stage 1 {cfg.classify_epochs} epochs (--classify_epoch), " if stage1 else ""
    size = dataset.image_size
    resize = getattr(dataset.train, "resize_size", None)
    resized = f" (resized to {resize}, --resize/--crop)" if resize else ""
    return (f"settings: {cfg.backbone} backbone (--backbone), {size}x{size} input{resized}, {classifier}stage 3 "
            f"{cfg.epochs} epochs (--epoch), batch {cfg.batch_size}, lr {cfg.lr:g}, {cfg.bits} bits, method "
            f"{cfg.method}, on {device}"
            + (f" with {torch.get_num_threads()} thread(s)" if device.type == "cpu" else ""))


def _callbacks(*callbacks):
    """One per-epoch callback calling each of ``callbacks`` that is not None."""
    chosen = [c for c in callbacks if c is not None]
    return (lambda stage, record: [c(stage, record) for c in chosen]) if chosen else None


@contextlib.contextmanager
def _timed(seconds: dict, name: str):
    start = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - start


def _check_writable(cfg: TrainConfig) -> None:
    """Rank 0, before any work: every output directory writable (an unwritable one fails now, not after a stage
    of training)."""
    for directory in (cfg.out, cfg.stage1_cache):
        if directory:
            ensure_writable_dir(directory)


def _retire_outputs(out: Path) -> None:
    """Before the run changes anything in ``out``: readers refuse it (no manifest) until write_outputs is done,
    and no earlier run's metrics.json sits next to this run's artifacts."""
    retire_manifest(out)
    (out / "metrics.json").unlink(missing_ok=True)


def _load_data(cfg: TrainConfig, dist: Dist):
    """The dataset, checked against --num_classes, the backbone's input and the code length (rank 0 shows the
    image cache's progress)."""
    from shc.data import load_dataset
    from shc.models import check_backbone_input

    dataset = load_dataset(cfg.dataset, data_root=cfg.data_root, seed=cfg.seed, image_cache=cfg.image_cache,
                           workers=cfg.workers, skip_unreadable=cfg.skip_unreadable,
                           progress=cfg.progress and dist.is_main, **cfg.data_options)
    check_backbone_input(cfg.backbone, dataset.channels, dataset.image_size)
    if cfg.num_classes is not None and cfg.num_classes != dataset.num_classes:
        raise ValueError(f"--num_classes {cfg.num_classes} does not match {dataset.name}, "
                         f"which has {dataset.num_classes} classes")
    if 2 ** min(cfg.bits, 62) < dataset.num_classes:
        raise ValueError(f"{cfg.bits} bits cannot give {dataset.num_classes} distinct centers")
    if cfg.batch_size > len(dataset.train):
        raise ValueError(f"batch size {cfg.batch_size} is larger than the training split ({len(dataset.train)} "
                         f"images of {dataset.name}): lower --batch-size")
    return dataset


@dataclass
class _Job:
    """What every stage of one run shares: the options, the ranks, the data, and how models are made."""

    cfg: TrainConfig
    dist: Dist
    device: torch.device
    dataset: Any
    callback: Callable | None

    def __post_init__(self):
        from shc.models import find_pretrained_weights

        cfg, dataset = self.cfg, self.dataset
        self.out = Path(cfg.out)
        self.log = say if self.dist.is_main else (lambda *_: None)  # only rank 0 talks
        self.data_id = {"name": dataset.name, "seed": cfg.seed, "options": cfg.data_options,
                        "content": dataset.content_id,  # the images themselves, wherever they are read from
                        "train_labels": array_digest(dataset.train.labels), "num_classes": dataset.num_classes,
                        **({"skipped": list(dataset.skipped)} if dataset.skipped else {})}
        weights = cfg.pretrained or (find_pretrained_weights(cfg.backbone) if cfg.backbone != "compact"
                                     else None)
        self.model_id = {"backbone": cfg.backbone, "pretrained": _file_id(weights), "lr": cfg.lr,
                         "batch_size": cfg.batch_size, "weight_decay": cfg.weight_decay, "final_lr": cfg.final_lr}

    def build(self, make_model: Callable[[torch.nn.Module], torch.nn.Module],
              feature_map: bool = False) -> torch.nn.Module:
        """``make_model(backbone)`` on a fresh backbone, on the device, with the same initialisation whatever
        ran before."""
        from shc.models import create_backbone, materialize

        torch.manual_seed(self.cfg.seed)
        data = self.dataset
        backbone = create_backbone(self.cfg.backbone, in_channels=data.channels,
                                   small_input=data.image_size <= 64, pretrained=self.cfg.pretrained,
                                   feature_map=feature_map)
        model = materialize(make_model(backbone), (data.channels, data.image_size, data.image_size))
        return prepare_model(model, self.device)

    def method(self, centers: np.ndarray | None):
        """The run's training method (shc.methods) for this data, device and ranks."""
        from shc.methods import MethodContext, create_method

        cfg, dataset = self.cfg, self.dataset
        labels = dataset.train.labels
        counts = (labels > 0).sum(0) if labels.ndim == 2 else np.bincount(labels, minlength=dataset.num_classes)
        ctx = MethodContext(bits=cfg.bits, num_classes=dataset.num_classes, multi_label=dataset.multi_label,
                            seed=cfg.seed, train_size=len(dataset.train), class_counts=np.asarray(counts),
                            centers=centers, device=self.device, dist=self.dist)
        return create_method(cfg.method, ctx, cfg.method_options)

    def loop_options(self, epochs: int, lr_scale: float = 1.0) -> LoopOptions:
        """The epoch loop's settings; ``lr_scale``: the method's learning rate relative to the run's."""
        cfg = self.cfg
        return LoopOptions(epochs=epochs, lr=cfg.lr * lr_scale, batch_size=cfg.batch_size,
                           weight_decay=cfg.weight_decay, final_lr=cfg.final_lr, seed=cfg.seed, workers=cfg.workers, device=self.device,
                           progress=cfg.progress, compile=cfg.compile)


def stage1_similarity(job: _Job) -> tuple[np.ndarray, dict]:
    """Stage 1: the class similarity S (reused when fingerprinted, else from a trained classifier) and
    stage1.json's content; with --stage1-cache the run dir gets its own copy."""
    cfg, dist, out = job.cfg, job.dist, job.out
    fp1 = fingerprint(stage=1, data=job.data_id, model=job.model_id, epochs=cfg.classify_epochs,
                      mask=cfg.similarity_mask, multilabel=cfg.similarity_multilabel)
    stage1_dir = Path(cfg.stage1_cache) / f"stage1-{fp1[:16]}" if cfg.stage1_cache else out
    # rank 0 decides what is reused; the others follow (their filesystem need not hold the artifacts)
    similarity = dist.from_main(load_array_artifact(stage1_dir / "similarity.npy", fp1) if dist.is_main else None)
    if similarity is not None:
        job.log(f"stage 1: reusing {stage1_dir / 'similarity.npy'} (fingerprint matches)")
    else:
        similarity = _train_similarity(job, stage1_dir, fp1)
    similarity = dist.from_main(similarity)  # bit-identical S (hence centers) on every rank
    if dist.is_main and stage1_dir != out:  # a shared cache: the run dir still gets its own copy
        save_array_artifact(out / "similarity.npy", similarity, fp1)
        for name in ("stage1.json", "checkpoints/classifier.pt", "checkpoints/classifier.pt.sha256"):
            if (stage1_dir / name).is_file():
                atomic_write(out / name, lambda tmp, src=stage1_dir / name: shutil.copyfile(src, tmp))
            else:  # not in the cache (an older shc's, an interrupted write): no earlier run's copy either
                (out / name).unlink(missing_ok=True)
    info = _read_json(out / "stage1.json") if dist.is_main else {}
    return similarity, info if info.get("fingerprint") == fp1 else {}  # else: a write interrupted after S


def _train_similarity(job: _Job, stage1_dir: Path, fp1: str) -> np.ndarray | None:
    """Train (or reuse, or resume) the classifier, then S from its logits; rank 0 writes S and stage1.json."""
    from shc.models import Classifier
    from shc.train import stage1

    cfg, dist, dataset = job.cfg, job.dist, job.dataset
    classifier = job.build(lambda backbone: Classifier(backbone, dataset.num_classes))
    ckpt = stage1_dir / "checkpoints" / "classifier.pt"
    history, _ = _train_or_reuse(
        classifier, ckpt, fp1, dist, cfg.resume, job.log, "stage 1", "classifier",
        lambda resume_state: stage1.train_classifier(
            classifier, dataset, job.loop_options(cfg.classify_epochs), name="stage1", checkpoint_path=ckpt,
            fp=fp1, resume_state=resume_state, dist=dist, callback=job.callback))
    similarity = stage1.similarity_from_classifier(
        classifier, dataset.train, batch_size=cfg.eval_batch_size, device=job.device, dist=dist,
        mask=cfg.similarity_mask, multilabel=cfg.similarity_multilabel, progress=cfg.progress)
    accuracy = stage1.classifier_accuracy(classifier, dataset.query, batch_size=cfg.eval_batch_size,
                                          device=job.device, dist=dist)
    if dist.is_main:
        save_array_artifact(stage1_dir / "similarity.npy", similarity, fp1)
        write_json(stage1_dir / "stage1.json", {"fingerprint": fp1, "history": history, "query_accuracy": accuracy})
    return similarity


def stage2_centers(job: _Job, similarity: np.ndarray | None) -> tuple[np.ndarray, dict, str]:
    """Stage 2: the hash centers (reused when fingerprinted), the same on every rank; their report and
    fingerprint."""
    from shc.centers import center_report, kernels_compiled

    cfg, dist, classes = job.cfg, job.dist, job.dataset.num_classes
    method = job.method(centers=None)
    fp2 = fingerprint(stage=2, method=cfg.centers, bits=cfg.bits, classes=classes, seed=cfg.seed,
                      similarity=None if similarity is None else array_digest(similarity),
                      hyper=_center_hyper(cfg.centers, method.center_hyper(method.opts)))
    centers = load_array_artifact(job.out / "centers.npy", fp2) if dist.is_main else None
    if dist.is_main and centers is None:
        if cfg.centers != "csq" and not kernels_compiled():
            job.log("stage 2: compiling center kernels, once per install (~15 s)")
        centers = method.make_centers(similarity)
        save_array_artifact(job.out / "centers.npy", centers, fp2)
    centers = dist.from_main(centers)  # every rank trains towards the very same centers
    report = center_report(centers, similarity=similarity) if dist.is_main else {}
    job.log(f"stage 2: {cfg.centers} centers {centers.shape[0]}×{centers.shape[1]}, "
            f"min distance {report.get('min_distance', '?')}")
    return centers, report, fp2


def stage3_hashing(job: _Job, centers: np.ndarray | None) -> tuple[Evaluator, list, int, str]:
    """Stage 3: the hashing network trained with the method's loss (towards the centers for the centre methods;
    checkpoints/hashnet.pt; reused or resumed), evaluated every test_map epochs. Returns its evaluator (which
    holds the model), the training history, how many of its epochs were trained before this call, and the
    stage's fingerprint."""
    from shc.methods import hashing_model
    from shc.train import stage3

    cfg, dist, dataset = job.cfg, job.dist, job.dataset
    fp3 = fingerprint(stage=3, data=job.data_id, model=job.model_id, epochs=cfg.epochs,
                      centers=None if centers is None else array_digest(centers), method=cfg.method,
                      method_options=cfg.method_options, test_map=cfg.test_map, topk=cfg.topk)
    method = job.method(centers=centers)
    hashnet = job.build(partial(hashing_model, method), feature_map=method.feature_map)
    ckpt = job.out / "checkpoints" / "hashnet.pt"
    evaluator = Evaluator(hashnet, dataset, cfg, job.device, dist)
    history, done_before = _train_or_reuse(
        hashnet, ckpt, fp3, dist, cfg.resume, job.log, "stage 3", "hashing network",
        lambda resume_state: stage3.train_hashnet(
            hashnet, dataset, method, job.loop_options(cfg.epochs, method.lr_scale), name="stage3",
            checkpoint_path=ckpt, fp=fp3, resume_state=resume_state, dist=dist, evaluate=evaluator.maybe, callback=job.callback))
    if dist.is_main:  # the run describes its model: shc.load_run / shc-encode / shc-search / shc-export read it
        from shc.inference import save_model_config
        save_model_config(job.out, dataset, cfg, fp3)
    return evaluator, history, done_before, fp3


def write_outputs(job: _Job, metrics: dict, codes: tuple, pr_curves: dict, stage_files: list[str]) -> None:
    """Rank 0: the final model's codes, the labels (shc-eval reproduces "mAP" from them) and the items' order —
    the paths for image files, the source rows for in-memory sets — so that other methods can encode the same
    items in the same order; metrics.json and the two figures; last the manifest, naming the model and the digest
    of every output, these and ``stage_files`` (until it is written, readers refuse the run: see shc.integrity)."""
    from shc.plots import plot_pr_curves
    from shc.train.plots import plot_history

    out, dataset, cfg = job.out, job.dataset, job.cfg
    arrays = {"query_codes": codes[0], "db_codes": codes[1], "query_labels": dataset.query.labels,
              "db_labels": dataset.database.labels}
    written = []
    for name, array in arrays.items():
        written.append(f"codes/{name}.npy")
        write_array(out / written[-1], array)
    for name, split in (("query", dataset.query), ("db", dataset.database)):
        if hasattr(split, "paths"):  # image files: what shc-search shows for a result, without the dataset
            written.append(f"codes/{name}_paths.json")
            write_json(out / written[-1], [os.path.abspath(p) for p in split.paths])
        elif getattr(split, "source_index", None) is not None:  # in-memory sets: rows of the source arrays
            written.append(f"codes/{name}_index.npy")
            write_array(out / written[-1], split.source_index)
    write_json(out / "metrics.json", metrics)
    plot_history(metrics["stage1"].get("history", []), metrics["history"], out / "training.png",
                 title=f"{dataset.name}, {cfg.method}, {cfg.bits} bits")
    plot_pr_curves({f"{cfg.method}, {how}": curve for how, curve in pr_curves.items()},
                   out / "pr_curve.png", f"{dataset.name}, {cfg.bits} bits, {cfg.method}")
    files = [*stage_files, *written, "metrics.json", "training.png", "pr_curve.png", "history.csv"]
    write_manifest(out, metrics["fingerprints"]["stage3"], [name for name in files if (out / name).is_file()])


def _main_checkpoint(dist: Dist, path, fp: str, log, stage: str):
    """checkpoint_state as rank 0 reads it, on every rank (one decision, one optimiser state for all); a
    damaged checkpoint is none, and the log says why the stage trains from the start."""
    def read():
        try:
            return checkpoint_state(path, fp)
        except DamagedCheckpoint as exc:
            log(f"note: {exc}; training {stage} from the start")
            return None, False, None
    return dist.from_main(read() if dist.is_main else None)


def _center_hyper(method: str, hyper: dict) -> dict:
    """The optimiser settings a method's centers depend on (part of the stage-2 fingerprint: a changed setting
    recomputes the centers). SHC starts from MDS centers at MDS's defaults."""
    from shc.centers import MDS_DEFAULTS

    return {**MDS_DEFAULTS, **hyper} if method == "shc" else hyper


def _train_or_reuse(model, ckpt, fp: str, dist: Dist, resume: bool, log, stage: str, model_name: str,
                    train) -> tuple[list, int]:
    """One stage's model: loaded from a finished checkpoint written for ``fp``, else trained by
    ``train(resume_state)`` (continuing an interrupted run when ``resume``). Returns the training history and
    how many of its epochs were trained before this call (all of them when reused)."""
    state, complete, other = _main_checkpoint(dist, ckpt, fp, log, stage)
    if complete:
        model.load_state_dict(state["model"])
        log(f"{stage}: reusing trained {model_name} {ckpt}")
        return state["history"], len(state["history"])
    if resume and other:  # asked to continue, but the checkpoint's training is not the one asked for now
        log(f"note: cannot resume {stage} from {ckpt}: {other}; starting {stage} over")
    resume_state = _resumable(state, resume, ckpt, log)
    return train(resume_state), (int(resume_state["epoch"]) if resume_state else 0)


def _resumable(state, resume: bool, ckpt, log):
    if state is None:
        return None
    if resume:
        log(f"resuming from {ckpt} at epoch {state['epoch']}/{state['epochs']}")
        return state
    log(f"note: {ckpt} holds an interrupted run (epoch {state['epoch']}); starting over (pass --resume to continue)")
    return None


def _file_id(path):
    """Identity of an input file for fingerprints: path, size and mtime (hashing 80 MB weights every run is waste)."""
    if not path:
        return None
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime": st.st_mtime_ns}


def _read_json(path):
    import json
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
