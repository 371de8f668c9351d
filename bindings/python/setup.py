"""pip install ./bindings/python -- works offline (no build isolation needed: only
setuptools, which Debian's python3 has). When the repository's build tree holds
libloom, the installed package carries a copy beside itself."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

here = os.path.dirname(os.path.abspath(__file__))
built = os.path.join(here, "..", "..", "build", "lib", "libloom.so")


class build_with_library(build_py):
    """Copies build/lib/libloom.so into the built package (never into the source tree)."""

    def run(self):
        super().run()
        if os.path.isfile(built):
            shutil.copyfile(os.path.realpath(built), os.path.join(self.build_lib, "loom", "libloom.so"))


setup(
    name="loom",
    version="0.1.0",
    description="Loom: a deep learning framework with a native dependency engine (Python binding)",
    license="Apache-2.0",
    packages=["loom"],
    install_requires=["numpy"],
    python_requires=">=3.9",
    cmdclass={"build_py": build_with_library},
)
