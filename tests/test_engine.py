"""Lightning modules and the CLI, on a small stand-in data module (random clips).

Run as a script (``python tests/test_engine.py fit ...``) this file is a CLI
with the stand-in data module: the DDP test needs a command line that
Lightning can re-launch in each process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from stmt import checkpoint
from stmt.clip import ClipSettings
from stmt.engine.classifier import STMTClassifier, load_pretrained_encoder
from stmt.engine.cli import build_cli, lightning_main
from stmt.engine.pretrainer import STMTPretrainer
from stmt.errors import InputError
from stmt.model import build_model

TINY = {"centers1": 16, "centers2": 8, "k": 4}  # smaller still than stmt_tiny, for speed


class _Clips(Dataset):
    def __init__(self, vertices: torch.Tensor, labels: torch.Tensor):
        self.vertices, self.labels = vertices, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"vertices": self.vertices[i], "label": self.labels[i]}


class FakeClipData(pl.LightningDataModule):
    """Random clips with the attributes STMTDataModule exposes (available after __init__)."""

    def __init__(
        self,
        num_clips: int = 8,
        num_classes: int = 3,
        num_frames: int = 4,
        num_points: int = 32,
        batch_size: int = 4,
        seed: int = 0,
    ):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.num_classes, self.num_frames, self.num_points = num_classes, num_frames, num_points
        self.class_names = [f"action {i}" for i in range(num_classes)]
        self.fps, self.window_s = 30.0, num_frames / 30.0
        self.clip_s, self.fixed_window = 2.5, True  # how clips were cut: recorded for inference
        pts = torch.randn(num_points, 3, generator=gen)
        self.geodesic = torch.cdist(pts, pts)
        self.batch_size = batch_size
        vertices = torch.randn(num_clips, num_frames, num_points, 3, generator=gen)
        self.data = _Clips(vertices, torch.arange(num_clips) % num_classes)

    @property
    def clip_settings(self) -> ClipSettings:
        return ClipSettings(
            self.class_names, self.num_frames, self.num_points, self.fps, self.window_s,
            self.clip_s, self.fixed_window,
        )  # fmt: skip

    def _loader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=self.batch_size)

    train_dataloader = val_dataloader = test_dataloader = predict_dataloader = _loader


def trainer(tmp_path: Path, **kw) -> pl.Trainer:
    args = {
        "accelerator": "cpu", "devices": 1, "default_root_dir": tmp_path, "logger": False,
        "enable_progress_bar": False, "enable_model_summary": False, "max_steps": 2,
        "limit_val_batches": 1, "num_sanity_val_steps": 0,
    }  # fmt: skip
    return pl.Trainer(**{**args, **kw})


def classifier(dm: FakeClipData, **kw) -> STMTClassifier:
    settings = ClipSettings(dm.class_names, dm.num_frames, dm.num_points, dm.fps, dm.window_s)
    return STMTClassifier(settings, model_args=TINY, **kw)


def pretrainer(dm: FakeClipData, **kw) -> STMTPretrainer:
    settings = ClipSettings((), dm.num_frames, dm.num_points)
    return STMTPretrainer(settings, model_args=TINY, patch_size=4, **kw)


def test_checkpoint_round_trip_without_lightning(tmp_path):
    torch.manual_seed(0)
    dm = FakeClipData()
    module = classifier(dm, label_smoothing=0.1)
    trainer(tmp_path).fit(module, dm)
    path = tmp_path / "model.ckpt"
    module.trainer.save_checkpoint(path)

    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # plain types only
    hp = ckpt["hyper_parameters"]
    clip = hp["clip"]  # the clip settings, one object
    assert hp["arch"] == "stmt_tiny" and clip["class_names"] == dm.class_names
    assert (clip["num_frames"], clip["num_points"]) == (4, 32)
    assert (clip["fps"], clip["window_s"]) == (dm.fps, dm.window_s)
    assert hp["model_args"] == TINY  # the sizes are stored once, in the clip settings
    assert ckpt["stmt_format"] == checkpoint.FORMAT_VERSION
    model = build_model(hp["arch"], **checkpoint.model_args(hp))
    state = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)  # strict
    geodesic = ckpt["state_dict"]["geodesic"]
    assert torch.equal(geodesic, dm.geodesic)  # the training template travels with the weights

    module.eval()
    model.eval()
    v = dm.data.vertices[:2]
    with torch.no_grad():
        assert torch.allclose(model(v, geodesic), module(v), atol=1e-6)
        reloaded = STMTClassifier.load_from_checkpoint(path, map_location="cpu").eval()
        assert torch.allclose(reloaded(v), module(v), atol=1e-6)


def test_test_metrics_and_confusion_matrix(tmp_path):
    torch.manual_seed(0)
    dm = FakeClipData(num_classes=6)  # top-5 on 6 classes; top-k is clipped below num_classes
    module = classifier(dm)
    results = trainer(tmp_path).test(module, dm, verbose=False)[0]
    assert {"test/top1", "test/top5", "test/top1_norm", "test/loss"} <= set(results)
    assert results["test/top5"] >= results["test/top1"]
    rows = (tmp_path / "confusion_matrix.csv").read_text().strip().splitlines()
    assert rows[0].split(",")[1:] == dm.class_names and len(rows) == 7
    assert sum(int(x) for r in rows[1:] for x in r.split(",")[1:]) == len(dm.data)
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    # the metrics agree with the confusion matrix: top-1 over all clips, top-1-norm per class
    counts = torch.tensor(
        [[int(x) for x in r.split(",")[1:]] for r in rows[1:]], dtype=torch.float64
    )
    micro = counts.diag().sum() / counts.sum()
    per_class = counts.diag() / counts.sum(dim=1)
    macro = per_class[counts.sum(dim=1) > 0].mean()
    assert results["test/top1"] == pytest.approx(float(micro), abs=1e-6)
    assert results["test/top1_norm"] == pytest.approx(float(macro), abs=1e-6)


def test_top5_clipped_to_two_classes(tmp_path):
    dm = FakeClipData(num_classes=2)
    results = trainer(tmp_path).validate(classifier(dm), dm, verbose=False)[0]
    assert results["val/top5"] == 1.0  # top-2 of 2 classes


class _GradNorms(pl.Callback):
    """The parameters' total gradient norm before clipping, and after the optimiser step."""

    def __init__(self):
        self.before, self.after = [], []

    @staticmethod
    def norm(module) -> float:
        return float(torch.cat([p.grad.reshape(-1) for p in module.parameters()]).norm())

    def on_before_optimizer_step(self, trainer, module, optimizer):  # before clipping
        self.before.append(self.norm(module))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.after.append(self.norm(module))


