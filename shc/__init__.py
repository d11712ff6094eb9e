"""shc — Deep Hashing with Semantic Hash Centers.

The top-level namespace imports numpy-only pieces lazily, so ``import shc`` and
``shc.evaluate`` never pull in torch (start-up time matters when evaluating in loops).
"""
import os
import sys
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


class _SourceTreeKernels:
    """``shc.kernels`` in a source checkout that was not pip-installed: the Triton kernels live in kernels/ beside
    shc/, and setup.py maps them into the package when installing; this finder gives them the same name here."""

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "shc.kernels":
            return None
        from importlib.util import spec_from_file_location
        return spec_from_file_location(name, os.path.join(cls.root, "__init__.py"),
                                       submodule_search_locations=[cls.root])


# last on the path: an installed (or editable) copy's own mapping wins
if os.path.isfile(os.path.join(_SourceTreeKernels.root, "__init__.py")):
    sys.meta_path.append(_SourceTreeKernels)
