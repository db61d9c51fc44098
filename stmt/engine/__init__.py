"""Training: Lightning modules (:mod:`.classifier`, :mod:`.pretrainer`, their base
:mod:`.module`), the LightningCLI (:mod:`.cli`) and calibration (:mod:`.calibration`).

These modules import torch and Lightning at their top: ``stmt.cli`` imports
:mod:`.cli` only when a Lightning command (fit, validate, test, predict) runs.
"""
