"""The dataset registry: ``name -> constructor(data_root, seed, **options) -> HashingDataset``.

Names are matched case-insensitively with ``_`` and ``-`` treated alike, so the seed's names
(``cifar-100-new-seg``, ``stanford_cars-official-seg``, ``NAbirds-official-seg``, ...) and
torchvision's (``FashionMNIST``) resolve to the canonical ones.
"""
from __future__ import annotations

import os
from typing import Callable

from shc.data.base import DataRootError, HashingDataset

DATASETS: dict[str, Callable[..., HashingDataset]] = {}
ALIASES: dict[str, str] = {}  # normalised alias -> canonical name
READS_FILES: set[str] = set()  # datasets that decode image files and so take LOADER_OPTIONS

# How image files are read, not what the data is: accepted by every dataset, used by those of READS_FILES
LOADER_OPTIONS = ("image_cache", "workers", "skip_unreadable", "progress")

DATA_ROOT_ENV = "SHC_DATA_ROOT"


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_dataset(name: str, *aliases: str, reads_files: bool = False):
    """Decorator registering a dataset constructor under ``name`` and its aliases.

    reads_files: the constructor reads image files and takes the keyword options LOADER_OPTIONS.
    """
    def wrap(fn):
        for alias in (name, *aliases):
            if _key(alias) in ALIASES:
                raise ValueError(f"dataset name {alias!r} registered twice")
            ALIASES[_key(alias)] = name
        DATASETS[name] = fn
        if reads_files:
            READS_FILES.add(name)
        return fn
    return wrap


def canonical_name(name: str) -> str:
    """The registered name for ``name`` or one of its aliases; ValueError listing the choices."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    try:
        return ALIASES[_key(name)]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))} "
                         f"(aliases: {', '.join(sorted(a for a in ALIASES if a not in DATASETS))})") from None


def load_dataset(name: str, data_root: str | None = None, seed: int = 0, *, image_cache: str | None = None,
                 workers: int | None = None, skip_unreadable: bool = False, progress: bool = True,
                 **options) -> HashingDataset:
    """Load a dataset by name (or alias) with its retrieval protocol, seeded by ``seed``.

    For image-file datasets: ``image_cache`` is where decoded images are kept (None: ``$SHC_CACHE_DIR/images`` or
    ``~/.cache/shc/images``; ``"off"``: decode on every pass), ``workers`` the loading threads / processes (None:
    the cores available), ``skip_unreadable`` leaves corrupt or missing images out instead of failing,
    ``progress`` shows the cache build's progress. In-memory datasets hold decoded pixels already and
    ignore these four.
    """
    canonical = canonical_name(name)
    if canonical in READS_FILES:
        options.update(image_cache=image_cache, workers=workers, skip_unreadable=skip_unreadable,
                       progress=progress)
    return DATASETS[canonical](data_root=data_root, seed=seed, **options)


def loader_settings(options: dict, **given) -> tuple[dict, dict]:
    """Dataset ``options`` split into (loader settings, the dataset's own options): LOADER_OPTIONS keys in
    ``options`` (``--data-option workers=1``) are the same settings as load_dataset's keyword arguments, ``given``
    here; one given both ways with two values is a ValueError."""
    import inspect
    defaults = {k: p.default for k, p in inspect.signature(load_dataset).parameters.items() if k in LOADER_OPTIONS}
    settings = {**defaults, **given}
    for key, value in options.items():
        if key in LOADER_OPTIONS:
            if settings[key] not in (defaults[key], value):
                raise ValueError(f"{key} is given twice, as {settings[key]!r} and as data option {key}={value!r}")
            settings[key] = value
    return settings, {k: v for k, v in options.items() if k not in LOADER_OPTIONS}


def data_root_candidates(name: str, data_root: str | None, defaults: tuple[str, ...] = ()) -> list[str]:
    """Where to look for a dataset: ``data_root`` if given, else ``defaults`` then ``$SHC_DATA_ROOT/<name>``."""
    if data_root is not None:
        return [os.path.expanduser(str(data_root))]
    candidates = list(defaults)
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        candidates.append(os.path.join(os.path.expanduser(env), name))
    return candidates


def missing_root_error(name: str, tried: list[str], expected: str, how_to_get: str) -> DataRootError:
    where = ", ".join(tried) if tried else f"nowhere (no data_root / --data-root given and ${DATA_ROOT_ENV} unset)"
    return DataRootError(f"{name}: data not found; looked in {where}. Expected {expected}. {how_to_get}")
