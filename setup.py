"""Computes the package mapping; all metadata stays in pyproject.toml.

The repository's root folders install as subpackages of the ``megabus``
namespace (``bus/`` becomes ``megabus.bus``). setuptools' ``package-dir`` is the
one backend that does this and still supports editable installs; the package
list is computed so that a new subpackage can never be left out of the wheel.
"""

from setuptools import find_packages, setup

ROOTS = ("bus", "handlers", "agent", "router", "cli", "client", "config")
package_dir = {f"megabus.{root}": root for root in ROOTS}
packages = [
    f"megabus.{root}{'.' + sub if sub else ''}"
    for root in ROOTS
    for sub in ["", *find_packages(root)]
]
setup(package_dir=package_dir, packages=packages)
