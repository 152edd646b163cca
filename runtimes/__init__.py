"""Runtimes: one file per runtime (onnxruntime.py, litert.py, coreml.py) plus runner.py.

This package is standalone: Python >= 3.8, numpy and the one runtime; it never imports
edgeship or torch, because it is pushed as-is to boards (``python3 -m <pkg>.runner``).
Modules here use relative imports only.
"""
