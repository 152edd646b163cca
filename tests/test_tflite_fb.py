"""The .tflite writer: shared quantization vectors change the file's size, never the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeship.artifact.manifest import read_manifest


def _plain_copy(src: Path, dst: Path) -> None:
    """The same model packed by the schema's own object API: one vector per tensor."""
    from edgeship.exporters import _tflite_fb as fb

    data, stats = fb.pack(fb.read(src), share=False)
    assert stats["shared"] == 0
    dst.write_bytes(data)


def _run(path: Path, feeds: list[np.ndarray]) -> tuple[list[np.ndarray], list[tuple]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    outs = []
    for x in feeds:
        it.set_tensor(inp["index"], x)
        it.invoke()
        outs.append(it.get_tensor(out["index"]).copy())
    params = []
    for d in it.get_tensor_details():
        q = d["quantization_parameters"]
        params.append((d["name"], q["scales"].tolist(), q["zero_points"].tolist(), q["quantized_dimension"]))
    return outs, sorted(params)


def test_shared_vectors_are_smaller_and_run_bit_identically(demo_project, tmp_path: Path) -> None:
    cfg, _ = demo_project
    art = cfg.artifacts_dir / "tflite-int8"
    shared = art / "model.tflite"
    plain = tmp_path / "plain.tflite"
    _plain_copy(shared, plain)
    serialization = read_manifest(art).recipe["serialization"]
    assert serialization["shared"] > 0
    # every shared reference is a per-channel vector (>= 8 channels) no longer written again
    assert plain.stat().st_size - shared.stat().st_size >= 8 * 8 * serialization["shared"] // 2
    feeds = [np.random.default_rng(s).random((1, 1, 8, 8), dtype=np.float32) * 16 for s in range(4)]
    out_shared, params_shared = _run(shared, feeds)
    out_plain, params_plain = _run(plain, feeds)
    assert all(np.array_equal(a, b) for a, b in zip(out_shared, out_plain))
    assert params_shared == params_plain
    assert any(len(scales) > 1 for _, scales, _, _ in params_shared)   # per-channel tensors were there


def test_quantizer_outputs_are_rewritten_with_inline_weights(demo_project) -> None:
    """ai-edge-quantizer keeps weights behind the flatbuffer (buffer offsets); the artifact has
    every constant inline and whole, so nothing was dropped when it was rewritten."""
    from ai_edge_litert import schema_py_generated as s

    itemsize = {s.TensorType.FLOAT32: 4, s.TensorType.FLOAT16: 2, s.TensorType.INT8: 1, s.TensorType.INT32: 4}
    cfg, _ = demo_project
    for p in ("fp16", "int8-dynamic", "int8-weight"):
        path = cfg.artifacts_dir / f"tflite-{p}" / "model.tflite"
        model = s.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
        assert all((b.offset or 0) <= 1 for b in model.buffers), p
        constants = [t for t in model.subgraphs[0].tensors if model.buffers[t.buffer].data is not None]
        assert len(constants) >= 4, p
        for t in constants:
            if t.type in itemsize:
                assert len(model.buffers[t.buffer].data) == int(np.prod(t.shape)) * itemsize[t.type], (p, t.name)
        vectors = read_manifest(path.parent).recipe["serialization"]["quantization_vectors"]
        assert vectors == 0 if p == "fp16" else vectors > 0, (p, vectors)   # float16 casting has no scales
