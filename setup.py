"""Build fastnn's compiled core: every fastnn/_core/*.pyx becomes one extension module.

Environment switches (all off by default):
  FASTNN_DEBUG_CYTHON=1  turn Cython's bounds/wraparound/initialized checks back on
  FASTNN_SANITIZE=1      build with -fsanitize=address,undefined (see tests/sanitize.sh)
  FASTNN_NATIVE=1        add -march=native (never in a wheel meant for other machines)
  FASTNN_BUILD_JOBS=n    Cython and C compiler jobs (default: every core)
  FASTNN_MODULES=a,b     build only fastnn._core.a and fastnn._core.b (development: rebuild one module)
"""
import os
from glob import glob

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _flag(name):
    return os.environ.get(name, "0") not in ("", "0")


debug = _flag("FASTNN_DEBUG_CYTHON")
# -fno-trapping-math lets GCC vectorize the selects in src_c (see fastnn_kernels.h); unlike
# -ffast-math it keeps IEEE results, so NaN/inf checks still work.
compile_args = ["-O3", "-fno-trapping-math"]
link_args = []
if _flag("FASTNN_NATIVE"):
    compile_args.append("-march=native")
if _flag("FASTNN_SANITIZE"):
    sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                "-fno-sanitize-recover=undefined"]
    compile_args = ["-O1", "-g", "-fno-trapping-math"] + sanitize
    link_args = sanitize

headers = glob(os.path.join("src_c", "*.h"))
extensions = [
    Extension(
        "fastnn._core." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=["src_c", numpy.get_include()],
        depends=headers,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for path in sorted(glob(os.path.join("fastnn", "_core", "*.pyx")))
]
only = [m for m in os.environ.get("FASTNN_MODULES", "").split(",") if m]
if only:
    extensions = [ext for ext in extensions if ext.name.split(".")[-1] in only]

directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": debug,
    "initializedcheck": debug,
    "cdivision": not debug,
    "embedsignature": True,
}

# pip builds with neither -j nor a job count: use every core for Cython and for the C compiler
jobs = int(os.environ.get("FASTNN_BUILD_JOBS", "0")) or os.cpu_count() or 1


class ParallelBuildExt(build_ext):
    """build_ext compiling the extensions in parallel unless told otherwise (-j)."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = jobs


setup(ext_modules=cythonize(extensions, compiler_directives=directives, nthreads=jobs),
      cmdclass={"build_ext": ParallelBuildExt})
