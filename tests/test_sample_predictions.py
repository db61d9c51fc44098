"""The shipped checkpoints label ``datasets/samples`` as they did when the outputs were stored.

``tests/data/sample_predictions.json`` holds what ``stmt classify datasets/samples
--recursive --json`` printed for each shipped checkpoint, every class ranked in every
window (``--top-k`` of all classes), written by this module before stmt's layers were
restructured (issue 27). A change that moves code without changing behaviour keeps
every label, span and warning, and every probability to 1e-4 (float32 rounding: two
runs on the machine that wrote them came 1.0e-6 apart, tests/test_compile.py found
2.6e-6 between two CPUs, and one CI machine 1.1e-5 between two processes); classes whose
probabilities are that close may rank either way.

Rewrite the file only when a change is meant to change the predictions:
``python -m tests.test_sample_predictions --write``.

anny splits the quads of its mesh along the shorter diagonal, computed in float32; six
quads of the default body have two equal diagonals, and CPUs round them differently (an
Intel Xeon one way, an AMD EPYC the other), so the body's face list tells the two kinds
apart. Between them the files posed on the body moved by up to 3e-4, more than the
tolerance (float32 rounding elsewhere: the geodesics of the two face lists are only
1.2e-7 m apart). The stored outputs are therefore kept per face list of the body
(``by_anny_faces``, keyed by its sha256); ``--write`` stores this machine's and drops
the other lists' outputs of checkpoints that have since changed (store those again on
such a machine). A mesh file (``datasets/samples/wave_mesh.npz``, anny's faces as an
Intel Xeon splits them) has a template of its own, made from its own faces and first
frame on every machine (:func:`stmt.template.template_key`), so ``--write`` gives its
records to every list.

The Intel list's records of ``stmt-realmix.ckpt`` as re-calibrated on 2026-12-08 (the
rule only: ``stmt calibrate --keep-temperature``, same weights and temperature) were
carried over from its records of the file before: the same probabilities, the
"unknown" flags at the new thresholds. Done the same way on the AMD EPYC list, the
carried-over records equalled what ``--write`` stored there.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from stmt.body import rest_mesh
from stmt.cli import main as stmt_main
from stmt.io.detect import detect_format

ROOT = Path(__file__).resolve().parents[1]
STORED = ROOT / "tests" / "data" / "sample_predictions.json"
CHECKPOINTS = (
    "checkpoints/stmt-realmix.ckpt",
    "checkpoints/stmt-realmix-v3.ckpt",
    "checkpoints/stmt-realmix-v2.ckpt",
    "checkpoints/stmt-realmix-v1.ckpt",
    "checkpoints/stmt-tiny-synthetic.ckpt",
)
TOLERANCE = 1e-4


def classify_samples(ckpt: str, capsys=None) -> list[dict]:
    """``stmt classify datasets/samples --recursive --json`` with every class ranked."""
    argv = ["classify", "datasets/samples", "--recursive", "--json", "--top-k", "10000",
            "--ckpt", ckpt, "--device", "cpu"]  # fmt: skip
    if capsys is None:  # --write: capture stdout ourselves
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = stmt_main(argv)
        out = buf.getvalue()
    else:
        code = stmt_main(argv)
        out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


def anny_faces_digest() -> str:
    """sha256 of the default body's face list on this machine (module docstring)."""
    faces = rest_mesh("anny")[1]
    return hashlib.sha256(np.ascontiguousarray(faces, dtype=np.int64).tobytes()).hexdigest()


def stored_outputs() -> dict:
    """The stored outputs for this machine's face list of the body (module docstring)."""
    every = json.loads(STORED.read_text())["by_anny_faces"]
    faces = anny_faces_digest()
    assert faces in every, (
        f"no outputs stored for the body's face list {faces[:12]} (stored: "
        f"{', '.join(k[:12] for k in every)}); anny triangulates its quads differently here"
    )
    return every[faces]


def digest(ckpt: str) -> str:
    """sha256 of a checkpoint file: the stored outputs belong to these exact weights."""
    return hashlib.sha256((ROOT / ckpt).read_bytes()).hexdigest()


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert [r["file"] for r in got] == [r["file"] for r in want]
    for g, w in zip(got, want):
        where = g["file"]
        for key in ("duration_s", "fps", "unknown", "warnings"):
            assert g[key] == w[key], (where, key)
        assert abs(g["score"] - w["score"]) <= TOLERANCE, where
        assert_same_ranking(g["overall"], w["overall"], where)
        assert len(g["windows"]) == len(w["windows"]), where
        for gw, ww in zip(g["windows"], w["windows"]):
            assert (gw["start"], gw["end"], gw["unknown"]) == (
                ww["start"], ww["end"], ww["unknown"]
            ), where  # fmt: skip
            assert_same_ranking(gw["top_k"], ww["top_k"], (where, gw["start"]))


def assert_same_ranking(got: list[dict], want: list[dict], where) -> None:
    """The same classes with the same probabilities (to TOLERANCE), in the same order
    but where two of them are within TOLERANCE of each other."""
    probs = {i["label"]: i["prob"] for i in got}
    assert [i["label"] for i in got] == sorted(probs, key=probs.get, reverse=True), where
    assert sorted(probs) == sorted(i["label"] for i in want), where
    for i in want:
        assert abs(probs[i["label"]] - i["prob"]) <= TOLERANCE, (where, i, probs[i["label"]])


@pytest.mark.slow
@pytest.mark.parametrize("ckpt", CHECKPOINTS)
def test_samples_are_labelled_as_stored(ckpt, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("STMT_CACHE_DIR", str(tmp_path / "stmt-cache"))
    stored = stored_outputs().get(ckpt)
    assert stored is not None, (
        f"no outputs stored for {ckpt} with this machine's face list of the body; store "
        "them on such a machine (module docstring)"
    )
    assert stored["sha256"] == digest(ckpt), (
        f"{ckpt} is not the checkpoint the outputs were stored for; after replacing a "
        "shipped checkpoint, store its outputs again (module docstring)"
    )
    want = stored["files"]
    got = classify_samples(ckpt, capsys)
    # every sample file (AMASS, BVH, ASF/AMC and mesh) got a record
    takes = [
        p for p in (ROOT / "datasets/samples").iterdir() if p.suffix in (".amc", ".bvh", ".npz")
    ]
    assert len(got) == len(takes) == 9
    assert_same(got, want)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_sample_predictions --write")
    import os

    os.chdir(ROOT)
    every = json.loads(STORED.read_text())["by_anny_faces"] if STORED.exists() else {}
    every = {  # other machines' outputs of checkpoints since replaced are dropped
        faces: {
            c: o for c, o in outputs.items() if (ROOT / c).exists() and o["sha256"] == digest(c)
        }
        for faces, outputs in every.items()
    }
    here = every[anny_faces_digest()] = {
        c: {"sha256": digest(c), "files": classify_samples(c)} for c in CHECKPOINTS
    }
    for outputs in every.values():  # a mesh file's template is its own, on any machine
        for c, o in outputs.items():
            mine = {r["file"]: r for r in here[c]["files"]}
            o["files"] = [
                mine[r["file"]] if detect_format(r["file"]).startswith("mesh") else r
                for r in o["files"]
            ]
    STORED.write_text(json.dumps({"by_anny_faces": every}, indent=1) + "\n")
    print(f"wrote {STORED}")
