"""`stmt inspect` over several files: each is described, a bad one does not stop the rest."""

from __future__ import annotations

import json

import numpy as np

from stmt.cli import main


def _mesh_npz(path, frames=5, verts=4):
    rng = np.random.default_rng(0)
    np.savez(
        path, vertices=rng.normal(size=(frames, verts, 3)).astype(np.float32), fps=np.array(10.0)
    )
    return path


def test_inspect_several_files_json_lines(tmp_path, capsys):
    a = _mesh_npz(tmp_path / "a.npz", frames=5)
    b = _mesh_npz(tmp_path / "b.npz", frames=20)
    assert main(["inspect", str(a), str(b), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["frames"] for r in rows] == [5, 20]
    assert rows[1]["duration_s"] == 2.0 and rows[0]["format"] == "mesh-npz"


def test_inspect_bad_file_among_good_ones(tmp_path, capsys):
    good = _mesh_npz(tmp_path / "good.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    assert main(["inspect", str(bad), str(good)]) == 2
    out, err = capsys.readouterr()
    assert "good.npz" in out and "mesh-npz" in out
    assert err.count("\n") == 1 and "bad.npz" in err and "Traceback" not in err


def test_inspect_reads_one_up_axis_for_the_whole_take(tmp_path, capsys, monkeypatch):
    """A take posed in chunks (long takes are, to bound memory) has one unit and up axis,
    read from the whole take as classify reads it: a chunk spent bending to the floor,
    read alone, took a horizontal axis for up and the printed extent was not the body's."""
    from stmt.commands import inspect
    from stmt.reading import read_sequence
    from tests.helpers import rigs

    path = rigs.to_bvh(rigs.cmu_bend(), tmp_path / "bend.bvh")
    whole = read_sequence(path)
    monkeypatch.setattr(inspect, "CHUNK", 8)  # 116 frames: 15 chunks, several all bent
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rig"].endswith("unit cmu, up y")
    extent = np.ptp(whole.vertices.reshape(-1, 3), axis=0)
    assert np.allclose(info["extent_m"], extent, atol=2e-3)


def test_inspect_says_what_reading_found_odd(tmp_path, capsys):
    """A T-pose before the take (CMU's BVH conversions) is posed as the first frame of the
    motion: inspect says so, once, in text and JSON; a plain take has no warning."""
    from tests.helpers import rigs

    clip = rigs.cmu_clip()
    tpose = rigs.to_bvh(rigs.with_first_frame(clip), tmp_path / "tpose.bvh")
    plain = rigs.to_bvh(clip, tmp_path / "plain.bvh")
    assert main(["inspect", str(tpose)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("warning")]
    assert len(lines) == 1 and "first frame is a pose apart from the motion" in lines[0]
    assert main(["inspect", str(tpose), str(plain), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows[0]["warnings"]) == 1 and "warnings" not in rows[1]
