"""Read and write .tflite flatbuffers with the schema that ai-edge-litert ships.

``write`` stores each distinct quantization vector once. TFLite keeps a scale and an int64
zero point per channel for every per-channel tensor, weights and their int32 biases alike;
symmetric weight quantization makes every one of those zero points 0, so a MobileNetV2 carries
~290 KB of identical zero vectors (7% of its int8 file). FlatBuffers tables reference vectors by
offset, so identical vectors can be one vector referenced by many tensors: the interpreter
reads exactly the same values, the file is smaller. Weight buffers are never shared (delegates
may key packed-weight caches on their address).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def read(path: Path) -> Any:
    """The model as the schema's object API (``ModelT``), every weight buffer inline.

    ai-edge-quantizer writes weights behind the flatbuffer (buffer offset/size into the file);
    they are moved into the buffers so ``write`` keeps them. A file over 2 GB cannot be one
    flatbuffer and is refused.
    """
    from ai_edge_litert import schema_py_generated as s

    from edgeship.errors import ExportError

    if not fits(path):
        raise ExportError(f"{path}: over 2 GB, more than one flatbuffer holds; edgeship cannot rewrite it "
                          "(float I/O edges, integer-graph check); export a smaller model")
    raw = path.read_bytes()
    model = s.ModelT.InitFromPackedBuf(raw, 0)
    for b in model.buffers or []:
        if (b.offset or 0) > 1:
            b.data = np.frombuffer(raw, np.uint8, count=b.size, offset=b.offset)
            b.offset = b.size = 0
    return model


def fits(path: Path) -> bool:
    """Whether the file can be rewritten as one flatbuffer (32-bit offsets: under 2 GB)."""
    return path.stat().st_size < 2**31


def write(model: Any, path: Path) -> dict[str, int]:
    """Serialize ``model`` to ``path``, identical quantization vectors shared; returns
    ``{"quantization_vectors": references, "shared": references that reuse a vector}``."""
    data, stats = pack(model)
    path.write_bytes(data)
    return stats


def pack(model: Any, share: bool = True) -> tuple[bytes, dict[str, int]]:
    """The flatbuffer bytes of ``model``; ``share=False`` writes every vector out, as the
    schema's own object API does (the baseline the tests and benchmarks compare with).
    Quantization vectors of ``model`` become numpy arrays, shared ones the same array."""
    import flatbuffers

    canonical: dict[tuple[str, bytes], np.ndarray] = {}
    refs = shared = 0
    for sg in model.subgraphs or []:
        for t in sg.tensors or []:
            q = t.quantization
            if q is None:
                continue
            for field, dtype in (("scale", np.float32), ("zeroPoint", np.int64)):
                values = getattr(q, field)
                if values is None or len(values) == 0:
                    continue
                arr = np.ascontiguousarray(values, dtype=dtype)
                key = (arr.dtype.str, arr.tobytes())
                refs += 1
                if share and key in canonical:
                    shared += 1
                    arr = canonical[key]
                canonical.setdefault(key, arr)
                setattr(q, field, arr)

    class SharingBuilder(flatbuffers.Builder):  # type: ignore[misc]
        """Writes each interned array once and hands out its offset after that."""

        def __init__(self) -> None:
            super().__init__(1024)
            # ids of the interned arrays only: canonical keeps them alive, so no id is reused
            self.interned = {id(a) for a in canonical.values()}
            self.offsets: dict[int, int] = {}

        def CreateNumpyVector(self, x: np.ndarray) -> int:
            if id(x) not in self.interned:
                return int(super().CreateNumpyVector(x))
            if id(x) not in self.offsets:
                self.offsets[id(x)] = int(super().CreateNumpyVector(x))
            return self.offsets[id(x)]

    builder = SharingBuilder()
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), {"quantization_vectors": refs, "shared": shared}
