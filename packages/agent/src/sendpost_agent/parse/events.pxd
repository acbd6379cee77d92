# C types for events.py when Cython compiles it (docs/parsing.md); the .py is the only source.
import cython

@cython.locals(command=object, description=object, code=object, size=Py_ssize_t,
               stripped=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t, cut=Py_ssize_t,
               space=Py_ssize_t)
cpdef analyse_reply(str text)

@cython.locals(i=Py_ssize_t)
cdef bint _has_space(str text, Py_ssize_t start, Py_ssize_t end)

cpdef event_type_for(str status, object dsn)

@cython.locals(key=bytes)
cpdef str event_id(str line, str event_type, object recipient)
