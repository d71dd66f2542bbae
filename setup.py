"""Build the Cython drizzle/blot core and map the source folders to packages.

All metadata lives in pyproject.toml.  The repository's top level is
``engine/`` and ``steps/``; they install as ``drizzleflow.engine`` and
``drizzleflow.steps`` (``drizzleflow`` itself is a namespace package).
"""
import os
import platform

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

ROOTS = {"engine": "drizzleflow.engine", "steps": "drizzleflow.steps"}
X86_64 = platform.machine().lower() in ("x86_64", "amd64") and os.name != "nt"


def find_packages():
    packages, package_dir = [], {}
    for folder, dotted in ROOTS.items():
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
            if "__init__.py" in filenames:
                name = dotted + dirpath[len(folder):].replace(os.sep, ".")
                packages.append(name)
                package_dir[name] = dirpath
    return packages, package_dir


def extensions():
    exts = []
    for dirpath, _, filenames in os.walk("steps"):
        for fn in sorted(filenames):
            if fn.endswith(".pyx"):
                src = os.path.join(dirpath, fn)
                mod = "drizzleflow." + src[:-4].replace(os.sep, ".")
                flags = ["-O3", "-ffp-contract=off"]
                optional = False
                if fn.endswith("_avx2.pyx"):
                    # a second build of the drizzle core / blot for AVX2 CPUs (steps/drizzle/
                    # _native.py picks it at run time); no FMA: the same bits as the generic one
                    if not X86_64:
                        continue
                    flags += ["-mavx2", "-mno-fma"]
                    optional = True
                exts.append(Extension(
                    mod, [src],
                    include_dirs=[numpy.get_include()],
                    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                    extra_compile_args=flags,
                    optional=optional,
                ))
    return cythonize(exts, language_level=3, compiler_directives={
        "boundscheck": False, "wraparound": False, "cdivision": True,
        "initializedcheck": False, "nonecheck": False})


packages, package_dir = find_packages()
setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"drizzleflow.engine": ["*.yaml", "*.json"], "drizzleflow.steps": ["**/*.yaml", "**/*.json", "**/*.pyx"]},
    ext_modules=extensions(),
)
