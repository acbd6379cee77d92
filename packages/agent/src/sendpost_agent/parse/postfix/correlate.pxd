# C types for correlate.py when Cython compiles it (docs/parsing.md); the .py is the only source.
# Queue and Correlator become extension types: their attributes are C struct fields and the
# methods declared here are called directly, not looked up by name.
import cython
# The parse modules' own functions, called as C functions (not looked up and called as objects).
from sendpost_agent.parse.events cimport analyse_reply, event_type_for
from sendpost_agent.parse.postfix.scan cimport prepare

cdef class Queue:
    cdef public object uuid
    cdef public Py_ssize_t source
    cdef public object t
    cdef public object held
    cdef public object pending
    cdef public object children
    cpdef defer(self, object rcpt, object text, object dsn, object final)
    cpdef settle(self, object rcpt)
    cpdef list pending_items(self)

cdef class Correlator:
    cdef public object _is_internal
    cdef public dict queues
    cdef public dict orphans
    cdef public Py_ssize_t held
    cdef public object last_us
    cdef public object orphans_due
    cdef public object holding
    cdef public object orphan_order
    cdef public dict hops
    cdef public object hops_due
    cdef public dict recent
    cdef public object hop_order
    cdef public Py_ssize_t _recent_limit
    cdef public Py_ssize_t hop_lines
    cdef public Py_ssize_t uncorrelated
    cdef public Py_ssize_t hops_resolved
    cdef public Py_ssize_t hops_unresolved
    cdef public set touched

    @cython.locals(q=Queue)
    cpdef learn(self, object qid, object uuid, Py_ssize_t source, list out)
    @cython.locals(q=Queue, recent=dict)
    cpdef removed(self, object qid, list out)
    cpdef seen(self, object qid, list out, object micros=*)
    cpdef park(self, object qid, Queue q)
    @cython.locals(q=Queue, parent=Queue)
    cpdef reinjected(self, object qid, object parent_qid, list out)
    @cython.locals(q=Queue)
    cpdef outcome(self, object rec, object micros, list out)
    cpdef _hold(self, Queue q, object qid, list data, object micros)
    @cython.locals(q=Queue)
    cpdef Queue _queue(self, object qid)
    cpdef _learn(self, Queue q, object uuid, Py_ssize_t source, list out)
    cpdef _link_child(self, object child, object uuid, list out)
    cpdef _apply(self, Queue q, object rec, object micros, list out)
    @cython.locals(q=Queue)
    cpdef delivery(self, object qid, object stamp, object line, object recipient, object relay,
                   object status, object dsn, object text, object micros, list out,
                   object prepared=*, object final=*)
    cpdef _deliver(self, Queue q, object qid, object line, object recipient, object relay,
                   object status, object dsn, object text, object micros, list out,
                   object prepared=*, object final=*)
    cpdef _expire_message(self, Queue q, object rec, object micros, list out)
