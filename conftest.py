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
