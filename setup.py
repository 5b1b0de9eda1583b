"""Build fastnn's compiled core: every fastnn/_core/*.pyx becomes one extension module.

Environment switches (all off by default):
  FASTNN_DEBUG_CYTHON=1  turn Cython's bounds/wraparound/initialized checks back on
  FASTNN_SANITIZE=1      build with -fsanitize=address,undefined (see tests/sanitize.sh)
  FASTNN_NATIVE=1        add -march=native (never in a wheel meant for other machines)
  FASTNN_BUILD_JOBS=n    Cython and C compiler jobs (default: every core)
  FASTNN_MODULES=a,b     build only fastnn._core.a and fastnn._core.b (development: rebuild one module)

Compiled modules are kept in build/fastnn-cache/, keyed by what decides them (the generated C
without its path-bearing metadata, the src_c headers, the compiler command and flags, numpy's
and Python's versions).  So `pip install ".[test]"` right after `pip install .` (README's two
commands) re-runs Cython (about 30 s of CPU) but compiles nothing: pip builds in the source
tree, in a fresh isolated environment each time, which makes Cython regenerate every .c file
and would otherwise make the C compiler start over.  Delete build/ to start afresh.
"""
import hashlib
import os
import re
import shutil
import sys
import sysconfig
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


# Cython's header records the include paths, which name pip's temporary build environment
_METADATA = re.compile(rb"/\* BEGIN: Cython Metadata.*?END: Cython Metadata \*/", re.S)


class ParallelBuildExt(build_ext):
    """build_ext compiling the extensions in parallel unless told otherwise (-j), and reusing
    a module compiled before from the same C code with the same compiler and flags."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = jobs

    def _cache_path(self, ext):
        key = hashlib.sha256()
        for part in (sys.version, sysconfig.get_config_var("EXT_SUFFIX"), numpy.__version__,
                     repr(self.compiler.compiler_so), repr(self.compiler.linker_so),
                     repr(ext.extra_compile_args), repr(ext.extra_link_args),
                     repr(ext.define_macros), repr(ext.libraries)):
            key.update(str(part).encode() + b"\0")
        for path in sorted(ext.sources) + sorted(ext.depends):
            with open(path, "rb") as fh:
                key.update(path.encode() + b"\0" + _METADATA.sub(b"", fh.read()) + b"\0")
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        return os.path.join("build", "fastnn-cache", f"{ext.name}-{key.hexdigest()[:24]}{suffix}")

    def build_extension(self, ext):
        cached = self._cache_path(ext)
        target = self.get_ext_fullpath(ext.name)
        if os.path.exists(cached):
            print(f"reusing {ext.name} compiled before from the same C code ({cached})")
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
            shutil.copyfile(cached, target)
            return
        super().build_extension(ext)
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        shutil.copyfile(target, cached + ".tmp")
        os.replace(cached + ".tmp", cached)  # a parallel build never sees half a file


setup(ext_modules=cythonize(extensions, compiler_directives=directives, nthreads=jobs),
      cmdclass={"build_ext": ParallelBuildExt})
