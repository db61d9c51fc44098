"""Checkpoints load with ``weights_only=True``: a file from the internet cannot run code,
and a file that is not an stmt checkpoint gets one clear error naming it."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from stmt.checkpoint import read as load_checkpoint
from stmt.errors import InputError
from stmt.inference import Classifier

ARGS = {"num_classes": 3, "num_frames": 8, "num_points": 64, "centers1": 16, "centers2": 8}


class _Payload:
    """Unpickling this calls os.mkdir(marker): the code a malicious checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _valid_checkpoint(path: Path) -> Path:
    from stmt.model.stmt import build_model

    model = build_model("stmt_tiny", **ARGS)
    hp = {"arch": "stmt_tiny", "model_args": ARGS, "num_classes": 3, "num_frames": 8, "num_points": 64,
              "class_names": ["walk", "jump", "sit"], "fps": 30.0, "window_s": 1.0}  # fmt: skip
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["geodesic"] = torch.zeros(64, 64)
    torch.save({"hyper_parameters": hp, "state_dict": state}, path)
    return path


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch_zip", "plain_pickle"])
def test_malicious_pickle_is_refused_without_running_it(tmp_path, writer):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.ckpt"
    payload = {"hyper_parameters": {"arch": "stmt_tiny"}, "state_dict": {}, "x": _Payload(marker)}
    if writer == "torch_zip":
        torch.save(payload, evil)
    else:
        with open(evil, "wb") as f:
            pickle.dump(payload, f)

    with pytest.raises(InputError) as info:
        Classifier.from_checkpoint(evil)
    assert not marker.exists(), "loading the checkpoint ran its code"
    assert str(evil) in str(info.value)
    assert "refused to load" in str(info.value)

    # the payload is real: an unsafe load does run it (so the check above means something)
    with open(evil, "rb") as f:
        if writer == "torch_zip":
            torch.load(f, weights_only=False)
        else:
            pickle.load(f)
    assert marker.exists()


def test_malicious_pickle_refused_by_the_cli(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "downloaded.ckpt"
    torch.save({"hyper_parameters": {}, "x": _Payload(marker)}, evil)
    proc = subprocess.run(
        [sys.executable, "-m", "stmt", "classify", str(tmp_path / "any.npz"), "--ckpt", str(evil)],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert not marker.exists()
    assert proc.stderr.startswith(f"stmt: error: {evil}: refused to load")
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"this is a text file, not a checkpoint\n", "not a PyTorch checkpoint"),
        (b"", "not a PyTorch checkpoint"),
    ],
)
def test_not_a_torch_file(tmp_path, content, expected):
    bad = tmp_path / "notes.ckpt"
    bad.write_bytes(content)
    with pytest.raises(InputError, match=expected) as info:
        load_checkpoint(bad)
    assert info.value.path == bad


def test_a_mocap_npz_given_as_the_checkpoint_is_named(tmp_path):
    """An AMASS or mesh .npz (a zip of .npy arrays) is not a torch zip: one line saying
    so, not torch's loader message."""
    bad = tmp_path / "walk.npz"
    np.savez(bad, poses=np.zeros((4, 156)), trans=np.zeros((4, 3)))
    with pytest.raises(InputError, match=r"a NumPy \.npz archive, not a PyTorch checkpoint"):
        load_checkpoint(bad)
    other = tmp_path / "bundle.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(InputError, match="a zip archive, not a PyTorch checkpoint"):
        load_checkpoint(other)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "nope.ckpt")


@pytest.mark.parametrize(
    "ckpt, expected",
    [
        ({"state_dict": {}}, "no 'hyper_parameters'"),
        ([1, 2, 3], "no 'hyper_parameters'"),
        ({"hyper_parameters": {"num_frames": 8}, "state_dict": {}}, "lacks"),
        (
            {"hyper_parameters": {"arch": "stmt_tiny", "num_frames": 8, "num_points": 64, "fps": 30.0, "window_s": 1.0},
             "state_dict": {}},
            "class_names",
        ),
        (
            {"hyper_parameters": {"arch": "stmt_tiny", "class_names": ["a"], "num_frames": 8, "num_points": 64,
                                      "fps": 30.0, "window_s": 1.0}},
            "no 'state_dict'",
        ),
        (
            {"hyper_parameters": {"arch": "stmt_tiny", "class_names": [1, 2], "num_frames": 8, "num_points": 64,
                                      "fps": 30.0, "window_s": 1.0}, "state_dict": {}},
            "class_names is not a list of strings",
        ),
    ],
)  # fmt: skip
def test_not_an_stmt_checkpoint(tmp_path, ckpt, expected):
    path = tmp_path / "other.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(InputError, match=expected) as info:
        Classifier.from_checkpoint(path)
    assert info.value.path == path


