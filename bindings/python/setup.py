"""pip install ./bindings/python — works offline (no build isolation needed: only
setuptools, which Debian's python3 has). When the repository's build tree holds
libloom, the package carries a copy beside itself."""
import os
import shutil

from setuptools import setup

here = os.path.dirname(os.path.abspath(__file__))
built = os.path.join(here, "..", "..", "build", "lib", "libloom.so")
bundled = os.path.join(here, "loom", "libloom.so")
if os.path.isfile(built):
    shutil.copyfile(os.path.realpath(built), bundled)

setup(
    name="loom",
    version="0.1.0",
    description="Loom: a deep learning framework with a native dependency engine (Python binding)",
    license="Apache-2.0",
    packages=["loom"],
    package_data={"loom": ["libloom.so"]},
    install_requires=["numpy"],
    python_requires=">=3.9",
)
