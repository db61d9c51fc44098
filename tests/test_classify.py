"""``stmt classify`` and :class:`stmt.Classifier`: windows, JSON schema, batching,
errors, and one file of each supported format."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stmt import clip as clip_rules
from stmt.cli import main as stmt_main
from stmt.clip import ClipSettings
from stmt.inference import Classifier, Prediction
from stmt.reading import read_sequence
from stmt.sequence import MeshSequence
from stmt.template import farthest_point_sampling

CLASSES = ["walk", "jump", "sit", "wave"]
ARGS = {"num_classes": 4, "num_frames": 8, "num_points": 64, "centers1": 16, "centers2": 8}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _template_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("STMT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "stmt-cache"))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """An untrained stmt_tiny checkpoint in the layout STMTClassifier saves."""
    from stmt.model.stmt import build_model

    torch.manual_seed(0)
    model = build_model("stmt_tiny", **ARGS)
    hp = {"arch": "stmt_tiny", "model_args": ARGS, "num_classes": 4, "num_frames": 8, "num_points": 64,
              "class_names": CLASSES, "fps": 30.0, "window_s": 1.0, "lr": 1e-3}  # fmt: skip
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["geodesic"] = torch.zeros(64, 64)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"hyper_parameters": hp, "state_dict": state, "epoch": 0}, path)
    return path


@pytest.fixture(scope="module")
def clf(ckpt) -> Classifier:
    return Classifier.from_checkpoint(ckpt)


def capsule_motion(seconds: float, fps: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A capsule 'body' (1.7 m, ~130 vertices) swaying and walking: (T, V, 3), (F, 3)."""
    import trimesh

    mesh = trimesh.creation.capsule(height=1.2, radius=0.25, count=[12, 12])
    rest = np.asarray(mesh.vertices, dtype=np.float32) + np.float32([0, 0, 0.85])
    t = np.arange(max(1, round(seconds * fps)), dtype=np.float32)[:, None, None] / fps  # (T, 1, 1)
    phase = np.random.default_rng(seed).uniform(0, 6.3)
    sway = 0.2 * np.sin(2 * t + phase) * (rest[None, :, 2:3] - 0.25)  # (T, V, 1)
    verts = rest[None] + np.concatenate(
        [0.5 * t + sway, 0 * t + 0 * sway, 0.05 * np.sin(5 * t) + 0 * sway], -1
    )
    return verts.astype(np.float32), np.asarray(mesh.faces, dtype=np.int64)


def write_mesh_npz(
    path: Path, seconds: float, fps: float = 30.0, faces: bool = True, seed: int = 0
) -> Path:
    verts, f = capsule_motion(seconds, fps, seed)
    arrays = {"vertices": verts, "fps": np.float32(fps)}
    if faces:
        arrays["faces"] = f
    np.savez(path, **arrays)
    return path


def sequence(seconds: float, fps: float = 30.0) -> MeshSequence:
    verts, faces = capsule_motion(seconds, fps)
    return MeshSequence(vertices=verts, faces=faces, fps=fps, body="mesh", source=Path("capsule.npz"),
                        format="mesh-npz", rest_vertices=verts[0])  # fmt: skip


