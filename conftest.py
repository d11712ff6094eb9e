"""Fixtures shared by tests/ and bench/."""
import pytest


@pytest.fixture
def restore_isa():
    """Tests that force a popcount path (shc._engine.set_isa) get the one in use back afterwards."""
    from shc import _engine
    before = _engine.isa()
    yield
    _engine.set_isa(before)
