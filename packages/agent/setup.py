"""Compiles the parser's own Python modules with Cython (``sendpost_agent.parse.compiled``).

Everything else is declared in pyproject.toml. The modules named in ``compiled.MODULES`` are
compiled as they are (Cython's pure-Python mode: the ``.py`` files are the only source) into
extension modules beside them, with the C types that the ``.pxd`` file of the same name
declares (Cython's "augmenting .pxd"); ``_built.py`` records the CRC-32 of each source
compiled, so that a stale build is noticed. Without a C compiler the build still succeeds
(``optional=True``) and the same modules run as Python.
"""

import importlib.util
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
SELECTOR = HERE / "src/sendpost_agent/parse/compiled.py"
_spec = importlib.util.spec_from_file_location("compiled", SELECTOR)
assert _spec is not None
assert _spec.loader is not None
compiled = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compiled)  # MODULES and checksum (it imports nothing of the agent)

sources = {name: "src/" + name.replace(".", "/") + ".py" for name in compiled.MODULES}
digests = {name: compiled.checksum(str(HERE / path)) for name, path in sources.items()}
BUILT = SELECTOR.with_name("_built.py")
record = (
    '"""Written by setup.py: the CRC-32 of each module it compiled (see compiled.py)."""\n\n'
    f"DIGESTS = {digests!r}\n"
)
if not BUILT.exists() or BUILT.read_text() != record:  # unchanged: left alone (uv's cache key)
    BUILT.write_text(record)

# The native line matcher (sendpost_agent/parse/linematch.py): C over PCRE2, linked statically
# (Debian's libpcre2-dev ships a position-independent libpcre2-8.a) with PCRE2's symbols kept
# inside the module, so the packaged agent needs no PCRE2 on the host. Optional like the rest:
# without PCRE2's headers the matchers run on Python's re.
LINEMATCH = Extension(
    "sendpost_agent.parse._linematch",
    ["src/sendpost_agent/parse/_linematch.pyx"],
    extra_compile_args=["-O2"],
    extra_link_args=["-Wl,-Bstatic", "-lpcre2-8", "-Wl,-Bdynamic", "-Wl,--exclude-libs,ALL"],
    optional=True,
)

setup(
    ext_modules=cythonize(
        [
            Extension(name, [path], extra_compile_args=["-O2"], optional=True)
            for name, path in sources.items()
        ]
        + [LINEMATCH],
        # The types Cython compiles with are in the .pxd files beside the modules; the Python
        # annotations are for mypy (an ``int`` there is any Python int, not a C integer).
        compiler_directives={"language_level": 3, "annotation_typing": False},
        include_path=["src"],
    )
)
