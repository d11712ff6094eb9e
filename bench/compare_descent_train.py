"""Does stronger semantic structure in the centers help? shc-compare's grid, with SHC's ADMM centers replaced by
feasible flip descent on the same objective (bench/compare_investigation.py's ``flip_descent``, from the same MDS
start, same d) — everything else (S, budget, splits, seeds) exactly as in the grid.

    nice python bench/compare_descent_train.py --bits 16 --seeds 0 1 2 --out runs/compare-fmnist-descent \
        --stage1-cache runs/compare-fmnist/stage1-cache --epoch 15 --classify_epoch 15 --test_map 15 --threads 1
"""
from __future__ import annotations

import sys
from pathlib import Path

import shc.centers
from shc.centers import gv_distance, mds_centers

sys.path.insert(0, str(Path(__file__).parent))
from compare_investigation import flip_descent  # noqa: E402

_make_centers = shc.centers.make_centers


def descent_centers(method, classes, bits, similarity=None, seed=0):
    if method != "shc":
        return _make_centers(method, classes, bits, similarity=similarity, seed=seed)
    s = (similarity + similarity.T) / 2
    return flip_descent(s, mds_centers(classes, bits, seed=seed), gv_distance(bits, classes))


if __name__ == "__main__":
    shc.centers.make_centers = descent_centers  # the pipeline looks it up at run time
    from shc.cli.compare import main
    sys.exit(main(["--centers", "shc", *sys.argv[1:]]))