def test_arch_args_and_weights_are_checked(tmp_path):
    path = _valid_checkpoint(tmp_path / "ok.ckpt")
    ckpt = torch.load(path, weights_only=True)

    ckpt["hyper_parameters"]["arch"] = "stmt_huge"
    torch.save(ckpt, tmp_path / "arch.ckpt")
    with pytest.raises(InputError, match="cannot build model 'stmt_huge'"):
        Classifier.from_checkpoint(tmp_path / "arch.ckpt")

    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["model_args"] = dict(ARGS, centers2=4)
    torch.save(ckpt, tmp_path / "weights.ckpt")
    with pytest.raises(InputError, match="weights do not fit"):
        Classifier.from_checkpoint(tmp_path / "weights.ckpt")

    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"] = {"geodesic": ckpt["state_dict"]["geodesic"]}
    torch.save(ckpt, tmp_path / "empty.ckpt")
    with pytest.raises(InputError, match="no 'model.\\*' weights"):
        Classifier.from_checkpoint(tmp_path / "empty.ckpt")


def test_valid_checkpoint_rebuilds_the_model(tmp_path):
    clf = Classifier.from_checkpoint(_valid_checkpoint(tmp_path / "ok.ckpt"))
    assert clf.class_names == ["walk", "jump", "sit"]
    assert (clf.num_frames, clf.num_points, clf.fps, clf.window_s) == (8, 64, 30.0, 1.0)
    assert not clf.model.training


def test_loading_imports_no_lightning_open3d_or_matplotlib(tmp_path):
    """Inference stays light: a fresh interpreter loads a checkpoint without those imports."""
    path = _valid_checkpoint(tmp_path / "ok.ckpt")
    code = (
        "import sys; from stmt.inference import Classifier; "
        f"Classifier.from_checkpoint({str(path)!r}); "
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('lightning', 'pytorch_lightning', 'open3d', 'matplotlib', 'torchmetrics')]; "
        "print(heavy); assert not heavy"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lightning_checkpoint_loads_and_predicts_the_same(tmp_path):
    """A checkpoint written by a Lightning Trainer from ClassificationModule rebuilds the same model."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from stmt.clip import ClipSettings
    from stmt.engine.classifier import ClassificationModule

    torch.manual_seed(0)
    pts = torch.randn(64, 3)

    class Clips(pl.LightningDataModule):
        num_classes, num_frames, num_points, fps, window_s = 3, 8, 64, 30.0, 1.0
        class_names = ("walk", "jump", "sit")
        geodesic = torch.cdist(pts, pts)

        def train_dataloader(self):
            data = [
                {"vertices": torch.randn(8, 64, 3), "label": torch.tensor(i % 3)} for i in range(4)
            ]
            return DataLoader(data, batch_size=2)

    dm = Clips()
    settings = ClipSettings(dm.class_names, num_frames=8, num_points=64, fps=30.0, window_s=1.0)
    module = ClassificationModule(settings, model_args={"centers1": 16, "centers2": 8})
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=2, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                         limit_val_batches=0)  # fmt: skip
    trainer.fit(module, dm)
    path = tmp_path / "trained.ckpt"
    trainer.save_checkpoint(path)

    clf = Classifier.from_checkpoint(path)
    assert clf.class_names == list(dm.class_names) and (clf.num_frames, clf.num_points) == (8, 64)
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["geodesic"], dm.geodesic)
    x = torch.randn(3, 8, 64, 3)
    module.model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(clf.model(x, dm.geodesic).numpy(), module.model(x, dm.geodesic).numpy(),
                                   atol=1e-5)  # fmt: skip
