"""Events: the values every featureplane component exchanges, and nothing that does I/O.

This package is the bottom layer. It defines the planes and components, the allowed cross-plane flows,
the event and command types, the audit record, the topic registry and the msgpack codec. Everything
here is pure: no sockets, files, clocks you cannot inject, or threads.
"""
