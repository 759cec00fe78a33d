"""How compiled plans run: readouts (what a trace returns), the shared-prefix schedule, generated readout and
session sources, the local and NDIF executors behind one interface, and the forward/generate API on top.
Import from the modules themselves (`clas_graph.backends` re-exports the public API)."""
