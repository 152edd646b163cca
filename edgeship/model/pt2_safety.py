"""Is a ``.pt2`` archive safe to hand to ``torch.export.load`` without trusting its author?

``torch.export.load`` unpickles parts of the archive with the full pickle machinery, and a
pickle can run any code. A ``torch.export.save`` archive (torch 2.13; a zip whose members sit
under one root folder) holds:

    archive_format, archive_version, byteorder,     short text markers                safe
    .data/version, .data/serialization_id
    models/<m>.json                                 the serialized graph (JSON)      safe
    data/weights/<m>_weights_config.json,           JSON tables of the tensors       safe
    data/constants/<m>_constants_config.json
    data/weights/weight_N, data/constants/tensor_N  raw tensor storages, when the    safe
                                                    config says use_pickle: false
    the same with use_pickle: true                  torch.load(weights_only=False)  PICKLE
    data/constants/custom_obj_N, opaque_obj_N       torch._C._pickle_load_obj /     PICKLE
                                                    pickle.loads
    data/sample_inputs/<m>.pt                       torch.save zip (data.pkl); torch  restricted
                                                    loads it weights_only=True and,   pickle, see
                                                    if that fails, weights_only=False below
    extra/...                                       user text files, returned as str  safe
    anything else (older formats' serialized_*.pt,  unknown here                      refused
    data/aotinductor/ shared objects, *.pkl)

The sample inputs are checked by ``check_sample_inputs`` with ``torch.load(weights_only=True)``
(torch's restricted unpickler, which only rebuilds tensors and containers and never calls
arbitrary globals): if that succeeds, torch's own first attempt succeeds on the same bytes and
its unsafe fallback never runs. This module reads the zip only; it never imports torch.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

_MARKERS = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_CONFIG = re.compile(r"^data/(weights|constants)/([^/]+)_\1_config\.json$")
_MODEL = re.compile(r"^models/[^/]+\.json$")
_SAMPLE = re.compile(r"^data/sample_inputs/[^/]+\.pt$")
PICKLE_OPCODE = b"\x80"   # PROTO: every pickle of protocol >= 2 starts with it


def pickled_members(path: Path) -> tuple[list[str], list[str]]:
    """(refused members with why, sample-input members to check with the restricted loader)."""
    refused: list[str] = []
    samples: list[str] = []
    with zipfile.ZipFile(path) as z:
        names = [i.filename for i in z.infolist() if not i.is_dir()]
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1 or any("/" not in n for n in names):
            return [f"{n} (not a torch.export.save archive layout)" for n in names[:1]] or ["(empty archive)"], []
        root = roots.pop() + "/"
        rel = {n: n[len(root):] for n in names}
        raw: set[str] = set()   # storages the configs declare as raw (use_pickle false)
        for name, r in rel.items():
            m = _CONFIG.match(r)
            if not m:
                continue
            try:
                table = json.loads(z.read(name)).get("config", {})
                entries = list(table.values())
            except (ValueError, AttributeError):
                refused.append(f"{r} (unreadable config)")
                continue
            for meta in entries:
                file = str(meta.get("path_name", "")) if isinstance(meta, dict) else ""
                if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
                    refused.append(f"data/{m.group(1)}/{file} (pickled tensor)")
                elif m.group(1) == "constants" and not file.startswith("tensor_"):
                    refused.append(f"data/constants/{file} (pickled object)")
                else:
                    raw.add(f"data/{m.group(1)}/{file}")
        for name, r in rel.items():
            if r in _MARKERS or _MODEL.match(r) or _CONFIG.match(r) or r in raw:
                continue
            if r.startswith("extra/") and not r.endswith(".pkl"):
                continue
            if _SAMPLE.match(r):
                samples.append(name)
                continue
            if r.endswith(".pkl") or z.read(name)[:1] == PICKLE_OPCODE:
                refused.append(f"{r} (pickle)")
            else:
                refused.append(f"{r} (not a member torch.export.save writes as data)")
    return refused, samples
