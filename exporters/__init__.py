"""Exporters: one file per target (onnx.py, tflite.py, coreml.py) on the base in base.py."""

from edgeship.exporters.base import EXPORTERS, Exporter, ExportJob, ExportResult

__all__ = ["EXPORTERS", "ExportJob", "ExportResult", "Exporter"]
