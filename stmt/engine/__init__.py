"""Training: Lightning modules (:mod:`.classifier`, :mod:`.pretrainer`) and the LightningCLI (:mod:`.cli`).

Nothing is imported here, so ``import stmt.engine.cli`` stays light until a command runs.
"""
