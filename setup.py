"""Builds the optional C kernels; without a compiler credcheck installs and runs on its numpy kernels."""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Build the C extension when a compiler is present; otherwise warn and carry on."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            self._warn(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        print(f"WARNING: credcheck's C kernels were not built ({exc}); using the numpy kernels.")


setup(
    ext_modules=[
        Extension(
            "credcheck._kernels",
            ["src/credcheck/_kernels.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
