"""An ensemble whose members were trained on windows of several lengths: built by
``stmt calibrate A B`` (:func:`stmt.checkpoint.ensemble`), each length cutting a file its
own way, their logits mixed into the first length's windows (:func:`stmt.clip.scale_mix`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stmt import checkpoint
from stmt.cli import main as stmt_main
from stmt.clip import scale_mix
from stmt.errors import InputError
from stmt.inference import Classifier
from stmt.reading import read_sequence
from tests.test_classify import CLASSES, sequence, write_mesh_npz

ARGS = {"num_frames": 8, "num_points": 64, "centers1": 16, "centers2": 8}


@pytest.fixture(autouse=True)
def _template_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("STMT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "stmt-cache"))


def tiny_checkpoint(path: Path, window_s: float, seed: int, members: int = 1) -> Path:
    """An untrained stmt_tiny classifier (or ensemble) of today's layout, its clips cut
    into windows of ``window_s``."""
    from stmt.model.stmt import build_model

    torch.manual_seed(seed)
    model = build_model("stmt_tiny", members=members, num_classes=4, **ARGS)
    clip = {"class_names": CLASSES, "num_frames": 8, "num_points": 64, "fps": 30.0,
            "window_s": window_s, "clip_s": None, "fixed_window": True}  # fmt: skip
    args = {"centers1": 16, "centers2": 8} | ({"members": members} if members > 1 else {})
    hp = {"arch": "stmt_tiny", "model_args": args, "clip": clip}
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["geodesic"] = torch.zeros(64, 64)
    torch.save({"hyper_parameters": hp, "state_dict": state, "stmt_format": 3}, path)
    return path


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("scales")
    return {
        "long": tiny_checkpoint(d / "long.ckpt", 1.0, seed=0),
        "long_pair": tiny_checkpoint(d / "long_pair.ckpt", 1.0, seed=1, members=2),
        "short": tiny_checkpoint(d / "short.ckpt", 0.6, seed=2),
    }


@pytest.fixture(scope="module")
def mixed(parts, tmp_path_factory) -> Path:
    """Three members at 1.0 s (one alone, two as an ensemble) and one at 0.6 s."""
    ck = checkpoint.ensemble([parts["long"], parts["short"], parts["long_pair"]])
    path = tmp_path_factory.mktemp("mixed") / "mixed.ckpt"
    torch.save(ck, path)
    return path


def test_scale_mix_takes_each_length_once_per_window():
    # one long window: the short ones all belong to it, each length weighs half
    np.testing.assert_allclose(
        scale_mix([(0.0, 3.7)], [[(0.0, 2.5), (0.6, 3.1), (1.2, 3.7)]]),
        [[0.5, 1 / 6, 1 / 6, 1 / 6]],
    )
    long = [(0.0, 3.7), (1.85, 5.55), (3.7, 7.4)]  # centres 1.85, 3.7, 5.55
    short = [(0.0, 2.5), (1.25, 3.75), (2.5, 5.0), (3.75, 6.25), (4.9, 7.4)]
    mix = scale_mix(long, [short])
    np.testing.assert_allclose(mix.sum(axis=1), 1.0)
    np.testing.assert_allclose(mix[:, :3], np.eye(3) / 2)
    # centres 1.25, 2.5 -> window 0; 3.75 -> 1; 5.0, 6.15 -> 2
    np.testing.assert_allclose(mix[0, 3:], [0.25, 0.25, 0, 0, 0])
    np.testing.assert_allclose(mix[1, 3:], [0, 0, 0.5, 0, 0])
    np.testing.assert_allclose(mix[2, 3:], [0, 0, 0, 0.25, 0.25])
    # a long window no short one is nearest to takes the short one nearest to it
    sparse = scale_mix(long, [[(0.0, 2.5), (4.9, 7.4)]])
    np.testing.assert_allclose(sparse[1, 3:], [0.5, 0.0])  # 3.7 is nearer 1.25 than 6.15
    three = scale_mix([(0.0, 1.0)], [[(0.0, 1.0)], [(0.0, 0.5), (0.5, 1.0)]])
    np.testing.assert_allclose(three, [[1 / 3, 1 / 3, 1 / 6, 1 / 6]])


def test_ensemble_of_two_lengths_records_its_scales(parts, mixed):
    hp = torch.load(mixed, weights_only=True)["hyper_parameters"]
    assert hp["scales"] == [{"window_s": 1.0, "members": 3}, {"window_s": 0.6, "members": 1}]
    assert hp["clip"]["window_s"] == 1.0 and hp["model_args"]["members"] == 4
    assert hp["calibration"] is None
    clf = Classifier.from_checkpoint(mixed)
    assert clf.window_s == 1.0 and len(clf.model.members) == 3
    assert [(c.window_s, len(m.members)) for c, m in clf.scales] == [(0.6, 1)]
    # one length: no scales, as before
    same = checkpoint.ensemble([parts["long"], parts["long_pair"]])
    assert "scales" not in same["hyper_parameters"]
    assert same["hyper_parameters"]["model_args"]["members"] == 3


def test_each_length_cuts_the_file_and_the_logits_are_mixed(parts, mixed):
    """The prediction equals the members run by hand: the long members' logits on 1 s
    windows, the short member's on 0.6 s windows, each long window taking the mean of
    its own and of the short windows nearest to it, then the softmax."""
    clf = Classifier.from_checkpoint(mixed)
    seq = sequence(2.4)
    got = clf.predict(seq, top_k=4)
    alone = {k: Classifier.from_checkpoint(p) for k, p in parts.items()}
    long_item = alone["long"].preprocess(seq)
    short_item = alone["short"].preprocess(seq)
    assert len(long_item.windows) == 4 and len(short_item.windows) == 7
    geo = torch.as_tensor(long_item.template.geodesic)
    with torch.no_grad():
        long_logits = torch.stack([
            alone["long"].model(torch.as_tensor(long_item.clips), geo),
            *(m(torch.as_tensor(long_item.clips), geo) for m in alone["long_pair"].model.members),
        ]).mean(0)  # fmt: skip
        short_logits = alone["short"].model(torch.as_tensor(short_item.clips), geo)
    mix = scale_mix(long_item.spans, [short_item.spans])
    logits = mix @ np.concatenate([long_logits.numpy(), short_logits.numpy()])
    probs = torch.softmax(torch.as_tensor(logits), -1).numpy()
    assert [(s, e) for s, e, _ in got.windows] == long_item.spans
    for (_, _, top), p in zip(got.windows, probs):
        np.testing.assert_allclose([q for _, q in top], np.sort(p)[::-1], atol=1e-5)
    np.testing.assert_allclose([q for _, q in got.overall], np.sort(probs.mean(0))[::-1], atol=1e-5)
    # the short member alone says something else: it is really mixed in
    assert not np.allclose(probs, torch.softmax(long_logits, -1).numpy(), atol=1e-3)


def test_classify_batches_give_what_predict_gives(mixed, tmp_path, capsys):
    """`stmt classify` runs windows of several files and lengths in shared batches; every
    file's probabilities are those of :meth:`Classifier.predict`."""
    files = [
        write_mesh_npz(tmp_path / f"m{i}.npz", s, seed=i) for i, s in enumerate((2.4, 0.5, 3.3))
    ]
    argv = ["classify", *map(str, files), "--ckpt", str(mixed), "--json", "--top-k", "4",
            "--batch-size", "3"]  # fmt: skip
    assert stmt_main(argv) == 0
    records = json.loads(capsys.readouterr().out)
    clf = Classifier.from_checkpoint(mixed)
    for path, record in zip(files, records):
        pred = clf.predict(read_sequence(path), top_k=4)
        want = {a: p for a, p in pred.overall}
        assert len(record["windows"]) == len(pred.windows)
        for item in record["overall"]:
            assert item["prob"] == pytest.approx(want[item["label"]], abs=1e-5)


