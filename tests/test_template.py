"""Template geometry: farthest point sampling order and geodesic distances."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from stmt import template as tmod
from stmt.template import Template, farthest_point_sampling, get_template


def _capsule():
    m = trimesh.creation.capsule(height=1.2, radius=0.2, count=[24, 24])
    v = np.asarray(m.vertices, dtype=np.float32)
    return np.asarray(m.faces, dtype=np.int64), v


def _brute_fps(points, n, start):
    chosen = [start]
    for _ in range(n - 1):
        d = np.min(((points[:, None] - points[chosen][None]) ** 2).sum(-1), axis=1)
        chosen.append(int(np.argmax(d)))
    return np.array(chosen)


def test_fps_prefix_property_start_and_brute_force_agreement():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(400, 3))
    ids = farthest_point_sampling(pts, 64)
    assert ids[0] == int(np.argmax(pts[:, 2]))  # starts at the highest point
    assert len(set(ids.tolist())) == 64
    np.testing.assert_array_equal(ids, _brute_fps(pts, 64, ids[0]))
    for p in (1, 8, 32):  # the first P points are an FPS of P points
        np.testing.assert_array_equal(farthest_point_sampling(pts, p), ids[:p])


def test_template_is_deterministic_and_cached(tmp_path, monkeypatch):
    faces, rest = _capsule()
    a = get_template(faces, rest, 48, cache_dir=tmp_path)
    files = list(tmp_path.glob("template_*.npz"))
    assert len(files) == 1 and a.key in files[0].name
    monkeypatch.setattr(tmod, "compute_template", lambda *a, **k: pytest.fail("recomputed"))
    b = get_template(faces, rest, 48, cache_dir=tmp_path)  # from the cache
    np.testing.assert_array_equal(a.vertex_ids, b.vertex_ids)
    np.testing.assert_array_equal(a.geodesic, b.geodesic)
    monkeypatch.undo()
    c = tmod.compute_template(faces, rest, 48)
    np.testing.assert_array_equal(a.vertex_ids, c.vertex_ids)
    np.testing.assert_allclose(a.geodesic, c.geodesic)
    small = get_template(faces, rest, 16, cache_dir=tmp_path)  # another N, another key
    assert small.key != a.key
    np.testing.assert_array_equal(small.vertex_ids, a.vertex_ids[:16])
    np.testing.assert_allclose(small.rest, rest[small.vertex_ids])


def test_a_template_written_first_by_another_process_is_the_one_used(tmp_path, monkeypatch):
    """Two processes computing one topology's template from different rest shapes (mesh
    files of one topology in --workers) end up with the same one: the first on disk; an
    unreadable entry is replaced. No temporary file is left."""
    faces, rest = _capsule()
    other = rest * np.float32(1.3) + np.float32([0.0, 0.0, 0.4])  # same faces, other shape
    compute = tmod.compute_template

    def compute_while_another_writes(faces, rest_vertices, n, key=""):
        mine = compute(faces, rest_vertices, n, key=key)
        compute(faces, other, n, key=key).save(tmp_path / f"template_{key}.npz")  # first
        return mine

    monkeypatch.setattr(tmod, "compute_template", compute_while_another_writes)
    got = get_template(faces, rest, 48, cache_dir=tmp_path)
    want = compute(faces, other, 48)
    np.testing.assert_allclose(got.rest, want.rest)  # the other process's, not this one's
    np.testing.assert_array_equal(got.vertex_ids, want.vertex_ids)
    assert not np.allclose(got.rest, compute(faces, rest, 48).rest)
    assert [f.name for f in tmp_path.iterdir()] == [f"template_{got.key}.npz"]
    monkeypatch.undo()
    (tmp_path / f"template_{got.key}.npz").write_bytes(b"not an npz")  # unreadable: replaced
    again = get_template(faces, rest, 48, cache_dir=tmp_path)
    np.testing.assert_allclose(again.rest, compute(faces, rest, 48).rest)
    np.testing.assert_allclose(Template.load(tmp_path / f"template_{got.key}.npz").rest, again.rest)


def test_geodesic_symmetric_above_euclidean_and_close_to_exact():
    faces, rest = _capsule()
    t = tmod.compute_template(faces, rest, 40)
    g = t.geodesic
    assert g.dtype == np.float32 and g.shape == (40, 40)
    np.testing.assert_array_equal(g, g.T)
    assert np.all(np.diag(g) == 0)
    p = rest[t.vertex_ids].astype(np.float64)
    euclid = np.linalg.norm(p[:, None] - p[None], axis=-1)
    assert np.all(g >= euclid - 1e-5)
    # pole to pole of a capsule: the cylinder height plus half a great circle
    top, bottom = np.argmax(rest[:, 2]), np.argmin(rest[:, 2])
    i, j = list(t.vertex_ids).index(top), list(t.vertex_ids).index(bottom)
    assert g[i, j] == pytest.approx(1.2 + np.pi * 0.2, rel=0.05)


def test_knn_graph_fallback_without_faces(tmp_path):
    _, rest = _capsule()
    t = get_template(None, rest, 32, cache_dir=tmp_path)
    g = t.geodesic
    np.testing.assert_array_equal(g, g.T)
    p = rest[t.vertex_ids].astype(np.float64)
    assert np.all(g >= np.linalg.norm(p[:, None] - p[None], axis=-1) - 1e-5)
    assert np.isfinite(g).all() and g.max() < 3.0


def test_save_load_roundtrip(tmp_path):
    faces, rest = _capsule()
    t = tmod.compute_template(faces, rest, 8)
    t.save(tmp_path / "t.npz")
    u = Template.load(tmp_path / "t.npz")
    assert u.key == t.key and u.num_points == 8
    np.testing.assert_array_equal(u.geodesic, t.geodesic)


def test_too_many_points_is_a_user_error():
    from stmt.errors import InputError

    faces, rest = _capsule()
    with pytest.raises(InputError, match="template points"):
        tmod.compute_template(faces, rest, len(rest) + 1)
