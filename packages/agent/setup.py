"""Compiles the parser's own Python modules with Cython (``sendpost_agent.parse.compiled``).

Everything else is declared in pyproject.toml. The modules named in ``compiled.MODULES`` are
compiled as they are (Cython's pure-Python mode: the ``.py`` files are the only source) into
extension modules beside them; ``_built.py`` records the CRC-32 of each source compiled, so that
a stale build is noticed. Without a C compiler the build still succeeds (``optional=True``) and
the same modules run as Python.
"""

import ast
import zlib
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
SELECTOR = HERE / "src/sendpost_agent/parse/compiled.py"
MODULES = next(
    ast.literal_eval(node.value)
    for node in ast.parse(SELECTOR.read_text()).body
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MODULES"
)
sources = {name: "src/" + name.replace(".", "/") + ".py" for name in MODULES}
# compiled.checksum's rule: the CRC-32 of the file, in hex
digests = {name: f"{zlib.crc32((HERE / path).read_bytes()):08x}" for name, path in sources.items()}
SELECTOR.with_name("_built.py").write_text(
    '"""Written by setup.py: the CRC-32 of each module it compiled (see compiled.py)."""\n\n'
    f"DIGESTS = {digests!r}\n"
)

setup(
    ext_modules=cythonize(
        [
            Extension(name, [path], extra_compile_args=["-O2"], optional=True)
            for name, path in sources.items()
        ],
        compiler_directives={"language_level": 3},
    )
)
