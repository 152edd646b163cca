"""Package discovery for the package-dir mapping (everything else is in pyproject.toml).

``exporters/``, ``calibration/``, ``runtimes/`` and ``devices/`` stay at the top of the repo
(one folder per component) but install as ``edgeship.exporters`` etc., so nothing generic lands
at the top of site-packages. setuptools' own ``find`` cannot rename what it finds, so the
packages are discovered here from the mapping in pyproject.toml, never listed by hand: a new
subpackage is in the wheel without an edit.
"""

from pathlib import Path

import tomllib
from setuptools import find_packages, setup

HERE = Path(__file__).parent
MAPPING = tomllib.loads((HERE / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def discover() -> list[str]:
    roots = {"edgeship": "edgeship", **MAPPING}
    packages = []
    for name, folder in roots.items():
        packages.append(name)
        packages += [f"{name}.{sub}" for sub in find_packages(str(HERE / folder)) if f"{name}.{sub}" not in roots]
    return sorted(set(packages))


setup(packages=discover(), package_dir=MAPPING)
