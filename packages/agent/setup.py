"""Builds the optional compiled scanner (``sendpost_agent.parse.postfix._fastscan``) with Cython.

Everything else is declared in pyproject.toml. Without a C compiler the build still succeeds
(``optional=True``) and the agent uses the pure-Python scanner, which gives the same events.
"""

import zlib
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

SOURCE = "src/sendpost_agent/parse/postfix/_fastscan.pyx"
digest = f"{zlib.crc32(Path(__file__).parent.joinpath(SOURCE).read_bytes()):08x}"

setup(
    ext_modules=cythonize(
        [
            Extension(
                "sendpost_agent.parse.postfix._fastscan",
                [SOURCE],
                define_macros=[("SENDPOST_SOURCE_DIGEST", f'"{digest}"')],
                extra_compile_args=["-O2"],
                optional=True,
            )
        ],
        compiler_directives={"language_level": 3},
    )
)
