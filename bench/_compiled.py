"""bench/_bench.pyx, the compiled micro-benchmarks, built on first use beside this file.

It is not part of the fastnn package (a wheel has no use for it): it cimports the compiled
core's .pxd files from the fastnn that Python imports (installed or a built source tree), so
it is built against that fastnn and calls into its extension modules.  The build takes about
a minute once; later imports reuse it until bench/_bench.pyx or fastnn changes.

    from _compiled import load_bench; _bench = load_bench()
"""
import importlib
import os
import subprocess
import sys

import fastnn

HERE = os.path.dirname(os.path.abspath(__file__))

_SETUP = r"""
import os, sys
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
include, src_c = sys.argv.pop(1), sys.argv.pop(1)
ext = Extension("_bench", ["_bench.pyx"], include_dirs=[src_c, numpy.get_include()],
                extra_compile_args=["-O3", "-fno-trapping-math"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
directives = dict(language_level=3, boundscheck=False, wraparound=False,
                  initializedcheck=False, cdivision=True)
setup(script_args=sys.argv[1:], ext_modules=cythonize([ext], include_path=[include],
                                                      compiler_directives=directives))
"""


def _stamp():
    # the fastnn this build belongs to: its location and its compiled core's files' times
    core = os.path.join(os.path.dirname(fastnn.__file__), "_core")
    times = sorted(int(os.path.getmtime(os.path.join(core, f))) for f in os.listdir(core)
                   if f.endswith((".pxd", ".so", ".pyd")))
    source = max(int(os.path.getmtime(os.path.join(HERE, f))) for f in ("_bench.pyx",
                                                                         "fma_peak.h"))
    return f"{os.path.dirname(fastnn.__file__)} {times} {source}"


def load_bench():
    """The compiled benchmark module, built first when it is missing or out of date."""
    stamp_path = os.path.join(HERE, "_bench.stamp")
    stamp = _stamp()
    current = os.path.exists(stamp_path) and open(stamp_path).read() == stamp
    if not current or importlib.util.find_spec("_bench") is None:
        package_parent = os.path.dirname(os.path.dirname(fastnn.__file__))
        src_c = os.path.join(os.path.dirname(HERE), "src_c")
        out = subprocess.run([sys.executable, "-c", _SETUP, package_parent, src_c,
                              "build_ext", "--inplace", "--build-temp",
                              os.path.join(HERE, "build")],
                             cwd=HERE, capture_output=True, text=True)
        if out.returncode != 0:
            raise ImportError("building bench/_bench.pyx failed:\n" + out.stdout[-2000:]
                              + out.stderr[-4000:])
        with open(stamp_path, "w") as fh:
            fh.write(stamp)
        sys.modules.pop("_bench", None)
        importlib.invalidate_caches()
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    return importlib.import_module("_bench")
