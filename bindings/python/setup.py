"""The Python binding's package. `./build.sh pack` builds the platform wheel
artifacts/loom-VERSION-cpXY-cpXY-linux_x86_64.whl, offline, carrying libloom
(`pip wheel --no-index --no-build-isolation`: only setuptools and wheel, which
Debian's python3-setuptools and python3-wheel provide). The library is taken
from $LOOM_LIBRARY_FOR_PACKAGE, or from the repository's build/lib."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

here = os.path.dirname(os.path.abspath(__file__))
built = os.environ.get("LOOM_LIBRARY_FOR_PACKAGE") or os.path.join(here, "..", "..", "build", "lib", "libloom.so")


class build_with_library(build_py):
    """Copies build/lib/libloom.so into the built package (never into the source tree)."""

    def run(self):
        super().run()
        if os.path.isfile(built):
            shutil.copyfile(os.path.realpath(built), os.path.join(self.build_lib, "loom", "libloom.so"))


class CarriesNativeLibrary(Distribution):
    """A platform wheel (cpXY-cpXY-linux_x86_64), since the package carries libloom."""

    def has_ext_modules(self):
        return os.path.isfile(built)


setup(
    name="loom",
    version="0.1.0",
    description="Loom: a deep learning framework with a native dependency engine (Python binding)",
    license="Apache-2.0",
    packages=["loom"],
    install_requires=["numpy"],
    python_requires=">=3.9",
    cmdclass={"build_py": build_with_library},
    distclass=CarriesNativeLibrary,
)
