"""Fixtures shared by tests/ and bench/."""
import pytest


@pytest.fixture
def restore_isa():
    """Tests that force a popcount path (shc._engine.set_isa) get the one in use back afterwards."""
    from shc import _engine
    before = _engine.isa()
    yield
    _engine.set_isa(before)


@pytest.fixture(autouse=True, scope="session")
def image_cache_dir(tmp_path_factory):
    """The decoded-image cache of every test lives in one temporary directory, never in ~/.cache."""
    import os
    old = os.environ.get("SHC_CACHE_DIR")
    os.environ["SHC_CACHE_DIR"] = str(tmp_path_factory.mktemp("shc-cache"))
    yield os.environ["SHC_CACHE_DIR"]
    if old is None:
        os.environ.pop("SHC_CACHE_DIR", None)
    else:
        os.environ["SHC_CACHE_DIR"] = old


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(nbytes)`` -> a directory on a tmpfs of that size (a disk that fills up for real), unmounted
    afterwards; the test is skipped where tmpfs cannot be mounted (not root, a sandbox), the ENOSPC stubs of the
    same tests still run."""
    import subprocess
    mounted = []

    def mount(nbytes: int):
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={nbytes}", "tmpfs", str(where)],
                              capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(where)
        return where
    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def check_run():
    """check(out, metrics, data_options) for a finished synthetic run: metrics.json records the resolved method
    options, shc.evaluate on codes/ reproduces metrics["mAP"], every epoch's loss is finite, and load_run encodes
    query images to the run's codes. Returns the run's codes/ arrays."""
    def check(out, metrics, data_options, images=4):
        import json

        import numpy as np

        import shc
        from shc.data import load_dataset
        assert json.loads((out / "metrics.json").read_text())["method_options"] == metrics["method_options"]
        codes = {n: np.load(out / "codes" / f"{n}.npy") for n in ("query_codes", "db_codes", "query_labels",
                                                                  "db_labels")}
        report = shc.evaluate(codes["query_codes"], codes["db_codes"], codes["query_labels"], codes["db_labels"],
                              topk=(100, 1000, "all")).to_dict()
        assert metrics["mAP"] == report["mAP"]
        assert all(np.isfinite(r["loss"]) for r in metrics["history"])
        query = load_dataset("synthetic", **data_options).query
        encoder = shc.load_run(out, device="cpu")
        np.testing.assert_array_equal(encoder.encode(query.images[:images]), codes["query_codes"][:images])
        return codes
    return check
