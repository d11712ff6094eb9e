"""shc — Deep Hashing with Semantic Hash Centers.

The top-level namespace imports numpy-only pieces lazily, so ``import shc`` and
``shc.evaluate`` never pull in torch (start-up time matters when evaluating in loops).
"""
from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "evaluate": "shc.metrics",
    "search": "shc.metrics",
    "Report": "shc.metrics",
    "report_from_buckets": "shc.metrics",
    "buckets": "shc.metrics",
    "plot_pr_curves": "shc.plots",
    "pack_codes": "shc.codes",
    "load_array": "shc.io",
    "gv_distance": "shc.centers",
    "csq_centers": "shc.centers",
    "mds_centers": "shc.centers",
    "shc_centers": "shc.centers",
    "make_centers": "shc.centers",
    "TrainConfig": "shc.train",
    "run_pipeline": "shc.train",
    "evaluate_sharded": "shc.train",
    "center_report": "shc.centers",
    "load_run": "shc.inference",
    "Encoder": "shc.inference",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'shc' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