def test_bad_scales_are_refused_with_one_line(mixed, tmp_path, capsys):
    ck = torch.load(mixed, weights_only=True)
    for scales, says in (
        ([{"window_s": 0.6, "members": 1}, {"window_s": 1.0, "members": 3}], "window_s first"),
        ([{"window_s": 1.0, "members": 2}, {"window_s": 0.6, "members": 1}], "4 members in all"),
        ([{"window_s": 1.0, "members": 3}, {"window_s": float("nan"), "members": 1}], "window"),
        ([{"window_s": 1.0, "members": 3}, {"window_s": 0.6}], "a list of"),
        ("1.0,0.6", "a list of"),
    ):
        ck["hyper_parameters"]["scales"] = scales
        bad = tmp_path / "bad.ckpt"
        torch.save(ck, bad)
        with pytest.raises(InputError, match=says):
            Classifier.from_checkpoint(bad)
        code = stmt_main(["classify", "datasets/samples/jump.bvh", "--ckpt", str(bad)])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "scales" in err


def test_lightning_evaluation_refuses_several_lengths(mixed):
    """validate/test/predict cut one window length: say so instead of running the short
    members on long windows."""
    from stmt.clip import ClipSettings

    hp = torch.load(mixed, weights_only=True)["hyper_parameters"]
    settings = ClipSettings(**hp["clip"])
    with pytest.raises(InputError, match="windows of several lengths"):
        checkpoint.check_fits_data(hp, settings, mixed)
