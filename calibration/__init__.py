"""Calibration and evaluation data shared by all exporters.

A source is either ``"pkg.module:fn"`` (a callable returning an iterable of batches, each a
``dict[str, numpy.ndarray]`` keyed by input name, leading axis = batch) or a directory of
``.npz`` files (arrays keyed by input name) / ``.npy`` files (single-input models). Batches are
re-cut to the batch size of the model's input specs, so exporters see exactly what the
artifact will be fed.
"""

from edgeship.calibration.sources import DataSource, Sample, evaluation_samples, load_samples

__all__ = ["DataSource", "Sample", "evaluation_samples", "load_samples"]
