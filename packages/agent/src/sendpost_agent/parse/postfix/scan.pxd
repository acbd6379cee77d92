# C types for scan.py when Cython compiles it (docs/parsing.md); the .py is the only source.
import cython
# The parse modules' own functions, called as C functions (not looked up and called as objects).
from sendpost_agent.parse.events cimport analyse_reply, event_id, event_type_for
from sendpost_agent.parse.postfix.lines cimport stamp_of

@cython.locals(text=str, at=Py_ssize_t, line_end=Py_ssize_t, start=Py_ssize_t,
               after=Py_ssize_t, kind=Py_ssize_t, parsed=Py_ssize_t, truncated=Py_ssize_t, invalid=Py_ssize_t,
               lines=Py_ssize_t, close=Py_ssize_t, dirty=bint,
               ops=list, best=dict, shared=dict, body=str, line=str, status=str,
               spans=cython.int[::1], count=Py_ssize_t, i=Py_ssize_t, b=Py_ssize_t, width=Py_ssize_t)
cpdef scan(bytes data)

@cython.locals(c=str, d=str, r=str, e=str, m=str, f=str, q=str, tail=str, head=str, eid=str,
               dsns=dict, codes=dict, heads=dict)
cpdef prepare(str event_type, object reply, object recipient, object dsn, str queue_id,
              str line, object final=*, bint plain=*)

cdef str _member(str key, str text, bint plain)

@cython.locals(member=str, commands=dict)
cpdef str _command_json(str command)

@cython.locals(at=Py_ssize_t)
cdef object _group(str text, int[::1] spans, Py_ssize_t b, Py_ssize_t group)
