"""export: PyTorch model -> one verified artifact per target, precision and CPU class (the
pipeline; the backends are in exporters/)."""
