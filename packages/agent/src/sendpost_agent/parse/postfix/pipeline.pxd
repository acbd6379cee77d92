# C types for pipeline.py when Cython compiles it (docs/parsing.md); the .py is the only source.
import cython
from sendpost_agent.parse.postfix.correlate cimport Correlator, Queue

@cython.locals(op=tuple, kind=Py_ssize_t, q=Queue, queues=dict, hops=dict)
cpdef _replay(Correlator corr, list ops, object resolve, list out)

@cython.locals(ops=list, rare=list, i=Py_ssize_t, op=tuple, kind=Py_ssize_t)
cpdef bytes pack(object scanned)
