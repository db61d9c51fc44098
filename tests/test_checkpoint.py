"""stmt.checkpoint: the format written once and read once, and the one-line errors
for checkpoints that cannot be used as asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stmt import checkpoint
from stmt.cli import main as stmt_main
from stmt.clip import ClipSettings
from stmt.inference import Classifier

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "stmt-tiny-synthetic.ckpt"
TINY = {"centers1": 16, "centers2": 8, "k": 4}


def save_module(module, path: Path) -> Path:
    """What a Trainer saves, without training: hyper-parameters and state dict."""
    ckpt = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(),
            "pytorch-lightning_version": "2.6.0", "epoch": 0, "global_step": 0}  # fmt: skip
    checkpoint.mark(ckpt)
    torch.save(ckpt, path)
    return path


def classifier_module(num_points=64, num_frames=24, names=("walk", "sit", "stand up")):
    from stmt.engine.classifier import ClassificationModule

    settings = ClipSettings(names, num_frames=num_frames, num_points=num_points)
    return ClassificationModule(settings, model_args=TINY)


def test_old_shipped_checkpoint_still_loads():
    ckpt = checkpoint.read(SHIPPED)
    assert "stmt_format" not in ckpt and ckpt["hyper_parameters"]["model_args"]["num_points"] == 256
    clf = Classifier.from_checkpoint(SHIPPED)
    assert len(clf.class_names) == 15 and (clf.num_frames, clf.num_points) == (24, 256)


def test_sizes_are_stored_once_and_completed_on_read(tmp_path):
    path = save_module(classifier_module(num_points=48, num_frames=8), tmp_path / "new.ckpt")
    hp = torch.load(path, weights_only=True)["hyper_parameters"]
    assert hp["model_args"] == TINY and hp["clip"]["num_points"] == 48
    assert checkpoint.model_args(hp) == {
        **TINY,
        "num_classes": 3,
        "num_frames": 8,
        "num_points": 48,
    }
    clf = Classifier.from_checkpoint(path)
    assert (clf.num_frames, clf.num_points, clf.class_names) == (8, 48, ["walk", "sit", "stand up"])
    with pytest.raises(ValueError, match="disagrees"):
        checkpoint.model_args({**hp, "model_args": {"num_points": 64}})


def test_pretraining_checkpoint_given_to_classify(tmp_path, capsys):
    from stmt.engine.pretrainer import PretrainingModule

    module = PretrainingModule(ClipSettings((), 8, 64), model_args=TINY, patch_size=4)
    path = save_module(module, tmp_path / "pretrain.ckpt")
    assert checkpoint.is_pretraining(torch.load(path, weights_only=True))
    code = stmt_main(["classify", str(ROOT / "datasets/samples/walk.npz"), "--ckpt", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"stmt: error: {path}: this is a pretraining checkpoint (no classification "
                          "head); fine-tune it first: set model.init_args.pretrained")  # fmt: skip


def test_class_list_that_does_not_fit_the_head(tmp_path, capsys):
    path = save_module(classifier_module(num_points=64, num_frames=8), tmp_path / "c.ckpt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["clip"]["class_names"] = ["walk", "sit", "stand up", "wave"]
    torch.save(ckpt, path)
    code = stmt_main(["classify", str(ROOT / "datasets/samples/walk.npz"), "--ckpt", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == (
        f"stmt: error: {path}: the class list has 4 names but the head has 3 outputs: "
        "the class list does not fit the head"
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ckcache")
    assert stmt_main(["synth", "--out", str(root / "raw"), "--per-class", "2", "--subjects", "7",
                      "--classes", "walk,sit,stand up", "--quiet"]) == 0  # fmt: skip
    assert stmt_main(["prepare", "--dataset", "synthetic", "--data", str(root / "raw"),
                      "--out", str(root / "cache"), "--num-points", "64", "--quiet"]) == 0  # fmt: skip
    return root / "cache"


def _test_with(cache: Path, ckpt: Path, capsys) -> tuple[int, str]:
    argv = ["test", "--config", str(ROOT / "datasets/synthetic/fit.yaml"), f"--data.cache={cache}",
            "--data.num_workers=0", "--trainer.enable_progress_bar=false", f"--ckpt_path={ckpt}"]  # fmt: skip
    code = stmt_main(argv)
    return code, capsys.readouterr().err


def test_checkpoint_cache_mismatch_is_one_line(cache, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = json.loads((cache / "index.json").read_text())["class_names"]
    ckpt = save_module(classifier_module(num_points=48, names=names), tmp_path / "n48.ckpt")
    code, err = _test_with(cache, ckpt, capsys)
    assert code == 2 and "Traceback" not in err and "size mismatch" not in err
    assert (
        f"stmt: error: {ckpt}: the cache {cache} has N=64, the checkpoint N=48: rerun "
        "`stmt prepare` with --num-points 48" in err
    )

    ckpt = save_module(classifier_module(num_points=64, names=names[:3]), tmp_path / "c3.ckpt")
    code, err = _test_with(cache, ckpt, capsys)
    assert code == 2 and "Traceback" not in err
    assert (
        f"stmt: error: {ckpt}: the cache {cache} has {len(names)} classes, the checkpoint 3: "
        "the class list does not fit the head" in err
    )


def _old_layout(hp: dict) -> dict:
    """Hyper-parameters as checkpoints before stmt_format 3 kept them: the clip settings
    as top-level keys, with num_classes, and the module's old name."""
    old = {k: v for k, v in hp.items() if k != "clip"}
    old.update(hp["clip"], num_classes=len(hp["clip"]["class_names"]))
    old["_class_path"] = "stmt.engine.classifier.STMTClassifier"
    return old


def test_old_layout_checkpoint_evaluates_and_classifies_the_same(
    cache, tmp_path, capsys, monkeypatch
):
    """A checkpoint with the clip settings as separate keys (main's layout before issue 27)
    is read into today's layout: `stmt test --ckpt_path` and classify load it, and it
    labels a file as the same checkpoint in today's layout does."""
    monkeypatch.chdir(tmp_path)
    names = json.loads((cache / "index.json").read_text())["class_names"]
    new = save_module(classifier_module(num_points=64, names=names), tmp_path / "new.ckpt")
    ckpt = torch.load(new, weights_only=True)
    ckpt["hyper_parameters"] = _old_layout(ckpt["hyper_parameters"])
    ckpt.pop("stmt_format")
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    assert checkpoint.read(old)["hyper_parameters"] == checkpoint.read(new)["hyper_parameters"] | {
        "_class_path": "stmt.engine.classifier.STMTClassifier"
    }
    code, err = _test_with(cache, old, capsys)
    assert code == 0, err
    sample = str(ROOT / "datasets/samples/walk.npz")
    outs = []
    for path in (new, old):
        assert stmt_main(["classify", sample, "--ckpt", str(path), "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0] == outs[1]
