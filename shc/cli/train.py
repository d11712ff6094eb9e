"""shc-train: the three SHC stages end to end (stage 1 classifier -> similarity, stage 2 centers, stage 3 hashing).

Plain ``shc-train`` trains on Fashion-MNIST with CPU-sized defaults; the seed's flags are accepted as written
in its README (``--code_length``, ``--num_classes``, ``--lr``, ``--epoch``, ``--classify_epoch``, ``--test_map``,
``--beta``, ``--lambd``, ``--topk``, ``--batch-size``, ``--gpu``). ``--nproc N`` trains with N processes
(DistributedDataParallel); ``torchrun --nproc_per_node N -m shc.cli.train ...`` is the same run.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from shc.cli._errors import CommandFailed, parse_args, run_cli

EPILOG = """\
defaults per dataset (flags override): fashion-mnist and synthetic use the compact CNN and short CPU schedules;
every other dataset uses the paper's settings (resnet34, 224 px crops of images resized to 256, 100 + 100 epochs,
lr 1e-4, batch 64, test_map 5): on a CPU, hours to days. The settings in use are printed at the start, and an
estimate of each stage's time after its first batches.

your own images on a CPU (2,000 images of 28 px: 40 s in all on one core; the defaults: ~23 h for stage 1 alone):
  shc-train --dataset custom --data-root DIR --backbone compact --resize 32 --crop 28 \\
            --classify_epoch 15 --epoch 30 --lr 1e-3 --test_map 10 --out runs/mine
