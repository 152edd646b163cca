"""One module per compress recipe, each registering a ``Step`` with ``@STEPS.register``."""
