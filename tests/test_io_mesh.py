"""Mesh sequences: .npz with vertices, and folders of per-frame .obj/.ply files."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from stmt.errors import InputError
from stmt.reading import body_topology, read_sequence
from tests.helpers.smpl_model import body_like_mesh


@pytest.fixture(scope="module")
def motion():
    """A small closed mesh (300 vertices) moving over 4 frames: (T, V, 3), faces."""
    v, f = body_like_mesh(300, segments=12)
    frames = np.stack([v + [0.1 * t, 0.0, 0.02 * t] for t in range(4)]).astype(np.float32)
    return frames, f


def test_mesh_npz(motion, tmp_path):
    frames, faces = motion
    path = tmp_path / "clip.npz"
    np.savez(path, vertices=frames, faces=faces, fps=np.array(25.0))
    seq = read_sequence(path)
    assert (seq.format, seq.body, seq.fps, seq.num_frames) == ("mesh-npz", "mesh", 25.0, 4)
    np.testing.assert_array_equal(seq.vertices, frames)
    np.testing.assert_array_equal(seq.faces, faces)
    np.testing.assert_array_equal(seq.rest_vertices, frames[0])

    ids = np.array([5, 0, 299])
    sub = read_sequence(path, vertex_ids=ids)
    np.testing.assert_array_equal(sub.vertices, frames[:, ids])
    assert sub.faces.shape == faces.shape and sub.rest_vertices.shape == (300, 3)


def test_mesh_npz_without_fps_or_faces_is_30fps_points(motion, tmp_path):
    path = tmp_path / "points.npz"
    np.savez(path, vertices=motion[0].astype(np.float64))
    seq = read_sequence(path)
    assert seq.fps == 30.0 and seq.faces is None and seq.vertices.dtype == np.float32


def test_mesh_folder_numeric_order_and_vertex_order(motion, tmp_path):
    frames, faces = motion
    folder = tmp_path / "meshes"
    folder.mkdir()
    # frame 10 must come after frame 9 although "10" sorts first as text; mixed formats
    names = {0: "pose_0.obj", 1: "pose_9.ply", 2: "pose_10.obj", 3: "pose_11.ply"}
    for t, name in names.items():
        trimesh.Trimesh(frames[t], faces, process=False).export(folder / name)
    (folder / "notes.txt").write_text("ignored")
    seq = read_sequence(folder)
    assert (seq.format, seq.body, seq.fps) == ("mesh-folder", "mesh", 30.0)
    np.testing.assert_allclose(seq.vertices, frames, atol=1e-6)  # no reordering, no merging
    np.testing.assert_array_equal(seq.faces, faces)

    (folder / "fps.txt").write_text("50\n")
    assert read_sequence(folder).fps == 50.0
    rest, topo_faces, name = body_topology(fmt="mesh-folder", path=folder)
    assert name == "mesh"
    np.testing.assert_allclose(rest, frames[0], atol=1e-6)
    np.testing.assert_array_equal(topo_faces, faces)


def test_obj_with_texture_seams_keeps_vertex_order(tmp_path):
    folder = tmp_path / "uv"
    folder.mkdir()
    obj = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nvt 1 1\nvt .5 .5\n"
    obj += "f 4/4 2/2 1/1\nf 1/5 3/3 4/4\n"  # vertex 1 has two uvs: a naive loader splits it
    for t in range(2):
        (folder / f"f{t}.obj").write_text(obj)
    seq = read_sequence(folder)
    np.testing.assert_array_equal(seq.vertices[0], [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(seq.faces, [[3, 1, 0], [0, 2, 3]])


def test_vertex_ids_outside_the_mesh(motion, tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, vertices=motion[0])
    with pytest.raises(InputError, match="300 vertices"):
        read_sequence(path, vertex_ids=np.array([0, 300]))


def test_duplicate_frame_numbers(motion, tmp_path):
    frames, faces = motion
    folder = tmp_path / "dup"
    folder.mkdir()
    for name in ("a_1.obj", "b_01.obj"):
        trimesh.Trimesh(frames[0], faces, process=False).export(folder / name)
    with pytest.raises(InputError, match="frame number 1"):
        read_sequence(folder)
