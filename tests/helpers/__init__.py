"""Test helpers: synthetic body-model and motion files (see :mod:`tests.helpers.smpl_model`)."""

from tests.helpers.smpl_model import (
    body_like_mesh,
    write_amass_npz,
    write_smplh_model,
    write_smplx_model,
)

__all__ = ["body_like_mesh", "write_amass_npz", "write_smplh_model", "write_smplx_model"]
