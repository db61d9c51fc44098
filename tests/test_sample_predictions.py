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
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from stmt.cli import main as stmt_main

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
    stored = json.loads(STORED.read_text())[ckpt]
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
    stored = {c: {"sha256": digest(c), "files": classify_samples(c)} for c in CHECKPOINTS}
    STORED.write_text(json.dumps(stored, indent=1) + "\n")
    print(f"wrote {STORED}")
