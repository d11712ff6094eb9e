"""Retrieval with a trained run: image inputs, codes files, the database searched, and the per-query results.

What shc-encode and shc-search are made of (the CLIs only parse arguments). Codes files are ``FILE.npy`` (±1
int8, or ``np.packbits`` bytes) with a ``FILE.json`` sidecar naming their bits, paths, labels and the run.
Labels are class names when the run has them (a query's label: a list file's label column or, under a
directory, the sub-directory it is in, given as a class name or class id); relevance = a shared label.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

SIDECAR_FORMAT = 1


# --------------------------------------------------------------------------------------------- image inputs
def collect_images(specs) -> tuple[list[str], list]:
    """(paths, labels) of image files, directories (recursively, sorted) and list files (one ``path`` or
    ``path<TAB>label`` / ``path label`` / ``path 0 1 0 ...`` a line, relative to the list file)."""
    from shc.data.files import IMAGE_EXTENSIONS
    paths, labels = [], []
    for spec in map(str, specs):
        if os.path.isdir(spec):
            found = sorted(os.path.join(d, f) for d, _, files in os.walk(spec, followlinks=True) for f in files
                           if f.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise ValueError(f"{spec}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
            paths += found
            labels += [_folder_label(spec, p) for p in found]
        elif os.path.isfile(spec) and spec.lower().endswith(IMAGE_EXTENSIONS):
            paths.append(spec)
            labels.append(None)
        elif os.path.isfile(spec):
            listed, listed_labels = _read_image_list(spec)
            paths += listed
            labels += listed_labels
        else:
            raise FileNotFoundError(f"{spec}: no such image, directory or list file")
    return paths, labels


def _folder_label(root: str, path: str):
    """The sub-directory of ``root`` an image is in (ImageFolder's class), None for images directly in root."""
    parts = Path(os.path.relpath(path, root)).parts
    return parts[0] if len(parts) > 1 else None


def _read_image_list(list_path: str) -> tuple[list[str], list]:
    from shc.data.files import read_list_file
    root = os.path.dirname(list_path)
    try:
        with open(list_path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read list file {list_path}: {exc}") from None
    if not lines:
        raise ValueError(f"{list_path}: no entries")
    plain = [os.path.join(root, ln) for ln in lines]
    if all(os.path.isfile(p) for p in plain):  # a plain list of paths, no labels
        return plain, [None] * len(plain)
    listed = read_list_file(list_path, root)
    if listed.multi_label:
        return listed.paths, [list(np.flatnonzero(row)) for row in listed.labels]
    return listed.paths, list(listed.labels)


def canonical_label(label, class_names):
    """A label as results show it: a class name where the run knows one (given as name or id), a list of them
    for multi-hot rows, None when unknown."""
    if label is None:
        return None
    if isinstance(label, (list, tuple, np.ndarray)) and not isinstance(label, str):
        return [canonical_label(x, class_names) for x in label]
    token = str(label.item() if isinstance(label, np.generic) else label)
    if class_names and token not in class_names and token.isdigit() and int(token) < len(class_names):
        return class_names[int(token)]
    return token


def labels_of_array(labels: np.ndarray, class_names) -> list:
    """Labels of a saved labels array (class ids, or multi-hot rows) as :func:`canonical_label` gives them."""
    if labels.ndim == 2:
        return [canonical_label(list(np.flatnonzero(row)), class_names) for row in labels]
    return [canonical_label(int(x), class_names) for x in labels]


def relevant(query_label, item_label) -> bool | None:
    """A shared label (None when either label is unknown)."""
    if query_label is None or item_label is None:
        return None
    as_set = lambda x: set(x) if isinstance(x, list) else {x}  # noqa: E731
    return bool(as_set(query_label) & as_set(item_label))


# --------------------------------------------------------------------------------------------- codes files
def sidecar_path(codes_path) -> Path:
    return Path(codes_path).with_suffix(".json")


def labels_path(codes_path) -> Path:
    """Where shc-encode puts the labels of ``codes_path`` as shc-eval reads them: FILE_labels.npy."""
    codes_path = Path(codes_path)
    return codes_path.with_name(f"{codes_path.stem}_labels.npy")


def write_codes(out, codes: np.ndarray, *, paths: list[str], labels: list, packed: bool, run_dir,
                config: dict) -> Path | None:
    """``out`` (.npy): ±1 int8 codes, or ``np.packbits(codes > 0, axis=1)`` bytes; ``out``'s .json sidecar:
    bits, format, paths, labels, the run (``config``: its hashnet.json) that made them and the sha256 of the codes
    file; and, when every image has a label the run knows, FILE_labels.npy (class ids or multi-hot rows, as the
    run's codes/ labels; its sha256 in the sidecar too), whose path is returned (None when not written). The sidecar
    goes first: a write that fails after it (a full disk) leaves a sidecar naming other codes, which readers
    refuse, never new codes beside the old paths."""
    from shc.atomic import atomic_write
    from shc.integrity import bytes_digest
    from shc.train.artifacts import write_json
    out = Path(out)
    if out.suffix != ".npy":
        raise ValueError(f"--out {out}: codes are written as .npy (name it {out.with_suffix('.npy').name})")
    dataset = config["dataset"]
    ids = label_array(labels, dataset.get("class_names"), int(dataset["num_classes"]), bool(dataset["multi_label"]))
    files = {out: npy_bytes(np.packbits(codes > 0, axis=1) if packed else codes)}
    if ids is not None:
        files[labels_path(out)] = npy_bytes(ids)
    write_json(sidecar_path(out), {"format": SIDECAR_FORMAT, "bits": int(codes.shape[1]), "packed": packed,
                                   "count": len(codes), "paths": [str(p) for p in paths], "labels": labels,
                                   "labels_file": None if ids is None else labels_path(out).name,
                                   "run": str(Path(run_dir).resolve()), "fingerprint": config["fingerprint"],
                                   "sha256": bytes_digest(files[out]),
                                   "labels_sha256": None if ids is None else bytes_digest(files[labels_path(out)])})
    for path, data in files.items():
        atomic_write(path, lambda tmp, data=data: Path(tmp).write_bytes(data))
    return None if ids is None else labels_path(out)


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a .npy file."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def label_array(labels: list, class_names, num_classes: int, multi_label: bool) -> np.ndarray | None:
    """Labels as :func:`canonical_label` gives them -> the run's label encoding: int64 class ids, or uint8
    multi-hot rows for a multi-label run; None when an image has no label or one the run does not know."""
    index = {name: i for i, name in enumerate(class_names or [])}

    def class_id(label):
        token = str(label)
        if token in index:
            return index[token]
        return int(token) if token.isdigit() and int(token) < num_classes else None

    if not labels or any(x is None for x in labels):
        return None
    ids = [[class_id(x) for x in (label if isinstance(label, list) else [label])] for label in labels]
    if any(i is None for row in ids for i in row) or (not multi_label and any(len(row) != 1 for row in ids)):
        return None
    if not multi_label:
        return np.array([row[0] for row in ids], dtype=np.int64)
    hot = np.zeros((len(ids), num_classes), dtype=np.uint8)
    for r, row in enumerate(ids):
        hot[r, row] = 1
    return hot


def packed_bits(codes_path) -> int | None:
    """The code length of shc-encode ``--packed`` codes, from their sidecar (None: no sidecar or not packed)."""
    try:
        meta = json.loads(sidecar_path(codes_path).read_text())
    except (OSError, ValueError):
        return None
    return int(meta["bits"]) if isinstance(meta, dict) and meta.get("packed") and "bits" in meta else None


# --------------------------------------------------------------------------------------------- the database
@dataclass
class Database:
    """Codes to search, with what is known about each item (labels, paths, pixels for thumbnails)."""

    codes: np.ndarray
    source: str
    labels: list | None = None
    paths: list | None = None
    dataset_config: dict | None = field(default=None, repr=False)  # the run's own database: reload for pixels
    data_root: str | None = None  # where the user says the run's dataset is (never the run's own say-so)

    def __len__(self):
        return len(self.codes)

    @cached_property
    def split(self):
        return run_split(self.dataset_config, "database", self.data_root)

    def path(self, index: int):
        return self.paths[index] if self.paths is not None else None

    def thumbnail_source(self, index: int):
        """A path or a uint8 pixel array of item ``index``, None when the database has neither."""
        path = self.path(index)
        if path is not None or self.dataset_config is None:
            return path
        return self.split.images[index]


def run_split(dataset_config: dict, which: str, data_root: str | None = None):
    """The run's ``which`` split (query / database), reloaded with the dataset settings in its hashnet.json
    from ``data_root`` — the user's ``--data-root``; None: the dataset's standard location — never from the
    data_root the run recorded: a run directory from elsewhere must not choose what is read (image files: only
    their lists are read, nothing is decoded or cached)."""
    from shc.data import load_dataset
    d = dataset_config
    try:
        dataset = load_dataset(d["name"], data_root=data_root, seed=d["seed"], image_cache="off",
                               progress=False, **d["options"])
        return getattr(dataset, which)
    except (ValueError, TypeError, OSError) as exc:
        hint = "" if data_root else (
            f"; pass --data-root DIR (the run was trained on data in {d['data_root']}, which is not read unless "
            f"you name it)" if d.get("data_root") else "; pass --data-root DIR")
        raise ValueError(f"cannot reload the run's dataset ({d['name']}) for its {which} images: "
                         f"{' '.join(str(exc).split())}{hint}") from None


def run_split_images(run_dir, config: dict, which: str, count: int | None = None,
                     data_root: str | None = None) -> list:
    """The first ``count`` images of the run's ``which`` split: for image files the paths the run recorded
    (codes/{query,db}_paths.json) unless ``data_root`` is given, else uint8 pixels of the reloaded split."""
    recorded = Path(run_dir) / "codes" / f"{'db' if which == 'database' else which}_paths.json"
    if config["preprocessing"]["image_files"] and data_root is None and recorded.is_file():
        try:
            paths = json.loads(recorded.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{recorded}: cannot read ({exc})") from None
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ValueError(f"{recorded}: expected a list of image paths")
        from shc.train.recorded import absolute
        return [absolute(p, config.get("working_dir")) for p in paths[:count]]
    split = run_split(config["dataset"], which, data_root)
    items = split.paths if config["preprocessing"]["image_files"] else split.images
    return list(items[:count])


def run_database(run_dir, config: dict, data_root: str | None = None) -> Database:
    """The run's saved database codes (codes/db_codes.npy), labels and, for image files, paths: the files the
    run's manifest lists for the model of ``config`` (ValueError naming the file otherwise). ``data_root``: where
    the user says the run's dataset is (thumbnails of in-memory datasets, see :func:`run_split`)."""
    from shc.integrity import read_manifest, verified_bytes
    from shc.train.recorded import absolute
    manifest = read_manifest(run_dir)

    def read(name):
        data = verified_bytes(run_dir, f"codes/{name}", manifest, model=config["fingerprint"])
        try:
            return json.loads(data) if name.endswith(".json") else np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{run_dir}: cannot read codes/{name} ({exc})") from None

    codes, labels = read("db_codes.npy"), read("db_labels.npy")
    image_files = config["preprocessing"]["image_files"]
    paths = [absolute(str(p), config.get("working_dir")) for p in read("db_paths.json")] if image_files else None
    if len({len(codes), len(labels), len(paths or labels)}) != 1:
        raise ValueError(f"{run_dir}: the run's database files disagree: {len(codes)} codes, {len(labels)} labels"
                         + (f", {len(paths)} paths" if paths is not None else ""))
    class_names = config["dataset"].get("class_names")
    return Database(codes, str(Path(run_dir) / "codes" / "db_codes.npy"), labels_of_array(labels, class_names),
                    paths, dataset_config={**config["dataset"], "image_files": image_files}, data_root=data_root)


SIDECAR_TYPES = {"format": int, "bits": int, "packed": bool, "count": int, "paths": list, "labels": list,
                 "run": str, "fingerprint": str, "sha256": str, "labels_file": str, "labels_sha256": str}


def read_sidecar(codes_path) -> dict:
    """A codes file's .json sidecar, checked: a dict whose known keys hold what shc-encode writes (ValueError
    naming the sidecar and the key otherwise)."""
    path = sidecar_path(codes_path)
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object (shc-encode's sidecar), got {type(meta).__name__}")
    for key, kind in SIDECAR_TYPES.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise ValueError(f"{path}: {key!r} must be {kind.__name__}, got {value!r:.60}")
    if meta.get("bits") is not None and meta["bits"] < 1:
        raise ValueError(f"{path}: 'bits' must be positive, got {meta['bits']}")
    if meta.get("paths") is not None and not all(isinstance(p, str) for p in meta["paths"]):
        raise ValueError(f"{path}: 'paths' must be a list of file names")
    return meta


def file_database(codes_path, bits: int, fingerprint: str) -> Database:
    """Codes from a file (shc-encode's, with its sidecar, or any ±1 / {0,1} / packbits array) for ``bits``-bit
    queries of the model with ``fingerprint``; ValueError when the widths differ or the sidecar names another
    model (its codes would not be comparable)."""
    from shc.integrity import file_digest
    from shc.io import load_array
    codes = load_array(str(codes_path))
    meta = read_sidecar(codes_path) if sidecar_path(codes_path).is_file() else {}
    if codes.ndim != 2 or not len(codes):
        raise ValueError(f"{codes_path}: expected a non-empty items x bits array, got shape {codes.shape}")
    # without a sidecar: uint8 bytes beyond 0/1 are np.packbits output (whose width is known to 8 bits)
    packed = meta.get("packed", codes.dtype == np.uint8 and int(codes.max()) > 1)
    width = meta.get("bits", codes.shape[1] * 8 if packed else codes.shape[1])
    fits = (codes.shape[1] == -(-bits // 8) and meta.get("bits", bits) == bits) if packed else width == bits
    if not fits:
        raise ValueError(f"--db {codes_path} holds {width}-bit codes but the run's model makes {bits}-bit codes")
    if "sha256" in meta and file_digest(codes_path) != meta["sha256"]:  # older shc-encode sidecars have none
        raise ValueError(f"--db {codes_path} is not the codes file {sidecar_path(codes_path).name} describes (an "
                         f"interrupted shc-encode, or a file changed since): encode the database again")
    if meta.get("fingerprint", fingerprint) != fingerprint:
        raise ValueError(f"--db {codes_path} was encoded by another model (run {meta.get('run')}); its codes are "
                         f"not comparable with this run's: encode the database with this run")
    for key in ("paths", "labels"):
        if meta.get(key) is not None and len(meta[key]) != len(codes):
            raise ValueError(f"{sidecar_path(codes_path)}: {len(meta[key])} {key} for {len(codes)} codes")
    return Database(codes, str(codes_path), meta.get("labels"), meta.get("paths"))


# --------------------------------------------------------------------------------------------- search
def search_results(query_codes: np.ndarray, database: Database, k: int, *, bits: int, images: list,
                   query_labels: list) -> dict:
    """Per query the k nearest database items by Hamming distance, ties by database index (the compiled
    engine's shc.search): ``{"queries": [{"image", "label", "results": [{"index", "distance", "label", "path",
    "relevant"}]}], ...}``."""
    from shc.metrics import search
    index, distance = search(query_codes, database.codes, k, bits=bits)
    queries = []
    for q, (image, label) in enumerate(zip(images, query_labels)):
        results = []
        for i, d in zip(index[q].tolist(), distance[q].tolist()):
            item_label = database.labels[i] if database.labels is not None else None
            results.append({"index": i, "distance": d, "label": item_label, "path": database.path(i),
                            "relevant": relevant(label, item_label)})
        queries.append({"image": str(image), "label": label, "results": results})
    return {"bits": bits, "k": int(index.shape[1]), "database": {"codes": database.source, "size": len(database)},
            "queries": queries}
