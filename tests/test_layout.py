"""The package's layout: importable from a source checkout that was not pip-installed, imports one way."""
import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_kernels_import_from_an_uninstalled_checkout(tmp_path):
    # -S: no site-packages, so no installed (or editable) copy of shc can answer
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import shc.kernels; print(shc.kernels.__file__)"
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(ROOT / "kernels" / "__init__.py")


def test_kernels_never_import_their_dispatchers():
    """shc.metrics and shc.losses import the kernels, not the reverse (no deferred circular imports)."""
    for path in (ROOT / "kernels").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                assert not name.startswith(("shc.metrics", "shc.losses", "shc.train")), (path.name, name)
            if isinstance(node, ast.ImportFrom) and node.module == "shc":
                assert {a.name for a in node.names}.isdisjoint({"metrics", "losses", "train"}), path.name
