"""Build the engine with AddressSanitizer + UBSan into a temporary copy and run the engine tests against it.

Marked `sanitizer` (slow: a rebuild plus the engine suite, ~2 minutes); it runs only when selected:
    pytest -m sanitizer tests/test_engine_sanitizers.py
and is skipped when the compiler has no libasan.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE_TESTS = ["test_engine_metrics.py", "test_engine_search.py", "test_engine_inputs.py", "test_engine_likelihood.py"]


def _runtime(name):
    path = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.mark.sanitizer
def test_engine_suite_is_clean_under_asan_and_ubsan(tmp_path, request):
    if "sanitizer" not in (request.config.getoption("-m") or ""):
        pytest.skip("slow ASan/UBSan rebuild: select it with -m sanitizer")
    asan, ubsan = _runtime("libasan.so"), _runtime("libubsan.so")
    if asan is None or shutil.which("gcc") is None:
        pytest.skip("no libasan for this compiler")
    copy = tmp_path / "shc-sanitized"
    copy.mkdir()
    for item in ("setup.py", "pyproject.toml", "csrc", "shc"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, copy / item, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
        elif src.exists():
            shutil.copy2(src, copy / item)
    (copy / "README.md").write_text("sanitizer build\n")
    env = dict(os.environ, SHC_SANITIZE="1")
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=copy, env=env,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]

    env = dict(os.environ, PYTHONPATH=str(copy), LD_PRELOAD=" ".join(p for p in (asan, ubsan) if p),
               ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    probe = subprocess.run([sys.executable, "-c", "import shc._engine as e; print(e.__file__)"], cwd=copy, env=env,
                           capture_output=True, text=True)
    assert probe.returncode == 0 and str(copy) in probe.stdout, probe.stdout + probe.stderr
    tests = [str(ROOT / "tests" / name) for name in ENGINE_TESTS]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", "not torch",
                          *tests], cwd=copy, env=env, capture_output=True, text=True)
    output = run.stdout[-4000:] + run.stderr[-4000:]
    assert run.returncode == 0 and " passed" in output, output
    assert "AddressSanitizer" not in output and "runtime error" not in output, output
