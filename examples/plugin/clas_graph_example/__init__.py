"""An example clas_graph plugin: a task kind, an intervention kind and a readout, defined outside clas_graph."""
