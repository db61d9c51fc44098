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

The outputs of files posed on the default body depend on its face list: anny splits
each quad along its shorter diagonal, measured in float32, and an Intel Xeon and an
AMD EPYC once split six quads of equal diagonals differently (probabilities up to 3e-4
apart, more than the tolerance). Until 2026-12-08 the file kept outputs per face list;
since then the package fixes the split of every quad
(:func:`stmt.body.anny.fixed_triangulation`), every machine poses on one face list (the
one the AMD EPYC lists had), and the file keeps one set of outputs with that list's
sha256 (``anny_faces``), which the test checks first.

On 2026-12-08 the default became an ensemble of members trained on two window lengths
(its outputs written by ``--write``); the one before it is ``stmt-realmix-v4.ckpt``.
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

ROOT = Path(__file__).resolve().parents[1]
STORED = ROOT / "tests" / "data" / "sample_predictions.json"
CHECKPOINTS = (
    "checkpoints/stmt-realmix.ckpt",
    "checkpoints/stmt-realmix-v4.ckpt",
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
    """sha256 of the default body's face list (module docstring)."""
    faces = rest_mesh("anny")[1]
    return hashlib.sha256(np.ascontiguousarray(faces, dtype=np.int64).tobytes()).hexdigest()


def stored_outputs() -> dict:
    """The stored outputs, after checking they were made on this face list of the body."""
    stored = json.loads(STORED.read_text())
    faces = anny_faces_digest()
    assert faces == stored["anny_faces"], (
        f"the body's face list is {faces[:12]}, the outputs were stored for "
        f"{stored['anny_faces'][:12]}: stmt.body.anny.fixed_triangulation did not apply"
    )
    return stored["outputs"]


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
    assert stored is not None, f"no outputs stored for {ckpt} (module docstring)"
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
    outputs = {c: {"sha256": digest(c), "files": classify_samples(c)} for c in CHECKPOINTS}
    stored = {"anny_faces": anny_faces_digest(), "outputs": outputs}
    STORED.write_text(json.dumps(stored, indent=1) + "\n")
    print(f"wrote {STORED}")
