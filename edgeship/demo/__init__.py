"""The embedded demo: a small CNN for scikit-learn's 8x8 handwritten digits (1797 images).

Training is deterministic (fixed seeds, deterministic kernels) and takes a few seconds on two
cores; the weights are cached under ``build/cache/`` keyed by a hash of this file and the
torch version, and loaded back with ``weights_only=True``. Calibration uses the train split,
evaluation (with labels) the held-out test split; ``train_data`` (labelled train split) feeds
``[compress]`` distillation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.artifact.atomic import write_bytes_atomic
from edgeship.lazy import require

SEED = 0
TEST_FRACTION = 0.2
EPOCHS = 40
BATCH = 64


def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    datasets = require("sklearn.datasets", "demo", "the digits demo")
    selection = require("sklearn.model_selection", "demo", "the digits demo")
    digits = datasets.load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]   # N,1,8,8 in [0, 1]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = selection.train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SEED, stratify=y
    )
    return x_tr, x_te, y_tr, y_te


def _net() -> Any:
    nn = require("torch.nn", "torch")

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                nn.MaxPool2d(2),                                   # 4x4
                nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
            )
            self.classifier = nn.Linear(64, 10)

        def forward(self, x: Any) -> Any:
            return self.classifier(self.features(x).flatten(1))

    return DigitsCNN()


def _cache_path() -> Path:
    torch = require("torch", "torch")
    key = hashlib.sha256(Path(__file__).read_bytes() + torch.__version__.encode()).hexdigest()[:16]
    root = Path(os.environ.get("EDGESHIP_CACHE_DIR", "build/cache"))
    return root / f"digits_cnn-{key}.pt"


def _train() -> Any:
    torch = require("torch", "torch")
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    x_tr, _, y_tr, _ = _split()
    model = _net()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    gen = torch.Generator().manual_seed(SEED)
    from edgeship.determinism import deterministic

    with torch.random.fork_rng(), deterministic(torch):
        for _ in range(EPOCHS):
            model.train()
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), BATCH):
                idx = perm[i : i + BATCH]
                xb = xt[idx]
                # light augmentation: random 1-pixel shifts make the net robust to quantization noise
                shift = torch.randint(-1, 2, (2,), generator=gen).tolist()
                xb = torch.roll(xb, shifts=shift, dims=(2, 3))
                loss = torch.nn.functional.cross_entropy(model(xb), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
    return model.eval()




def build_model() -> Any:
    """Factory named in the demo edgeship.toml: the trained CNN in eval mode (cached)."""
    torch = require("torch", "torch")
    path = _cache_path()
    model = _net()
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    model = _train()
    import io

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    write_bytes_atomic(path, buf.getvalue())
    return model


def calibration_data() -> Iterator[dict[str, np.ndarray]]:
    """Train-split images in batches of 32, keyed by the model's input name."""
    x_tr, _, _, _ = _split()
    for i in range(0, len(x_tr), 32):
        yield {"image": x_tr[i : i + 32]}


def train_data() -> Iterator[dict[str, np.ndarray]]:
    """Train-split images with their labels (for [compress] distill); never the test split."""
    x_tr, _, y_tr, _ = _split()
    for i in range(0, len(x_tr), 64):
        yield {"image": x_tr[i : i + 64], "label": y_tr[i : i + 64]}


def evaluation_data() -> Iterator[dict[str, np.ndarray]]:
    """Held-out test-split images with their labels."""
    _, x_te, _, y_te = _split()
    for i in range(0, len(x_te), 32):
        yield {"image": x_te[i : i + 32], "label": y_te[i : i + 32]}


def heldout_accuracy(model: Any) -> float:
    """Top-1 accuracy of ``model`` on the held-out split (used by tests)."""
    torch = require("torch", "torch")
    _, x_te, _, y_te = _split()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_te)).argmax(1).numpy()
    return float((pred == y_te).mean())
