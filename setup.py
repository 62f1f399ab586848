"""Maps the fixed top-level folders onto the `cococ` import package (cococ.ir -> ir/, ...).

Sub-packages are discovered so that a new folder with an __init__.py needs no edit here.
"""
from setuptools import find_packages, setup

ROOTS = {"cococ": "cococ", "cococ.ir": "ir", "cococ.frontend": "frontend", "cococ.passes": "passes",
         "cococ.backends": "backends", "cococ.runtime": "runtime"}

packages, package_dir = [], {}
for pkg, folder in ROOTS.items():
    package_dir[pkg] = folder
    packages.append(pkg)
    packages += [f"{pkg}.{sub}" for sub in find_packages(folder)]

# The files read at run time (through importlib.resources) ship by these globs alone: no
# MANIFEST.in, and include_package_data off (it only made setuptools warn that data/ looks like
# a package). tests/test_wheel.py checks that the wheel holds every file of these folders.
setup(packages=packages, package_dir=package_dir,
      package_data={pkg: ["*.lark", "*.json", "*.c", "*.h", "*.ld", "*.txt", "data/*"] for pkg in packages},
      include_package_data=False)
