"""The inputs a profile feeds an artifact: one real sample when the config names data."""

from __future__ import annotations

import numpy as np

from edgeship.config import Config


def profiling_inputs(cfg: Config) -> dict[str, np.ndarray]:
    """First evaluation sample, else first calibration sample, else synthetic inputs."""
    from edgeship.calibration import DataSource, load_samples
    from edgeship.model.reference import synthetic_inputs

    for ref, key in ((cfg.data.evaluation, "data.evaluation"), (cfg.data.calibration, "data.calibration")):
        if ref is not None:
            return load_samples(DataSource(ref, key, cfg.root), cfg.model.inputs, 1, cfg.data.label_key)[0].inputs
    return synthetic_inputs(cfg.model.inputs)