def run_cli(argv, capsys) -> tuple[int, str, str]:
    code = stmt_main(["classify", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def check_schema(record: dict, classes: list[str], top_k: int) -> None:
    """The documented --json schema (stmt.commands.classify docstring)."""
    assert set(record) == {
        "file", "duration_s", "fps", "unknown", "score", "overall", "windows", "warnings"
    }  # fmt: skip
    assert isinstance(record["file"], str)
    assert isinstance(record["unknown"], bool)
    assert record["score"] == record["overall"][0]["prob"]
    assert isinstance(record["warnings"], list)
    assert all(isinstance(w, str) for w in record["warnings"])
    assert isinstance(record["duration_s"], float) and record["duration_s"] > 0
    assert isinstance(record["fps"], float) and record["fps"] > 0

    def check_ranked(items):
        assert isinstance(items, list) and len(items) == min(top_k, len(classes))
        for item in items:
            assert set(item) == {"label", "prob"}
            assert item["label"] in classes and isinstance(item["prob"], float)
            assert 0.0 <= item["prob"] <= 1.0
        probs = [i["prob"] for i in items]
        assert probs == sorted(probs, reverse=True)
        assert sum(probs) <= 1.0 + 1e-6
        assert len({i["label"] for i in items}) == len(items)

    check_ranked(record["overall"])
    assert isinstance(record["windows"], list) and record["windows"]
    for w in record["windows"]:
        assert set(w) == {"start", "end", "unknown", "top_k"}
        assert isinstance(w["unknown"], bool)
        assert isinstance(w["start"], float) and isinstance(w["end"], float)
        assert 0.0 <= w["start"] < w["end"] <= record["duration_s"] + 1e-6
        check_ranked(w["top_k"])
    assert_covers(
        [(w["start"], w["end"]) for w in record["windows"]], record["duration_s"], tol=1e-3
    )


def assert_covers(spans, duration, tol=1e-9):
    """The union of the spans is exactly [0, duration]."""
    spans = sorted(spans)
    assert abs(spans[0][0]) <= tol
    reach = spans[0][1]
    for s, e in spans[1:]:
        assert s <= reach + tol, f"gap between {reach} and {s}"
        reach = max(reach, e)
    assert abs(reach - duration) <= tol


# --------------------------------------------------------------------------- windows
# (the window and frame rules themselves are tested in tests/test_clip.py)
def test_stride_longer_than_window_is_refused(clf):
    from stmt.errors import InputError

    with pytest.raises(InputError, match="stride <= window"):
        clf.predict(sequence(3.0), window=1.0, stride=2.0)


def test_whole_clip_up_to_clip_s_then_windows(ckpt):
    """A checkpoint that records clip_s (its longest training sample) takes a file no
    longer than that as one whole clip; a longer file, or an explicit window, is cut."""
    base = Classifier.from_checkpoint(ckpt)
    assert base.clip_s is None  # not recorded: always windows
    assert len(base.predict(sequence(2.0)).windows) == 3
    whole = Classifier(base.model, ClipSettings(CLASSES, 8, 64, 30.0, window_s=1.0, clip_s=2.5))
    pred = whole.predict(sequence(2.0))
    assert [(s, e) for s, e, _ in pred.windows] == [(0.0, pytest.approx(2.0))]
    assert len(whole.predict(sequence(3.0)).windows) == 5  # 1 s windows every 0.5 s
    assert len(whole.predict(sequence(2.0), window=1.0).windows) == 3


# --------------------------------------------------------------------------- Python API
def test_predict_windows_and_overall(clf):
    seq = sequence(3.2)
    pred = clf.predict(seq, top_k=3)
    assert isinstance(pred, Prediction)
    assert pred.duration_s == pytest.approx(3.2, abs=1 / 30)
    plan = clip_rules.plan_windows(seq.num_frames, 30.0, 30.0, clip_s=None, window=1.0, stride=0.5)
    assert [(s, e) for s, e, _ in pred.windows] == plan.spans
    assert all(len(top) == 3 for _, _, top in pred.windows)

    # overall is the mean of the full window probabilities
    item = clf.preprocess(seq)
    clips, spans, tpl = item.clips, item.spans, item.template
    assert clips.shape == (len(spans), 8, 64, 3)
    probs = clf.probabilities(clips, tpl.geodesic, batch_size=3)
    assert probs.shape == (len(spans), 4)
    logits = clf.forward([item, item], batch_size=5)[1]  # forward: logits, softmax after
    np.testing.assert_allclose(torch.softmax(torch.as_tensor(logits), -1), probs, atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    mean = probs.mean(0)
    assert [a for a, _ in pred.overall] == [CLASSES[i] for i in np.argsort(-mean)[:3]]
    np.testing.assert_allclose([p for _, p in pred.overall], np.sort(mean)[::-1][:3], rtol=1e-5)
    # batching does not change the answer
    np.testing.assert_allclose(
        clf.probabilities(clips, tpl.geodesic, batch_size=100), probs, atol=1e-5
    )


def test_sequence_warnings_reach_the_prediction_and_the_table(clf):
    from stmt.commands.classify import format_table

    seq = sequence(2.0)
    seq.warnings.append("the source skeleton has 3 zero-length bones")
    pred = clf.predict(seq, top_k=2)
    assert pred.warnings == ["the source skeleton has 3 zero-length bones"]
    assert pred.to_json()["warnings"] == pred.warnings
    lines = format_table(pred).splitlines()
    assert lines[1] == "  warning: the source skeleton has 3 zero-length bones"
    assert clf.predict(sequence(2.0)).warnings == []  # nothing carried over between calls


def test_unknown_rule_and_temperature(ckpt):
    """The calibration a checkpoint carries: logits / T before the softmax, and "unknown"
    below the threshold, for the file and per window; a threshold of 0 turns it off."""
    from stmt.commands.classify import format_table

    plain = Classifier.from_checkpoint(ckpt)
    seq = sequence(3.0)
    base = plain.predict(seq, top_k=4)
    assert base.unknown is False and base.unknown_threshold is None  # no rule: never unknown
    item = plain.preprocess(seq)
    with torch.no_grad():
        logits = plain.model(torch.as_tensor(item.clips), torch.as_tensor(item.template.geodesic))
    warm = Classifier.from_checkpoint(ckpt)
    warm.temperature = 3.0
    expect = torch.softmax(torch.as_tensor(logits) / 3.0, dim=-1).numpy().mean(0)
    got = warm.predict(seq, top_k=4)
    np.testing.assert_allclose(sorted(p for _, p in got.overall), sorted(expect), rtol=1e-5)
    # a threshold above the top-1 probability: unknown, in the table and JSON
    warm.unknown_threshold = got.score + 1e-3
    pred = warm.predict(seq, top_k=4)
    assert pred.unknown and pred.to_json()["unknown"] is True
    best, prob = pred.overall[0]
    assert f"  overall: unknown (best: {best} {prob:.3f})" in format_table(pred).splitlines()
    flags = [w["unknown"] for w in pred.to_json()["windows"]]
    assert flags == [top[0][1] < warm.unknown_threshold for _, _, top in pred.windows]
    assert sum("unknown (best:" in ln for ln in format_table(pred).splitlines()[1:]) == 1 + sum(
        flags
    )
    warm.unknown_threshold = got.score - 1e-3
    assert not warm.predict(seq, top_k=4).unknown
    warm.unknown_threshold = 0.0  # off
    assert warm.predict(seq, top_k=4).unknown_threshold is None
    # a take far shorter than the window: unknown once there is a rule, whatever it scores
    blip = sequence(0.05)  # 0.05 s of the 1 s window
    warm.unknown_threshold = 1e-9
    short = warm.predict(blip, top_k=4)
    assert (
        short.too_short and short.unknown and any(w.startswith("too short") for w in short.warnings)
    )
    warm.unknown_threshold = 0.0
    assert not warm.predict(blip, top_k=4).unknown  # no rule: the label with its warning


def test_unknown_rule_of_each_input_kind(ckpt):
    """A checkpoint calibrated on motion capture and Kinect joint positions has a threshold
    for each: a sequence read from a joint-position file is held to the tracked one, any
    other to the motion-capture one; one threshold set (``--unknown-threshold``) holds for
    both."""
    clf = Classifier.from_checkpoint(ckpt)
    seq = sequence(3.0)
    score = clf.predict(seq).score
    clf.unknown_threshold = 0.0
    clf.unknown_thresholds = {"mocap": score + 1e-3, "tracked": score - 1e-3}
    tracked = dataclasses.replace(seq, format="joint-csv")
    assert clf.predict(tracked).score == pytest.approx(score)
    assert clf.predict(seq).unknown and clf.predict(dataclasses.replace(seq, format="bvh")).unknown
    assert not clf.predict(tracked).unknown
    assert clf.predict(dataclasses.replace(seq, format="joint-mat")).unknown_threshold == (
        pytest.approx(score - 1e-3)
    )
    clf.unknown_threshold, clf.unknown_thresholds = score - 1e-3, {}  # as --unknown-threshold
    assert not clf.predict(seq).unknown and not clf.predict(tracked).unknown
    clf.unknown_threshold = 0.0
    assert clf.predict(tracked).unknown_threshold is None


def test_cli_unknown_threshold_option(ckpt, tmp_path, capsys):
    f = write_mesh_npz(tmp_path / "a.npz", 1.5)
    code, out, _ = run_cli([f, "--ckpt", ckpt, "--json", "--unknown-threshold", "1"], capsys)
    assert code == 0 and json.loads(out)[0]["unknown"] is True  # nothing reaches 1
    code, out, _ = run_cli([f, "--ckpt", ckpt, "--json", "--unknown-threshold", "0"], capsys)
    assert code == 0 and json.loads(out)[0]["unknown"] is False
    code, _, err = run_cli([f, "--ckpt", ckpt, "--unknown-threshold", "1.5"], capsys)
    assert code == 2 and "--unknown-threshold must be 0 to 1" in err


def test_predict_short_sequence_is_one_window(clf):
    pred = clf.predict(sequence(0.4), window=1.0)
    assert len(pred.windows) == 1
    assert pred.windows[0][:2] == (0.0, pytest.approx(0.4))


def test_window_and_stride_options(clf):
    pred = clf.predict(sequence(3.0), window=2.0, stride=0.5, top_k=10)
    assert [(s, e) for s, e, _ in pred.windows] == [(0.0, 2.0), (0.5, 2.5), (1.0, 3.0)]
    assert len(pred.overall) == len(CLASSES)  # top_k is capped at the class count


def test_attention_per_frame(clf):
    seq = sequence(2.0, fps=20.0)
    att = clf.attention(clf.preprocess(seq))
    assert att.relevance.shape == (seq.num_frames, 8)
    assert np.isfinite(att.relevance).all() and (att.relevance >= 0).all()
    assert att.patch_of_point.shape == (64,) and set(att.patch_of_point[:8]) == set(range(8))
    assert att.window_of_frame.shape == (seq.num_frames,)
    assert att.window_of_frame[0] == 0 and att.window_of_frame[-1] == len(att.windows) - 1


def test_top_level_export(ckpt):
    import stmt

    assert stmt.Classifier is Classifier


def test_a_mesh_file_of_a_bodys_topology_leaves_the_bodys_template_alone(
    ckpt, tmp_path, monkeypatch
):
    """A mesh file with a body's faces (a body posed and saved as a mesh) gets a template
    of its own, from its first frame; read first, in this process or an earlier one, it
    does not change how the body's files are labelled afterwards."""
    monkeypatch.setenv("STMT_CACHE_DIR", str(tmp_path / "fresh"))
    verts, faces = capsule_motion(2.0, 30.0)
    rest = verts[0] - verts[0].mean(axis=0) + np.float32([0, 0, 0.85])
    bent = verts.copy()
    bent[:, :, 0] += 0.6 * np.clip(verts[0, :, 2] - 1.2, 0, None)  # its top bent aside
    body = MeshSequence(verts, faces, 30.0, "anny", tmp_path / "walk.bvh", rest_vertices=rest)
    mesh = MeshSequence(bent, faces, 30.0, "mesh", tmp_path / "posed.npz")
    clean = Classifier.from_checkpoint(ckpt).predict(body)

    monkeypatch.setenv("STMT_CACHE_DIR", str(tmp_path / "used"))
    fps = [farthest_point_sampling(v, 64) for v in (rest, bent[0])]  # other vertices
    assert not np.array_equal(*fps)
    clf = Classifier.from_checkpoint(ckpt)
    clf.predict(mesh)
    after = [clf.predict(body), Classifier.from_checkpoint(ckpt).predict(body)]  # + from disk
    for pred in after:
        for (_, _, got), (_, _, want) in zip(pred.windows, clean.windows, strict=True):
            assert [g[0] for g in got] == [w[0] for w in want]
            np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=1e-6)


# --------------------------------------------------------------------------- CLI
def test_cli_json_schema(ckpt, tmp_path, capsys):
    files = [
        write_mesh_npz(tmp_path / "long.npz", 3.5),
        write_mesh_npz(tmp_path / "short.npz", 0.5, seed=1),
    ]
    code, out, err = run_cli([*files, "--ckpt", ckpt, "--json", "--top-k", "3"], capsys)
    assert code == 0, err
    records = json.loads(out)  # stdout holds the JSON document and nothing else
    assert [r["file"] for r in records] == [str(f) for f in files]
    for r in records:
        check_schema(r, CLASSES, 3)
    assert records[0]["duration_s"] == pytest.approx(3.5) and len(records[0]["windows"]) == 6
    assert len(records[1]["windows"]) == 1


def test_cli_table(ckpt, tmp_path, capsys):
    f = write_mesh_npz(tmp_path / "walk.npz", 2.0)
    code, out, _ = run_cli(
        [f, "--ckpt", ckpt, "--top-k", "2", "--window", "1", "--stride", "1"], capsys
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{f}  (2.00 s at 30 fps, 2 windows)")
    assert lines[1].strip() == "overall" and lines[2].strip().startswith("1. ")
    assert "timeline" in out and "0.00 -    1.00 s" in out and "1.00 -    2.00 s" in out


def test_cli_bad_file_does_not_stop_the_others(ckpt, tmp_path, capsys):
    good1 = write_mesh_npz(tmp_path / "a.npz", 1.0)
    bad = tmp_path / "broken.npz"
    bad.write_text("not a zip")
    missing = tmp_path / "missing.npz"
    good2 = write_mesh_npz(tmp_path / "b.npz", 1.0, seed=2)
    argv = [good1, bad, missing, good2, "--ckpt", ckpt, "--json", "--batch-size", "2"]
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    assert [r["file"] for r in json.loads(out)] == [str(good1), str(good2)]
    errors = err.strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"stmt: error: {bad}: ")
    assert errors[1].startswith(f"stmt: error: {missing}: ")


def test_cli_batches_match_single_files(ckpt, tmp_path, capsys):
    files = [write_mesh_npz(tmp_path / f"f{i}.npz", 1.0 + 0.7 * i, seed=i) for i in range(3)]
    _, out_b, _ = run_cli([*files, "--ckpt", ckpt, "--json", "--batch-size", "4"], capsys)
    singles = []
    for f in files:
        _, out_1, _ = run_cli([f, "--ckpt", ckpt, "--json", "--batch-size", "1"], capsys)
        singles += json.loads(out_1)
    for a, b in zip(json.loads(out_b), singles):
        assert [x["label"] for x in a["overall"]] == [x["label"] for x in b["overall"]]
        np.testing.assert_allclose(  # the three files are read in worker processes:
            [x["prob"] for x in a["overall"]], [x["prob"] for x in b["overall"]], atol=1e-4
        )  # to 1e-4, as test_archive compares --workers 0 and 2


def test_cli_bad_options(ckpt, tmp_path, capsys):
    f = write_mesh_npz(tmp_path / "a.npz", 1.0)
    code, out, err = run_cli([f, "--ckpt", ckpt, "--window", "0"], capsys)
    assert code == 2 and out == "" and err.startswith("stmt: error: --window must be positive")
    code, out, err = run_cli([f, "--ckpt", ckpt, "--window", "1", "--stride", "2"], capsys)
    assert code == 2 and out == "" and err.startswith("stmt: error: --stride 2.0 must not exceed")
    code, out, err = run_cli([f, "--ckpt", ckpt, "--stride", "2"], capsys)  # checkpoint window 1 s
    assert code == 2 and out == "" and "must not exceed the window 1.0 s" in err


# --------------------------------------------------------------------------- formats
def test_format_mesh_npz_without_faces(ckpt, tmp_path, capsys):
    f = write_mesh_npz(tmp_path / "points.npz", 1.2, faces=False)
    code, out, err = run_cli([f, "--ckpt", ckpt, "--json"], capsys)
    assert code == 0, err
    check_schema(json.loads(out)[0], CLASSES, 5)


def test_format_mesh_folder(ckpt, tmp_path, capsys):
    import trimesh

    verts, faces = capsule_motion(1.0, 10.0)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, v in enumerate(verts):
        trimesh.Trimesh(v, faces, process=False).export(folder / f"frame_{i:03d}.obj")
    (folder / "fps.txt").write_text("10\n")
    code, out, err = run_cli([folder, "--ckpt", ckpt, "--json"], capsys)
    assert code == 0, err
    rec = json.loads(out)[0]
    check_schema(rec, CLASSES, 5)
    assert rec["fps"] == 10.0 and rec["duration_s"] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["smplh", "smplx"])
def test_format_amass_with_smpl_family_models(ckpt, tmp_path, capsys, kind):
    from tests.helpers import write_amass_npz, write_smplh_model, write_smplx_model

    models = (write_smplh_model if kind == "smplh" else write_smplx_model)(tmp_path / "models")
    clip = write_amass_npz(tmp_path / f"{kind}.npz", T=45, kind=kind, fps=30.0)
    code, out, err = run_cli([clip, "--ckpt", ckpt, "--json", "--body-models", models], capsys)
    assert code == 0, err
    rec = json.loads(out)[0]
    check_schema(rec, CLASSES, 5)
    assert rec["duration_s"] == pytest.approx(1.5) and len(rec["windows"]) == 2


def test_read_poses_only_the_template_vertices(clf, tmp_path):
    """Parameter files take the fast path: only the N template vertices are posed, and the
    clips are those of the whole mesh read and cut to the template."""
    from stmt import reading
    from tests.helpers import write_amass_npz, write_smplh_model

    models = write_smplh_model(tmp_path / "models")
    clip = write_amass_npz(tmp_path / "a.npz", T=10, fps=30.0)
    posed = []
    real = reading.pose_motion

    def spy(motion, **kw):
        posed.append(real(motion, **kw))
        return posed[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reading, "pose_motion", spy)
        item = clf.read(clip, body="smplh", body_models=models)
    assert posed[0].vertices.shape == (10, 64, 3)
    np.testing.assert_array_equal(posed[0].vertex_ids, item.template.vertex_ids)
    full = read_sequence(clip, body="smplh", body_models=models)
    real_frames = posed[0].posed if posed[0].posed is not None else slice(None)
    np.testing.assert_allclose(
        posed[0].vertices[real_frames],
        full.vertices[real_frames][:, item.template.vertex_ids],
        atol=1e-5,
    )
    np.testing.assert_allclose(item.clips, clf.preprocess(full).clips, atol=1e-5)


def _cmu_motion(frames: int):
    from tests.helpers import cmu

    dofs, root = cmu.standing_motion(frames)
    dofs["lfemur"][:, 0] = np.linspace(0.0, -60.0, frames)  # lift the left thigh
    return dofs, root


def test_format_bvh(ckpt, tmp_path, capsys):
    from tests.helpers import cmu

    dofs, root = _cmu_motion(36)
    clip = cmu.write_bvh(tmp_path / "lift.bvh", dofs, root, fps=120.0)
    code, out, err = run_cli([clip, "--ckpt", ckpt, "--json"], capsys)
    assert code == 0, err
    rec = json.loads(out)[0]
    check_schema(rec, CLASSES, 5)
    assert rec["fps"] == 120.0 and rec["duration_s"] == pytest.approx(0.3)


def test_format_asf_amc(ckpt, tmp_path, capsys):
    from tests.helpers import cmu

    dofs, root = _cmu_motion(36)
    cmu.write_asf(tmp_path / "07.asf")
    clip = cmu.write_amc(tmp_path / "07_01.amc", dofs, root)
    code, out, err = run_cli([clip, "--ckpt", ckpt, "--json"], capsys)
    assert code == 0, err
    rec = json.loads(out)[0]
    check_schema(rec, CLASSES, 5)
    assert rec["duration_s"] == pytest.approx(36 / rec["fps"])


def test_format_amass_on_anny(ckpt, tmp_path, capsys, monkeypatch):
    """Without SMPL files (the default), AMASS files are posed on the free anny body."""
    from tests.helpers import write_amass_npz

    monkeypatch.delenv("STMT_BODY_MODELS", raising=False)
    clip = write_amass_npz(tmp_path / "anny.npz", T=30, fps=30.0)
    code, out, err = run_cli([clip, "--ckpt", ckpt, "--json"], capsys)
    assert code == 0, err
    check_schema(json.loads(out)[0], CLASSES, 5)


def test_read_poses_only_the_frames_the_windows_use(clf, tmp_path):
    """Classifier.read poses just the frames its windows use; its clips are those of a
    full read; a sequence posed at some frames says so (``posed``) and windows that need
    other frames are refused, not quietly read again."""
    from stmt.errors import InputError
    from tests.helpers import write_amass_npz, write_smplh_model

    models = write_smplh_model(tmp_path / "models")
    clip = write_amass_npz(tmp_path / "a.npz", T=90, fps=30.0)
    item = clf.read(clip, body="smplh", body_models=models)
    assert item.num_frames == 90 and item.fps == 30.0 and item.duration_s == pytest.approx(3.0)
    full = read_sequence(clip, body="smplh", body_models=models)
    assert full.posed is None
    want = clf.preprocess(full)
    assert item.spans == want.spans
    np.testing.assert_allclose(item.clips, want.clips, atol=1e-6, rtol=0)
    frames = item.windows.source_frames(clf.num_frames, 30.0, 90)
    assert 0 < len(frames) < 90  # 5 windows of 8 frames
    part = read_sequence(clip, body="smplh", body_models=models, frames=frames)
    np.testing.assert_array_equal(part.posed, frames)
    np.testing.assert_allclose(part.vertices[frames], full.vertices[frames], atol=1e-6, rtol=0)
    np.testing.assert_allclose(clf.preprocess(part).clips, want.clips, atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="posed at .* frames only"):
        clf.preprocess(part, 0.6, 0.2)
    again = clf.read(clip, body="smplh", body_models=models, window=0.6, stride=0.2)
    np.testing.assert_allclose(again.clips, clf.preprocess(full, 0.6, 0.2).clips, atol=1e-6, rtol=0)


@pytest.mark.parametrize("fmt", ["bvh", "asf-amc"])
def test_readers_pose_only_the_listed_frames(tmp_path, fmt):
    """read_sequence(frames=...): listed frames equal a full read, the length, fps and
    duration are the file's, and the sequence lists the posed frames."""
    from stmt.reading import read_sequence
    from tests.helpers import cmu

    dofs, root = _cmu_motion(12)
    if fmt == "bvh":
        clip = cmu.write_bvh(tmp_path / "lift.bvh", dofs, root, fps=120.0)
    else:
        cmu.write_asf(tmp_path / "07.asf")
        clip = cmu.write_amc(tmp_path / "07_01.amc", dofs, root)
    ids = np.arange(0, 13000, 101)
    full = read_sequence(clip, vertex_ids=ids)
    seq = read_sequence(clip, vertex_ids=ids, frames=np.array([9, 2, 2, 5]))
    assert (seq.num_frames, seq.fps, seq.duration) == (12, full.fps, full.duration)
    np.testing.assert_array_equal(seq.posed, [2, 5, 9])
    np.testing.assert_allclose(seq.vertices[[2, 5, 9]], full.vertices[[2, 5, 9]], atol=1e-6)
    np.testing.assert_allclose(seq.joints[[2, 5, 9]], full.joints[[2, 5, 9]], atol=1e-6)
    # frames in between repeat the last posed frame before them (the first before it)
    np.testing.assert_array_equal(seq.vertices[[0, 1, 3, 4, 11]], seq.vertices[[2, 2, 2, 2, 9]])
    with pytest.raises(ValueError, match="frames"):
        read_sequence(clip, vertex_ids=ids, frames=np.array([12]))


# --------------------------------------------------------------------------- keeping predictions
def test_cli_out_json_records_how_it_was_made(ckpt, tmp_path, capsys):
    files = [
        write_mesh_npz(tmp_path / "a.npz", 2.5),
        write_mesh_npz(tmp_path / "b.npz", 1.0, seed=1),
    ]
    out = tmp_path / "preds" / "run.json"  # the folder is created
    code, stdout, err = run_cli(
        [*files, "--ckpt", ckpt, "--json", "--top-k", "3", "--out", out], capsys
    )
    assert code == 0, err
    assert f"wrote 2 predictions to {out}" in err  # stdout keeps only the JSON
    doc = json.loads(out.read_text())
    assert doc["checkpoint"] == str(ckpt) and doc["arch"] == "stmt_tiny"
    assert doc["window_s"] == 1.0 and doc["stride_s"] == 0.5  # the checkpoint's window, half stride
    assert doc["clip_s"] is None  # this checkpoint records no clip_s: windows for every file
    assert doc["classes"] == CLASSES and doc["top_k"] == 3
    assert doc["files"] == json.loads(stdout)
    for record in doc["files"]:
        check_schema(record, CLASSES, 3)
    assert [p.name for p in out.parent.iterdir()] == ["run.json"]  # no temporary file left


def test_cli_out_csv_one_row_per_file(ckpt, tmp_path, capsys):
    import csv

    files = [
        write_mesh_npz(tmp_path / "a.npz", 2.5),
        write_mesh_npz(tmp_path / "b.npz", 1.0, seed=1),
    ]
    out = tmp_path / "run.csv"
    code, stdout, err = run_cli(
        [*files, "--ckpt", ckpt, "--top-k", "3", "--window", "1", "--stride", "0.25", "--out", out],
        capsys,
    )
    assert code == 0, err
    assert stdout.rstrip().endswith(f"wrote 2 predictions to {out}")
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["file", "label", "prob", "unknown", "label_2", "prob_2", "label_3",
                             "prob_3", "duration_s", "windows"]  # fmt: skip
    _, js, _ = run_cli([*files, "--ckpt", ckpt, "--top-k", "3", "--window", "1", "--stride", "0.25",
                        "--json"], capsys)  # fmt: skip
    for row, rec in zip(rows, json.loads(js), strict=True):
        assert row["file"] == rec["file"]
        assert [row["label"], row["label_2"], row["label_3"]] == [
            x["label"] for x in rec["overall"]
        ]
        assert float(row["prob"]) == pytest.approx(rec["overall"][0]["prob"], abs=1e-6)
        assert row["unknown"] == str(rec["unknown"]).lower()
        assert int(row["windows"]) == len(rec["windows"])
    assert int(rows[0]["windows"]) == 7  # 2.5 s, 1 s windows every 0.25 s


def test_cli_out_needs_a_known_extension(ckpt, tmp_path, capsys):
    f = write_mesh_npz(tmp_path / "a.npz", 1.0)
    code, out, err = run_cli([f, "--ckpt", ckpt, "--out", tmp_path / "x.txt"], capsys)
    assert code == 2 and out == "" and "--out must end in .csv or .json" in err
    assert not (tmp_path / "x.txt").exists()


def test_cli_folder_recursive(ckpt, tmp_path, capsys):
    import trimesh

    root = tmp_path / "mocap"
    (root / "sub" / "frames").mkdir(parents=True)
    write_mesh_npz(root / "b.npz", 1.0)
    write_mesh_npz(root / "sub" / "a.npz", 1.0, seed=1)
    verts, faces = capsule_motion(1.0, 10.0)
    for i, v in enumerate(verts):
        trimesh.Trimesh(v, faces, process=False).export(root / "sub" / "frames" / f"f_{i:03d}.obj")
    (root / "sub" / "frames" / "fps.txt").write_text("10\n")
    (root / "notes.txt").write_text("not motion")
    np.savez(root / "arrays.npz", x=np.zeros(3))  # an .npz that is not MoCap: skipped
    code, out, err = run_cli([root, "--recursive", "--ckpt", ckpt, "--json"], capsys)
    assert code == 0, err
    names = [r["file"] for r in json.loads(out)]
    assert names == [str(root / "b.npz"), str(root / "sub" / "a.npz"), str(root / "sub" / "frames")]

    # without --recursive a plain folder is refused (one line), a mesh folder is one sequence
    code, out, err = run_cli([root, root / "sub" / "frames", "--ckpt", ckpt, "--json"], capsys)
    assert code == 2
    assert [r["file"] for r in json.loads(out)] == [str(root / "sub" / "frames")]
    assert (
        err.strip() == f"stmt: error: {root}: a folder of files, not a mesh sequence; add "
        "--recursive to classify the MoCap files under it"
    )

    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli([empty, "-r", "--ckpt", ckpt], capsys)
    assert code == 2 and f"stmt: error: {empty}: no MoCap files under this folder" in err


def test_cli_warns_about_an_untrained_window(ckpt, tmp_path, capsys):
    f = write_mesh_npz(tmp_path / "a.npz", 3.0)
    code, _, err = run_cli([f, "--ckpt", ckpt, "--window", "2"], capsys)
    assert code == 0
    assert "stmt: warning: --window 2 s is not the 1 s the checkpoint was trained on" in err
    code, _, err = run_cli([f, "--ckpt", ckpt, "--window", "1"], capsys)
    assert code == 0 and "warning" not in err


def test_cli_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        stmt_main(["classify", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for expected in ("(default: 5)", "(default: 16)", "(default: auto)",
                     "(default: a file no longer than the checkpoint's longest training clip is one clip"):  # fmt: skip
        assert expected in text


def test_cli_device_is_checked_before_loading(tmp_path, capsys):
    missing = tmp_path / "missing.ckpt"  # never opened: the device is checked first
    code, _, err = run_cli([tmp_path / "a.npz", "--ckpt", missing, "--device", "nonsense"], capsys)
    assert code == 2 and err.startswith("stmt: error: --device 'nonsense' is not a torch device")
    if not torch.cuda.is_available():
        code, _, err = run_cli([tmp_path / "a.npz", "--ckpt", missing, "--device", "cuda"], capsys)
        assert code == 2 and "torch sees no CUDA GPU here; use --device cpu" in err


def test_checkpoint_clip_s_is_read_and_checked(ckpt, tmp_path, capsys):
    """clip_s in the hyper-parameters reaches the Classifier; a bad one is one line, exit 2."""
    raw = torch.load(ckpt, weights_only=True)
    raw["hyper_parameters"]["clip_s"] = 2.5
    good = tmp_path / "clip.ckpt"
    torch.save(raw, good)
    assert Classifier.from_checkpoint(good).clip_s == 2.5
    clip, out = write_mesh_npz(tmp_path / "c.npz", 2.0), tmp_path / "p.json"
    code, stdout, err = run_cli([clip, "--ckpt", good, "--json", "--out", out], capsys)
    assert code == 0, err
    assert len(json.loads(stdout)[0]["windows"]) == 1  # 2 s <= clip_s: one whole clip
    assert json.loads(out.read_text())["clip_s"] == 2.5
    code, stdout, _ = run_cli([clip, "--ckpt", good, "--json", "--window", "1"], capsys)
    assert len(json.loads(stdout)[0]["windows"]) == 3  # an explicit window cuts every file
    raw["hyper_parameters"]["clip_s"] = float("nan")
    bad = tmp_path / "bad.ckpt"
    torch.save(raw, bad)
    code, out, err = run_cli([write_mesh_npz(tmp_path / "s.npz", 1.0), "--ckpt", bad], capsys)
    assert code == 2 and out == ""
    want = f"stmt: error: {bad}: bad checkpoint: clip_s is nan; expected a positive number"
    assert err.strip().splitlines()[0].startswith(want) and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- one straight path
def test_each_step_of_the_classify_path_runs_once_per_file(ckpt, tmp_path, capsys, monkeypatch):
    """`stmt classify` takes every file along read -> plan -> pose -> preprocess once: its
    format is detected once, its template key computed once, its windows planned once
    (one file of each kind of reader: skeleton, AMASS parameters, mesh)."""
    import sys

    from stmt import clip as clip_module
    from stmt import template
    from stmt.io import detect
    from tests.helpers import cmu, write_amass_npz

    dofs, root = _cmu_motion(36)
    cmu.write_asf(tmp_path / "07.asf")
    files = [
        cmu.write_bvh(tmp_path / "lift.bvh", dofs, root, fps=120.0),
        cmu.write_amc(tmp_path / "07_01.amc", dofs, root),
        write_amass_npz(tmp_path / "amass.npz", T=30, fps=30.0),
        write_mesh_npz(tmp_path / "mesh.npz", 2.0),
    ]
    monkeypatch.delenv("STMT_BODY_MODELS", raising=False)
    calls: dict[str, list] = {"detect": [], "key": [], "plan": []}

    def counting(name, original):
        def wrapper(*args, **kwargs):
            calls[name].append(args[0])
            return original(*args, **kwargs)

        return wrapper

    for name, original in (("detect", detect.detect_format), ("key", template.template_key),
                           ("plan", clip_module.plan_windows)):  # fmt: skip
        spy = counting(name, original)
        for module in list(sys.modules.values()):  # every module that bound the function
            for attr, value in list(vars(module).items()) if module else ():
                if value is original:
                    monkeypatch.setattr(module, attr, spy)
    # --workers 0: read in this process, where the spies count (a worker counts its own)
    code, out, err = run_cli([*files, "--ckpt", ckpt, "--json", "--workers", "0"], capsys)
    assert code == 0, err
    assert len(json.loads(out)) == len(files)
    assert sorted(map(str, calls["detect"])) == sorted(map(str, files))  # once per file
    assert len(calls["key"]) == len(files)  # faces of each file's topology, hashed once
    assert len(calls["plan"]) == len(files)  # num_frames of each file, planned once
