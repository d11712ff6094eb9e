"""The compiled engine ``shc._engine`` (csrc/), or, in a source tree where it was never built, an error that says
what to run instead of Python's "cannot import name '_engine'"."""
try:
    from shc import _engine  # noqa: F401
except ImportError as exc:
    raise ModuleNotFoundError(
        "shc's compiled engine (shc._engine) is not built in this source tree: run `pip install -e .` in it (or "
        "`python setup.py build_ext --inplace`)", name="shc._engine") from exc