(--resize/--crop: the shorter side each image is resized to, and the square crop the network sees; keep them
near the images' own size: a 28 px image resized to 256 costs ~80x the time and cache space and adds nothing.)

replay a run: shc-train --config RUN (or RUN/metrics.json) [flags that change it] reruns its configuration.

outputs in --out DIR: similarity.npy (shc only), centers.npy (each with a .fingerprint), checkpoints/*.pt (each
with a .sha256), history.csv (one row per epoch, as training goes; --tensorboard adds tensorboard/), metrics.json,
codes/{query,db}_{codes,labels}.npy (shc-eval reproduces metrics.json's "mAP" from them), pr_curve.png,
training.png, and last manifest.json (every file's sha256: readers refuse a run without it). A rerun reuses every
stage whose inputs (options, data content) did not change; one run at a time per DIR.

distributed: --nproc N starts N workers on this machine through torch's elastic launcher (nccl on CUDA, one GPU
per process; gloo on CPU); --batch-size is the global batch, split evenly. The same run under torchrun:
  torchrun --nproc_per_node N -m shc.cli.train ...
and on M machines (the same command on every node; rank 0 writes every output on its node):
  torchrun --nnodes M --nproc_per_node N --rdzv-id JOB --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
           -m shc.cli.train ...
"""


def build_parser() -> argparse.ArgumentParser:
    from shc.methods import CENTER_METHODS, list_methods
    from shc.similarity import MASKS, MULTILABEL_RULES
    from shc.train.launch import DEFAULT_TIMEOUT_S
    from shc.train.stage3 import MULTILABEL_CENTER_RULES

    p = argparse.ArgumentParser(prog="shc-train", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist", help="dataset name (default: fashion-mnist)")
    p.add_argument("--data-root", "--data_root", dest="data_root", default=None,
                   help="where the dataset's files are (default: the dataset's standard location)")
    p.add_argument("--data-option", dest="data_options", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, repeatable; values are Python literals (e.g. image_root=/data/images for "
                        "image files, train_per_class=200 for fashion-mnist; see docs/data.md)")
    p.add_argument("--resize", type=int, default=None, metavar="PX",
                   help="image files: resize each image's shorter side to PX (default: 256; alone, --crop follows "
                        "as PX * 224/256)")
    p.add_argument("--crop", type=int, default=None, metavar="PX",
                   help="image files: the square crop the network sees, <= --resize (default: 224; alone, "
                        "--resize follows as PX * 256/224)")
    p.add_argument("--num_classes", "--num-classes", dest="num_classes", type=int, default=None,
                   help="expected number of classes; checked against the data")
    p.add_argument("--code_length", "--code-length", "--bits", dest="bits", type=int, default=32,
                   help="hash code length q in bits, at most 1024 (default: 32)")
    p.add_argument("--method", default=None, metavar="NAME",
                   help=f"training method: {', '.join(list_methods())} (default: shc); stage 1 runs for shc only, "
                        "stage 2 for the centre methods shc, mds and csq (docs/methods.md)")
    p.add_argument("--method-option", "--method_option", dest="method_options", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="a method hyper-parameter, repeatable (e.g. --method shc --method-option polish_passes=0 is "
                        "the published SHC; values are Python literals); an option the method does not take is "
                        "refused with the list of those it does")
    p.add_argument("--centers", default=None, choices=CENTER_METHODS,
                   help="the centre methods' older flag: --centers X is --method X")
    p.add_argument("--backbone", default=None,
                   help="compact, resnet18, resnet34, resnet50 or vit_b_32 (3x224x224 images only) (default: per "
                        "dataset)")
    p.add_argument("--pretrained", default=None, metavar="PATH",
                   help="local ImageNet weights for a resnet (default: torchvision's cache if present)")
    p.add_argument("--lr", type=float, default=None, help="learning rate, both stages (default: per dataset)")
    p.add_argument("--epoch", "--epochs", dest="epochs", type=int, default=None,
                   help="stage-3 (hashing) epochs (default: per dataset)")
    p.add_argument("--classify_epoch", "--classify-epoch", dest="classify_epochs", type=int, default=None,
                   help="stage-1 (classifier) epochs (default: per dataset)")
    p.add_argument("--test_map", "--test-map", dest="test_map", type=int, default=None,
                   help="evaluate retrieval mAP every N epochs, and always after the last (default: per dataset)")
    p.add_argument("--beta", type=float, default=None,
                   help="accepted for compatibility with the seed's run.py; unused (the public code never reads it)")
    p.add_argument("--lambd", type=float, default=1e-4,
                   help="the centre methods' quantisation loss weight (= --method-option lambd=; default: 1e-4)")
    p.add_argument("--topk", nargs="+", default=None, metavar="K",
                   help="mAP cut-offs: ints or 'all', space- or comma-separated; 100, 1000 and all are always "
                        "reported")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=None,
                   help="training batch size (default: per dataset)")
    p.add_argument("--seed", type=int, default=0, help="seed for the data split, init, shuffling, centers")
    p.add_argument("--workers", type=int, default=None,
                   help="image-file datasets: threads gathering batches from the image cache, or decoding "
                        "processes with --image-cache off; used by every pass (default: the cores available)")
    p.add_argument("--image-cache", "--image_cache", dest="image_cache", default=None, metavar="DIR|off",
                   help="image-file datasets: where each image is kept decoded after its first read (default: "
                        "$SHC_CACHE_DIR/images or ~/.cache/shc/images); 'off' decodes every image on every pass")
    p.add_argument("--skip-unreadable", "--skip_unreadable", dest="skip_unreadable", action="store_true",
                   help="image-file datasets: leave corrupt or missing images out (their count is reported) "
                        "instead of stopping with an error")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per process (default: the cores minus one, split among the "
                        "processes on the machine, at least 1)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--gpu", type=int, default=None, help="GPU index; same as --device cuda:N")
    p.add_argument("--out", default=None, help="output directory (default: runs/DATASET-METHOD-BITS)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training from its checkpoint")
    p.add_argument("--stage1-cache", "--stage1_cache", dest="stage1_cache", default=None, metavar="DIR",
                   help="share stage-1 results (classifier, similarity) between runs through DIR")
    p.add_argument("--similarity-mask", default="gt", choices=MASKS,
                   help="stage 1: mask the ground-truth class (default) or the arg-max prediction")
    p.add_argument("--similarity-multilabel", default="negatives", choices=MULTILABEL_RULES,
                   help="stage 1, multi-label: softmax over negatives for every positive (default) or the "
                        "public code's first-label rule")
    p.add_argument("--multilabel-centers", default="csq", choices=MULTILABEL_CENTER_RULES,
                   help="stage 3, multi-label: sign of the summed label centers (default) or the first label's")
    p.add_argument("--compile", default="off", metavar="MODE",
                   help="torch.compile the training step: off, default, reduce-overhead (adds CUDA graphs: small "
                        "batches on a GPU are launch-bound) or max-autotune; the first steps pay the compile. "
                        "Default: off")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="also write TensorBoard event files to OUT/tensorboard (needs: pip install tensorboard)")
    p.add_argument("--config", default=None, metavar="RUN",
                   help="start from the configuration a run recorded (its directory or metrics.json); the flags "
                        "given override it")
    p.add_argument("--nproc", "--nproc-per-node", "--nproc_per_node", dest="nproc", type=int, default=None, metavar="N",
                   help="train with N processes on this machine (DistributedDataParallel; default: 1)")
    p.add_argument("--dist-timeout", "--dist_timeout", dest="dist_timeout", type=float,
                   default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help="distributed runs: a collective that waits longer for a lost or stuck worker fails the run "
                        f"(default: {DEFAULT_TIMEOUT_S:g})")
    return p


def config_from_args(args, argv=()):
    """The run's TrainConfig: from the flags, or with --config from a recorded run and the flags in ``argv``."""
    from shc.train.options import config_from_options
    from shc.train.recorded import recorded_config
    if args.config is None:
        return config_from_options(vars(args))
    return config_from_options(vars(args), recorded=recorded_config(args.config), given=given_options(argv))


def given_options(argv) -> set[str]:
    """The destinations of the options named on the command line ``argv`` (whatever their values)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    return set(vars(parser.parse_known_args(list(argv))[0]))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    rank = os.environ.get("RANK") if int(os.environ.get("WORLD_SIZE", 1)) > 1 else None
    # SIGTERM stops a lone process as Ctrl-C does; distributed workers are stopped by their launcher, which says so
    return run_cli("shc-train", lambda argv: train(parse_args("shc-train", build_parser, argv), argv, rank), argv,
                   context=f"[rank {rank}] " if rank is not None else "", sigterm=rank is None,
                   hint="; rerun the same command with --resume to continue")


def train(args, argv: list[str], rank: str | None) -> int:
    """The run this process makes: the workers' launcher (--nproc N > 1), or one process of the run."""
    from shc.train.artifacts import ensure_writable_dir
    from shc.train.launch import launch
    from shc.train.pipeline import check_world_size, run_pipeline

    cfg = config_from_args(args, argv)
    nproc = _check_nproc(args.nproc)
    if nproc > 1 and rank is None and "LOCAL_RANK" not in os.environ:
        check_world_size(cfg.resolved(), nproc)  # bad options fail here, before any worker starts
        ensure_writable_dir(cfg.out)
        return launch(argv, nproc)
    try:
        run_pipeline(cfg)
    except RuntimeError as exc:
        if rank is None or not _collective_failure(exc):
            raise  # a bug: the traceback helps
        # a peer died (the launcher reports which) or did not answer within --dist-timeout
        raise CommandFailed(_first_line(exc) + f" (a distributed operation failed: another worker exited, or "
                            f"none answered within --dist-timeout {args.dist_timeout:g} s)") from None
    return 0


def _collective_failure(exc: RuntimeError) -> bool:
    """A failed collective: torch's DistError (nccl, stores) or gloo's plain RuntimeError from its transport."""
    import torch.distributed
    return isinstance(exc, torch.distributed.DistError) or bool(
        re.search(r"gloo|nccl|timed out|connection (closed|reset)", str(exc), re.IGNORECASE))


def _check_nproc(nproc) -> int:
    if nproc is None:
        return 1
    if nproc < 1:
        raise ValueError(f"--nproc must be a positive integer, got {nproc}")
    local = os.environ.get("LOCAL_WORLD_SIZE")
    if local is not None and nproc != int(local):  # under torchrun, which already started the workers
        raise ValueError(f"--nproc {nproc} conflicts with the launcher's {local} processes per node")
    return nproc


def _first_line(exc: BaseException) -> str:
    """The message's first line without the backend's "[source/file.cc:123] " location prefix."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return re.sub(r"^\[[^\]]*:\d+\]\s*", "", lines[0] if lines else type(exc).__name__)[:300]


if __name__ == "__main__":
    sys.exit(main())
