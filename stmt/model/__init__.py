"""The STMT model (:mod:`stmt.model.stmt`) and its pretraining wrapper (:mod:`stmt.model.stmt_mae`)."""

from stmt.model.stmt import STMT, PatchBranch, build_model, stmt_base, stmt_tiny

__all__ = ["STMT", "PatchBranch", "build_model", "stmt_base", "stmt_tiny"]
