# C types for events.py when Cython compiles it (docs/parsing.md); the .py is the only source.
import cython

@cython.locals(text=str, body=str, stripped=str, rest=str, token=str, command=object,
               description=object, code=object, cut=Py_ssize_t, space=Py_ssize_t,
               n=Py_ssize_t)
cpdef analyse_reply(str text)

cpdef event_type_for(str status, object dsn)

@cython.locals(key=bytes)
cpdef str event_id(str line, str event_type, object recipient)
