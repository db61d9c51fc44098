"""Kinect v1 skeletons in MATLAB files, as UTD-MHAD stores them: parsed into
:class:`~stmt.motion.JointPositions`, never posed here.

UTD-MHAD (Chen, Jafari and Kehtarnavaz, ICIP 2015) writes each take as
``a<action>_s<subject>_t<trial>_skeleton.mat`` holding one array ``d_skel`` of shape
(20, 3, T): the 20 joints of a Kinect v1 in the order of :data:`KINECT_V1_ORDER`
(the dataset's ``Skeleton_joint_order.txt``), x, y, z in metres (y up), at 30 frames
per second. The names are those of a joint-position CSV from a Kinect, a rig
:mod:`stmt.retarget` knows, so such a file is posed as a Kinect CSV is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stmt import limits
from stmt.errors import InputError
from stmt.motion import JointPositions

#: The 20 joints of ``d_skel``, in its order (Kinect v1 names).
KINECT_V1_ORDER = (
    "Head", "ShoulderCenter", "Spine", "HipCenter", "ShoulderLeft", "ElbowLeft", "WristLeft",
    "HandLeft", "ShoulderRight", "ElbowRight", "WristRight", "HandRight", "HipLeft",
    "KneeLeft", "AnkleLeft", "FootLeft", "HipRight", "KneeRight", "AnkleRight", "FootRight",
)  # fmt: skip
KEY = "d_skel"
FPS = 30.0  # UTD-MHAD's Kinect rate (the file has no time stamps)
#: the first bytes of a MATLAB 5 / 7 file (7.3 files are HDF5, which scipy does not read)
MAT_MAGIC = b"MATLAB 5.0 MAT-file"
EXPECTED = f"a UTD-MHAD skeleton .mat ('{KEY}', 20 x 3 x frames, Kinect v1 joints)"


def read_joint_mat(path: str | Path) -> JointPositions:
    """Parse a UTD-MHAD skeleton ``.mat`` (module docstring). Raises InputError naming
    the file and what was expected for anything else."""
    from scipy.io import loadmat  # only this reader needs it

    path = Path(path)
    limits.check_text_size(path)
    try:
        with open(path, "rb") as f:
            if not f.read(len(MAT_MAGIC)).startswith(MAT_MAGIC):
                raise InputError(path, f"not a MATLAB 5 file; expected {EXPECTED}")
        content = loadmat(path, variable_names=[KEY])
    except OSError as e:
        raise InputError(path, f"cannot read the file ({e.strerror or e})") from None
    except (ValueError, TypeError, IndexError, KeyError, EOFError, NotImplementedError) as e:
        raise InputError(path, f"not a readable MATLAB file ({e}); expected {EXPECTED}") from None
    if KEY not in content:
        raise InputError(path, f"no '{KEY}' array in the file; expected {EXPECTED}")
    skel = np.asarray(content[KEY])
    if skel.ndim != 3 or skel.shape[:2] != (len(KINECT_V1_ORDER), 3):
        raise InputError(path, f"'{KEY}' has shape {skel.shape}; expected (20, 3, frames)")
    if skel.dtype.kind not in "iuf":
        raise InputError(path, f"'{KEY}' holds {skel.dtype} values; expected numbers")
    if skel.shape[2] < 2:
        raise InputError(path, f"{skel.shape[2]} frame(s); a motion needs at least 2")
    limits.check_frames(path, skel.shape[2], FPS)
    positions = skel.astype(np.float64).transpose(2, 0, 1)  # (T, 20, 3)
    if not np.isfinite(positions).all():
        raise InputError(path, f"NaN or Inf among the values of '{KEY}'")
    return JointPositions(KINECT_V1_ORDER, positions, FPS, source=path, format="joint-mat")
