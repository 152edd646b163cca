"""The FP32 PyTorch reference: built from a factory (``pkg.module:function``) or loaded from a
safe ``.pt2``; its outputs are what every artifact is measured against."""
