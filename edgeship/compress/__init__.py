"""compress: a smaller PyTorch model, before export (pruning, low-rank, distillation, 4-bit).

``[compress] steps`` is one ordered list of recipes; each is a ``Step`` registered in
``edgeship/compress/steps/<kind>.py``. ``stage.compress`` runs them on the original model,
measures every intermediate model against the original FP32 model and the labels, and writes
``build/compressed/<model>/`` (a torch.export ``model.pt2`` plus ``manifest.json``), which
``export`` then uses (``--from compressed|original``).
"""
