"""Build the compiled Hamming engine (csrc/ -> shc._engine) and map kernels/ -> shc.kernels.

The engine is one extension; per-ISA popcount paths are compiled with function-level
target attributes and chosen at run time (see csrc/), so one build is fast on
POPCNT-only, AVX2 and AVX-512 VPOPCNTDQ machines alike.
"""
import glob
import os
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

debug_sanitize = os.environ.get("SHC_SANITIZE") == "1"  # ASan/UBSan debug build (tests/test_sanitizers.py)

compile_args = ["-O3", "-fopenmp", "-fno-math-errno"]
link_args = ["-fopenmp"]
if debug_sanitize:
    compile_args = ["-O1", "-g", "-fopenmp", "-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    link_args = ["-fopenmp", "-fsanitize=address,undefined"]
if sys.platform == "darwin":  # Apple clang has no -fopenmp without libomp: the engine then runs single-threaded
    compile_args = [a for a in compile_args if a != "-fopenmp"]
    link_args = [a for a in link_args if a != "-fopenmp"]

ext = Pybind11Extension(
    "shc._engine",
    sorted(glob.glob("csrc/*.cpp")),
    include_dirs=["csrc"],
    cxx_std=17,
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

setup(
    packages=find_packages(include=["shc", "shc.*"]) + ["shc.kernels"],
    package_dir={"shc": "shc", "shc.kernels": "kernels"},
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
)