@pytest.mark.parametrize(
    ("precision", "fused"), [("32-true", True), ("bf16-mixed", True), ("16-mixed", False)]
)
def test_adamw_fused_unless_scaled_and_gradients_clipped(tmp_path, precision, fused):
    # fused AdamW wherever no float16 gradient scaler runs; Lightning alone refuses to clip
    # for it under bf16-mixed, the module's configure_gradient_clipping clips all the same
    from pytorch_lightning.plugins import MixedPrecision

    torch.manual_seed(0)
    dm = FakeClipData()
    module = classifier(dm)
    norms = _GradNorms()
    # (Trainer(precision="16-mixed") turns into bf16 on the CPU, the plugin keeps float16;
    # a scale of 1 does not overflow and skip the first step, as the default 2^16 does here)
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    how = (
        {"plugins": [MixedPrecision("16-mixed", "cpu", scaler)]} if precision == "16-mixed" else {}
    )
    how = how or {"precision": precision}
    fit = trainer(tmp_path, gradient_clip_val=1e-3, callbacks=[norms], **how)
    fit.fit(module, dm)
    assert bool(fit.optimizers[0].defaults["fused"]) is fused
    assert len(norms.after) == 2 and min(norms.before) > 1e-2  # clipping had work to do
    assert norms.after == pytest.approx([1e-3, 1e-3], rel=1e-3)


