"""The demo: held-out accuracy, deterministic cache key, identical outputs from the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def test_heldout_accuracy_and_cache_roundtrip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from edgeship import demo

    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(tmp_path))
    first = demo.build_model()                        # trains (or reads) into tmp cache
    cache = demo._cache_path()
    assert cache.is_file() and cache.parent == tmp_path
    assert demo._cache_path() == cache                 # key is stable for the same code + torch
    assert demo.heldout_accuracy(first) >= 0.95
    again = demo.build_model()                         # loaded from cache (weights_only)
    x = torch.from_numpy(next(demo.evaluation_data())["image"])
    with torch.no_grad():
        np.testing.assert_array_equal(first(x).numpy(), again(x).numpy())


def test_data_splits_are_disjoint_and_labelled() -> None:
    from edgeship import demo

    cal = list(demo.calibration_data())
    ev = list(demo.evaluation_data())
    assert cal and ev
    assert ev[0]["image"].shape[1:] == (1, 8, 8) and ev[0]["label"].shape == (32,)
    assert sum(len(b["image"]) for b in ev) == 360 and sum(len(b["image"]) for b in cal) == 1437
