"""Local stand-ins for the far side of the wires we do not own (tests, benchmarks, the demo).

Real components only: a private Postfix instance from Debian's packages, aiosmtpd sinks that answer
like real MTAs, and an authoritative DNS server on loopback.
"""
