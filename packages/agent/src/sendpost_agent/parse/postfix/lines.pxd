# C types for lines.py when Cython compiles it (docs/parsing.md); the .py is the only source.
import cython

@cython.locals(pid=Py_ssize_t, host=Py_ssize_t)
cpdef stamp_of(str text, Py_ssize_t start, Py_ssize_t end)
