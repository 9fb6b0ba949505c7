"""Build the fastopt extension modules.

* ``fastopt._core`` (checks, Plan, threads, reductions, gathers, the EWA scan, the entry points)
  is built ONCE, with the baseline flags.
* ``fastopt._loops_<level>`` hold only the element loops and are built once per instruction-set
  level (baseline, AVX2+FMA+F16C, AVX-512); each exports a table of loop function pointers, and
  ``fastopt._dispatch`` installs the best table the CPU supports at import.
* The loops and the core's kernel-index switch are generated from the rule registry
  (``src/fastopt/_registry.py``) by rendering ``_loops_gen.pxi.tp`` and ``_core_gen.pxi.tp`` with
  Cython's Tempita before cythonizing.

Flags, and why:

* ``-O3 -fno-math-errno``: without ``-fno-math-errno`` gcc keeps a scalar ``sqrt`` call (to set
  ``errno``) and will not vectorize the RMSprop/Adam loops.
* ``-ffp-contract=off``: no silent a*b+c -> fma fusion.  Every element then gets the same IEEE
  operations whether it falls in the SIMD body, the scalar peel or the tail, so results are bitwise
  identical for every thread count (and across the three ISA builds).
* never the "fast math" flags (they change results: reassociation, NaN handling) and never
  ``-march=native`` by default (a wheel built on a
  new CPU would die with "Illegal instruction" on an older one).  ``FASTOPT_NATIVE=1`` opts in to a
  ``-march=native`` build of the top module for local experiments only.

OpenMP is probed by compiling a tiny program.  Without it the modules are built serially and a loud
warning is printed; the build never fails for lack of OpenMP.
"""

import os
import platform
import shutil
import sys
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

BASE_FLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=off"]
X86 = platform.machine().lower() in {"x86_64", "amd64", "i386", "i686", "x86"}
ISA_FLAGS = {"baseline": []}
if X86:
    ISA_FLAGS["avx2"] = ["-mavx2", "-mfma", "-mf16c"]
    ISA_FLAGS["avx512"] = [
        "-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq",
        "-mprefer-vector-width=512",
    ]
if os.environ.get("FASTOPT_NATIVE") == "1":  # local experiments only, never the default
    ISA_FLAGS[list(ISA_FLAGS)[-1]] += ["-march=native"]


def _probe_openmp():
    """Return the OpenMP compile/link flags if a test program builds with them, else None."""
    if os.environ.get("FASTOPT_DISABLE_OPENMP") == "1":
        return None
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    flag = "/openmp" if compiler.compiler_type == "msvc" else "-fopenmp"
    tmp = tempfile.mkdtemp(prefix="fastopt-omp-")
    src = os.path.join(tmp, "probe.c")
    with open(src, "w") as f:
        f.write(textwrap.dedent("""
            #include <omp.h>
            int main(void) {
                int n = 0;
                #pragma omp parallel reduction(+:n)
                n += 1;
                return n > 0 ? 0 : 1;
            }
        """))
    try:
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=[flag])
        compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=[flag])
        return flag
    except Exception:  # noqa: BLE001 - any compiler failure means "no OpenMP"
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _render_templates():
    """Render the registry-driven templates (<name>.pxi.tp -> <name>.pxi) next to them."""
    import runpy

    from Cython.Tempita import Template

    reg = runpy.run_path(os.path.join("src", "fastopt", "_registry.py"))
    layout, n_kernels = reg["layout"]()
    namespace = {"RULES": reg["RULES"], "LAYOUT": layout, "N_KERNELS": n_kernels,
                 "OPTION_BITS": reg["OPTION_BITS"], "combos": reg["combos"],
                 "MAX_OPS": reg["MAX_OPS"], "REQUIRED": reg["REQUIRED"],
                 "scalar_hypers": reg["scalar_hypers"], "has_hyper": reg["has_hyper"]}
    for name in ("_loops_gen", "_core_gen", "_entry_gen"):
        src = os.path.join("src", "fastopt", f"{name}.pxi.tp")
        with open(src) as f:
            text = Template(f.read(), name=src).substitute(namespace)
        out = os.path.join("src", "fastopt", f"{name}.pxi")
        header = f"# GENERATED from {name}.pxi.tp and _registry.py by setup.py: do not edit.\n"
        old = open(out).read() if os.path.exists(out) else None
        if old != header + text:          # keep the mtime (and Cython's cache) when unchanged
            with open(out, "w") as f:
                f.write(header + text)


_render_templates()
OPENMP_FLAG = _probe_openmp()
if OPENMP_FLAG is None:
    bar = "!" * 78
    why = ("disabled by FASTOPT_DISABLE_OPENMP=1" if os.environ.get("FASTOPT_DISABLE_OPENMP") == "1"
           else "NOT FOUND")
    print(f"\n{bar}\n"
          f"fastopt: OpenMP {why} - building SERIAL kernels (one thread only).\n"
          "Install an OpenMP-capable compiler (gcc, or clang with libomp) and rebuild for threads.\n"
          f"{bar}\n", file=sys.stderr)

omp = [OPENMP_FLAG] if OPENMP_FLAG else []
build_info = {"openmp": OPENMP_FLAG is not None, "isa_flags": {}}
include = [np.get_include(), "src/fastopt"]
macros = [("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")]
extensions = [Extension(
    "fastopt._core", ["src/fastopt/_core.pyx"], include_dirs=include, define_macros=macros,
    extra_compile_args=BASE_FLAGS + omp, extra_link_args=omp,
)]
build_info["core_flags"] = " ".join(BASE_FLAGS + omp)
for isa, flags in ISA_FLAGS.items():
    cflags = BASE_FLAGS + flags
    build_info["isa_flags"][isa] = " ".join(cflags)
    extensions.append(Extension(
        f"fastopt._loops_{isa}", [f"src/fastopt/_loops_{isa}.pyx"], include_dirs=include,
        define_macros=macros, extra_compile_args=cflags,
    ))

with open("src/fastopt/_build_info.py", "w") as f:
    f.write("# Generated by setup.py at build time. Do not edit.\n")
    f.write(f"OPENMP = {build_info['openmp']!r}\n")
    f.write(f"ISA_FLAGS = {build_info['isa_flags']!r}\n")
    f.write(f"CORE_FLAGS = {build_info['core_flags']!r}\n")


class ParallelBuildExt(build_ext):
    """Compile the ISA builds side by side (they are independent)."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1


setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            # boundscheck/wraparound stay ON: they guard Python-object indexing (lists, tuples)
            # and cost nothing in the nogil loops, which index raw pointers only.
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
            "binding": True,
        },
    ),
    cmdclass={"build_ext": ParallelBuildExt},
)