def test_pretrain_to_finetune_transfer(tmp_path):
    torch.manual_seed(0)
    dm = FakeClipData()
    pre = pretrainer(dm)
    trainer(tmp_path).fit(pre, dm)
    assert {"train/mvm", "train/ffp", "train/loss"} <= set(pre.trainer.logged_metrics)
    path = tmp_path / "pretrained.ckpt"
    pre.trainer.save_checkpoint(path)

    fine = classifier(dm, pretrained=str(path))
    fine.setup("fit")  # where the encoder is loaded when fitting starts
    encoder = pre.model.encoder.state_dict()
    for name, value in fine.model.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(value, encoder[name]), name
    saved = torch.load(path, weights_only=True)["hyper_parameters"]
    assert saved["clip"]["num_points"] == 32 and saved["model_args"] == TINY

    # a different architecture is an error naming the mismatch, never a partial load
    other = build_model(
        "stmt_tiny", num_classes=3, num_frames=4, num_points=32, **{**TINY, "width": 64}
    )
    with pytest.raises(InputError, match="wrong shape"):
        load_pretrained_encoder(other, path)
    # so are unexpected keys
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["model.encoder.extra.weight"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "extra.ckpt")
    with pytest.raises(InputError, match=r"unexpected 1 \(extra.weight\)"):
        load_pretrained_encoder(
            build_model("stmt_tiny", num_classes=3, num_frames=4, num_points=32, **TINY),
            tmp_path / "extra.ckpt",
        )
    # and a classifier checkpoint is not a pretraining one
    fine.trainer = None
    trainer(tmp_path).fit(fine, dm)
    fine.trainer.save_checkpoint(tmp_path / "fine.ckpt")
    with pytest.raises(InputError, match="not a pretraining checkpoint"):
        load_pretrained_encoder(fine.model, tmp_path / "fine.ckpt")
    with pytest.raises(InputError, match="not found"):
        load_pretrained_encoder(fine.model, tmp_path / "missing.ckpt")


CONFIG = """
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  num_sanity_val_steps: 0
model:
  class_path: {model}
  init_args:
    model_args: {{centers1: 16, centers2: 8, k: 4}}
data:
  num_clips: 8
  num_points: 32
"""


def write_config(tmp_path: Path, model: str = "stmt.engine.classifier.STMTClassifier") -> str:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(model=model))
    return str(path)


def test_cli_links_the_data_module_into_the_model(tmp_path):
    cfg = write_config(tmp_path)
    cli = build_cli(
        ["fit", "--config", cfg, "--trainer.fast_dev_run", "true", "--data.num_classes", "5",
         f"--trainer.default_root_dir={tmp_path}"],
        datamodule_class=FakeClipData,
    )  # fmt: skip
    clip = cli.model.clip  # linked from the data module, once
    assert isinstance(cli.model, STMTClassifier) and isinstance(clip, ClipSettings)
    assert (clip.num_classes, clip.num_frames, clip.num_points) == (5, 4, 32)
    assert clip.class_names == tuple(f"action {i}" for i in range(5)) and clip.window_s == 4 / 30
    assert (clip.clip_s, clip.fixed_window) == (2.5, True)
    assert cli.model.hparams.clip == clip.as_dict()  # and kept in the checkpoint as such
    assert cli.model.hparams.model_args["centers1"] == 16


def test_cli_pretrains_and_resumes_from_last(tmp_path):
    cfg = write_config(tmp_path, "stmt.engine.pretrainer.STMTPretrainer")
    common = ["--config", cfg, f"--trainer.default_root_dir={tmp_path}", "--trainer.limit_val_batches=1",
              "--trainer.callbacks=ModelCheckpoint", "--trainer.callbacks.save_last=true",
              f"--trainer.callbacks.dirpath={tmp_path}/ckpt"]  # fmt: skip
    cli = build_cli(["fit", *common, "--trainer.max_epochs=1"], datamodule_class=FakeClipData)
    assert isinstance(cli.model, STMTPretrainer) and cli.trainer.global_step == 2
    cli = build_cli(
        ["fit", *common, "--trainer.max_epochs=2", "--ckpt_path=last"],
        datamodule_class=FakeClipData,
    )
    assert cli.trainer.global_step == 4  # continued from step 2, not restarted
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_cli_config_errors_are_one_line_exit_2(tmp_path, capsys):
    assert lightning_main(["fit", "--config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stmt: error: config: File does not exist") and "\n" not in err
    cfg = write_config(tmp_path)
    assert lightning_main(["fit", "--config", cfg, "--model.init_args.lr", "fast"]) == 2
    assert "model.lr: Expected a <class 'float'>. Got value: fast" in capsys.readouterr().err


def test_ddp_two_cpu_processes(tmp_path):
    cfg = write_config(tmp_path)
    cmd = [
        sys.executable, __file__, "fit", "--config", cfg, f"--trainer.default_root_dir={tmp_path}",
        "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.max_steps=2",
        "--trainer.limit_val_batches=1", "--trainer.callbacks=ModelCheckpoint",
        f"--trainer.callbacks.dirpath={tmp_path}/ckpt", "--trainer.callbacks.save_last=true",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_TORCH_DISTRIBUTED_BACKEND": "gloo"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stderr + proc.stdout  # two processes took part


if __name__ == "__main__":  # a CLI with the stand-in data module, for the DDP test
    build_cli(sys.argv[1:], datamodule_class=FakeClipData)
