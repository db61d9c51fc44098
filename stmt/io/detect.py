"""Which reader a path needs: format detection from extension AND content.

=================  =====================================================
format             recognised by
=================  =====================================================
``mesh-folder``    a folder (of per-frame ``.obj`` / ``.ply`` files)
``amass-smplh``    a zip ``.npz`` whose ``poses`` is (T, 156), or per-part
                   keys (``root_orient``, ``pose_body``, ``pose_hand``)
``amass-smplx``    a zip ``.npz`` whose ``poses`` is (T, 165), or per-part
                   keys including ``pose_jaw`` / ``pose_eye``
``mesh-npz``       a zip ``.npz`` with ``vertices`` (T, V, 3)
``bvh``            ``.bvh``, or a file starting with ``HIERARCHY``
``asf-amc``        ``.amc`` / ``.asf``, or a file starting with ``:FULLY-SPECIFIED``
                   / ``:DEGREES`` (AMC) or ``:version`` (ASF)
``joint-csv``      ``.csv`` whose header names joints' X, Y, Z columns (Kinect)
``joint-mat``      ``.mat``, or a file starting with ``MATLAB 5.0 MAT-file``: a
                   UTD-MHAD Kinect skeleton (``d_skel``, 20 x 3 x frames)
``fbx``            ``.fbx``, or a file starting with ``Kaydara FBX Binary`` or an
                   ASCII FBX header (``; FBX`` / ``FBXHeaderExtension``)
``gltf``           ``.glb`` / ``.vrma`` starting with ``glTF``, or ``.gltf`` /
                   any JSON file with an ``"asset"`` object
=================  =====================================================

The content decides first (:func:`sniff`): a zip archive is an ``.npz``, text
starting with ``HIERARCHY`` a BVH, Acclaim header lines an ASF/AMC, whatever the
extension says (an AMASS ``.npz`` renamed ``.bvh`` is read as what it is; text
with a UTF-8/UTF-16/UTF-32 byte-order mark is recognised too). Content that names
no format leaves it to the extension, and the reader of that format reports what
is wrong (an ``.npz`` that is not a zip archive is an
:class:`~stmt.errors.InputError`, not a guess).

``FILE#TAKE`` names one take of an FBX or glTF file with several
(:func:`stmt.io.scenegraph.split_take`); its format is the file's.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from stmt.errors import InputError
from stmt.fileio import text_encoding
from stmt.io.joints_csv import MIN_JOINTS, looks_like_joint_csv
from stmt.io.joints_mat import MAT_MAGIC
from stmt.io.scenegraph import split_take
from stmt.npz import ZIP_MAGIC, key_list, npz_array, open_npz

FORMATS = (
    "amass-smplh", "amass-smplx", "bvh", "asf-amc", "joint-csv", "joint-mat", "mesh-npz",
    "mesh-folder", "fbx", "gltf",
)  # fmt: skip
SKELETON_FORMATS = (
    "bvh",
    "asf-amc",
    "joint-csv",
    "joint-mat",
    "fbx",
    "gltf",
)  # posed through stmt.retarget
#: Joint positions a sensor tracked (Kinect and the like: no bones, noisier than motion
#: capture). A model is less sure on them, so the "unknown" rule has a threshold of its
#: own for them (:func:`input_kind`); ``TRACKED_SUFFIXES`` are their file suffixes, what
#: the file keys of a prepared cache tell.
TRACKED_FORMATS = ("joint-csv", "joint-mat")
TRACKED_SUFFIXES = (".csv", ".mat")
SCENE_SUFFIXES = (".fbx", ".glb", ".gltf", ".vrma")  # formats with takes (FILE#TAKE)
MESH_SUFFIXES = (".obj", ".ply")
SUPPORTED = (
    "expected an AMASS or mesh-sequence .npz, a .bvh, an .amc/.asf, an .fbx, a .glb/.gltf, "
    "a joint-position .csv or UTD-MHAD skeleton .mat, "
    "or a folder of per-frame .obj/.ply files"
)


def input_kind(fmt: str) -> str:
    """ "tracked" for joint positions a sensor tracked (:data:`TRACKED_FORMATS`), else
    "mocap" (motion capture and animation: skeletons, body parameters, meshes)."""
    return "tracked" if fmt in TRACKED_FORMATS else "mocap"


def _npz_format(path: Path) -> str:
    npz = open_npz(path, SUPPORTED)
    keys = set(npz.files)
    if "poses" in keys:
        poses = npz_array(npz, path, "poses")
        width = poses.shape[1] if poses.ndim == 2 else None
        if width == 156:
            return "amass-smplh"
        if width == 165:
            return "amass-smplx"
        raise InputError(
            path,
            f"poses has shape {poses.shape}; expected (T, 156) for AMASS SMPL+H "
            "or (T, 165) for AMASS SMPL-X",
        )
    if {"root_orient", "pose_body"} <= keys:
        return "amass-smplx" if keys & {"pose_jaw", "pose_eye"} else "amass-smplh"
    if "vertices" in keys:
        return "mesh-npz"
    if any(k.endswith("/data.pkl") for k in keys):  # torch.save's zip layout
        raise InputError(
            path, "a PyTorch checkpoint, not a MoCap file; give a checkpoint with --ckpt"
        )
    raise InputError(
        path,
        "expected 'poses' (AMASS) or 'vertices' (mesh sequence) in the .npz; keys found: "
        f"{key_list(keys)}",
    )


_ACCLAIM = (":FULLY-SPECIFIED", ":DEGREES", ":RADIANS", ":VERSION", ":NAME", ":UNITS", ":ROOT",
            ":BONEDATA", "#!OML:ASF")  # fmt: skip


def sniff(head: bytes) -> str | None:
    """The format family the first bytes of a file name: "npz" (a zip archive), "npy",
    "bvh", "asf-amc", or None."""
    if head.startswith(ZIP_MAGIC):
        return "npz"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    encoding, skip = text_encoding(head)
    text = head[skip:].decode(encoding, errors="ignore").lstrip()
    if text[:9].upper() == "HIERARCHY":
        return "bvh"
    lines = [line.strip().upper() for line in text.splitlines()[:20]]
    if any(line.startswith(_ACCLAIM) for line in lines):
        return "asf-amc"
    return None


def detect_format(path: str | Path) -> str:
    """The format of ``path``: one of :data:`FORMATS`, or InputError.

    The content decides first (:func:`sniff`: a zip archive, ``HIERARCHY``, Acclaim
    header lines), the extension where the content names no format; an ``.npz`` is
    opened to tell AMASS SMPL+H / SMPL-X parameters from a mesh sequence.
    """
    path, take = split_take(path)
    if take is not None:
        fmt = detect_format(path)
        if fmt not in ("fbx", "gltf"):
            raise InputError(path, f"'#{take}' names a take, but a {fmt} file has no takes")
        return fmt
    if path.is_dir():
        return "mesh-folder"
    if not path.exists():
        if path.is_symlink():
            try:
                path.resolve(strict=True)
                why = "a broken symbolic link"
            except RuntimeError:  # Python < 3.13: a loop
                why = "a symbolic link that loops back on itself"
            except OSError as err:
                loop = err.errno == errno.ELOOP
                why = (
                    "a symbolic link that loops back on itself"
                    if loop
                    else (f"a broken symbolic link (to {os.readlink(path)})")
                )
            raise InputError(path, f"is {why}")
        raise InputError(path, "no such file or folder")
    if not path.is_file():
        raise InputError(path, f"not a regular file; {SUPPORTED}")
    suffix = path.suffix.lower()
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as err:
        raise InputError(path, f"cannot be read ({err.strerror})") from None
    kind = sniff(head)
    if kind == "npz" or (kind in (None, "npy") and suffix == ".npz"):
        return _npz_format(path)  # (not a zip archive: open_npz says so)
    if kind in ("bvh", "asf-amc"):
        return kind
    scene = _sniff_scene(head)
    if scene is not None:
        return scene
    if head.startswith(MAT_MAGIC) or suffix == ".mat":
        return "joint-mat"  # (a .mat that is not a MATLAB 5 file: its reader says so)
    if suffix == ".bvh":
        return "bvh"
    if suffix in (".amc", ".asf"):
        return "asf-amc"
    if suffix in SCENE_SUFFIXES:
        return _scene_format(path, suffix)
    if suffix == ".csv":
        if looks_like_joint_csv(path):
            return "joint-csv"
        raise InputError(
            path,
            f"a .csv without a header naming at least {MIN_JOINTS} joints' X, Y, Z columns; "
            "not a joint-position file",
        )
    if suffix in MESH_SUFFIXES:
        raise InputError(
            path,
            "a single mesh file is not a sequence; put the per-frame meshes in a folder "
            "(ordered by the number in their names) and pass the folder",
        )
    if kind == "npy":
        raise InputError(path, f"a single .npy array, not a MoCap file; {SUPPORTED}")
    raise InputError(path, f"unrecognised file format; {SUPPORTED}")


def _sniff_scene(head: bytes) -> str | None:
    """The format ("fbx" or "gltf") a file's first bytes show, or None."""
    if head.startswith(b"Kaydara FBX Binary"):
        return "fbx"
    if head.startswith(b"glTF"):
        return "gltf"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").decode("latin-1")
    if text.startswith("; FBX") or "FBXHeaderExtension" in text:
        return "fbx"
    if text.startswith("{") and '"asset"' in text:
        return "gltf"
    return None


def _scene_format(path: Path, suffix: str) -> str:
    """The format of an ``.fbx`` / ``.glb`` / ``.gltf`` / ``.vrma`` file, confirmed by its
    first bytes (a ``.gltf`` whose ``asset`` comes late is trusted to its reader)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    found = _sniff_scene(head)
    want = "fbx" if suffix == ".fbx" else "gltf"
    if found == want or (want == "gltf" and suffix == ".gltf" and head.lstrip().startswith(b"{")):
        return want
    what = "an FBX file" if want == "fbx" else "a glTF file"
    if not head:
        raise InputError(path, f"is empty; expected {what}")
    raise InputError(path, f"not {what}: its first bytes are no {want.upper()} header")
