"""Accuracy-aware INT8 (issue 15): per-layer error reports and budget-driven float fallback.

``layers`` holds the contract every backend implements (``Exporter.layer_report`` and
``ExportJob.keep_float``); the search and the ``explain`` command build on it.
"""
