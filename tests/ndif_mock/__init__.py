"""An offline mock of NDIF (nnsight's remote execution service) for end-to-end tests.

``server.py`` speaks the wire protocol of nnsight 0.8.1's ``RemoteBackend`` and runs
the requests on a real model it loaded itself; ``harness.py`` starts it in a
subprocess and points nnsight's client at it.  See the module docstrings.

Nothing in this package may import ``clas_graph``: the server refuses that import
on purpose (a request that needs the package fails like it would on real NDIF).
"""
