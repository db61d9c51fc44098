"""The shipped synthetic configs through `stmt fit|test`, on a tiny cache made by `stmt synth` + `stmt prepare`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stmt import checkpoint
from stmt.cli import main as stmt_main
from stmt.model import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "datasets" / "synthetic"
SMALL = ["--data.num_workers=0", "--data.batch_size=4", "--trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    assert stmt_main(["synth", "--out", str(root / "raw"), "--per-class", "2", "--subjects", "7",
                      "--classes", "walk,sit,stand up", "--quiet"]) == 0  # fmt: skip
    assert stmt_main(["prepare", "--dataset", "synthetic", "--data", str(root / "raw"),
                      "--out", str(root / "cache"), "--num-points", "64", "--quiet"]) == 0  # fmt: skip
    return root / "cache"


def test_fit_fast_dev_run(cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for config in ("fit.yaml", "pretrain.yaml"):
        argv = ["fit", "--config", str(CONFIGS / config), "--trainer.fast_dev_run=true",
                f"--data.cache={cache}", *SMALL]  # fmt: skip
        assert stmt_main(argv) == 0, config


def test_fit_then_test_real_checkpoint(cache, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    common = ["--config", str(CONFIGS / "fit.yaml"), f"--data.cache={cache}", *SMALL]
    assert (
        stmt_main(["fit", *common, "--trainer.max_steps=1", "--trainer.limit_val_batches=1"]) == 0
    )
    last = tmp_path / "runs/synthetic/fit/checkpoints/last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)  # data module hparams too
    hp = ckpt["hyper_parameters"]
    clip = hp["clip"]  # the clip settings, one object
    assert {"walk", "sit", "stand up"} <= set(clip["class_names"]) and clip["num_points"] == 64
    assert clip["window_s"] > 0 and clip["fps"] == 30.0
    model = build_model(hp["arch"], **checkpoint.model_args(hp))
    model.load_state_dict(
        {k[6:]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    )
    assert (
        ckpt["state_dict"]["geodesic"].shape == (64, 64)
        and ckpt["state_dict"]["geodesic"].max() > 0
    )

    assert stmt_main(["test", *common, f"--ckpt_path={last}"]) == 0
    matrices = list((tmp_path / "runs/synthetic/fit").rglob("confusion_matrix.csv"))
    assert len(matrices) == 1 and (matrices[0].parent / "confusion_matrix.png").exists()


def test_missing_cache_is_a_one_line_error(tmp_path, capsys):
    argv = ["fit", "--config", str(CONFIGS / "fit.yaml"), f"--data.cache={tmp_path / 'nope'}"]
    assert stmt_main(argv) == 2
    err = capsys.readouterr().err
    assert f"stmt: error: {tmp_path / 'nope'}:" in err and "Traceback" not in err


def test_last_checkpoint_is_the_newest_epoch(cache, tmp_path, monkeypatch):
    """`--ckpt_path last` must resume from the newest epoch, not from the best one.

    (Lightning 2.6 refreshes a monitoring ModelCheckpoint's last.ckpt only when
    that callback saves, so the configs keep a separate, unmonitored one.)
    """
    monkeypatch.chdir(tmp_path)
    common = ["--config", str(CONFIGS / "fit.yaml"), f"--data.cache={cache}", *SMALL,
              "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
              "--trainer.check_val_every_n_epoch=1"]  # fmt: skip
    assert stmt_main(["fit", *common, "--trainer.max_epochs=3"]) == 0
    ckpts = tmp_path / "runs/synthetic/fit/checkpoints"
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2
    assert len(list(ckpts.glob("best-*.ckpt"))) == 1
    assert stmt_main(["fit", *common, "--trainer.max_epochs=4", "--ckpt_path=last"]) == 0
    resumed = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 3 and resumed["global_step"] == last["global_step"] + 1


def test_calibrate_a_cache_without_other_actions(cache, tmp_path, monkeypatch, capsys):
    """A cache with no clip of another action (as BABEL's): `stmt calibrate` still fits
    the temperature and the rule (at most --max-known-rate of the known clips flagged),
    says that its AUROC is not measured, and makes an ensemble of two runs."""
    trained = []
    for seed in (0, 1):
        (tmp_path / f"s{seed}").mkdir()
        monkeypatch.chdir(tmp_path / f"s{seed}")
        common = ["--config", str(CONFIGS / "fit.yaml"), f"--data.cache={cache}", *SMALL,
                  f"--seed_everything={seed}", "--trainer.max_steps=1",
                  "--trainer.limit_val_batches=1"]  # fmt: skip
        assert stmt_main(["fit", *common]) == 0
        trained.append(tmp_path / f"s{seed}/runs/synthetic/fit/checkpoints/last.ckpt")
    capsys.readouterr()
    out = tmp_path / "calibrated.ckpt"
    argv = ["calibrate", *map(str, trained), "--cache", str(cache), "--out", str(out)]
    assert stmt_main(argv) == 0
    printed = capsys.readouterr().out
    assert "no clip of another action (label -2) in 'val'" in printed, printed
    assert "an ensemble of 2" in printed
    cal = torch.load(out, map_location="cpu", weights_only=False)["hyper_parameters"]["calibration"]
    assert cal["fitted_on"]["other_clips"] == 0 and cal["temperature"] > 0
    val = cal["report"]["val"]
    assert val["other_clips"] == 0 and val["auroc"] != val["auroc"]  # NaN: not measured
    assert val["known_clips"] > 0 and val["unknown_known"] <= 0.10
    # --keep-temperature: the checkpoint's temperature stays (its probabilities as they
    # were; here one set by hand, which a fit would move); only the rule is fitted again
    ckpt = torch.load(out, map_location="cpu", weights_only=False)
    ckpt["hyper_parameters"]["calibration"]["temperature"] = 2.5
    torch.save(ckpt, tmp_path / "warm.ckpt")
    for keep, tag in ((True, "kept"), (False, "refit")):
        argv = ["calibrate", str(tmp_path / "warm.ckpt"), "--cache", str(cache), "--out",
                str(tmp_path / f"{tag}.ckpt"), "--max-known-rate", "0.02"]  # fmt: skip
        assert stmt_main(argv + ["--keep-temperature"] * keep) == 0
        got = torch.load(tmp_path / f"{tag}.ckpt", map_location="cpu", weights_only=False)
        again = got["hyper_parameters"]["calibration"]
        assert (again["temperature"] == 2.5) is keep
        assert again["report"]["val"]["unknown_known"] <= 0.02
        assert again["unknown_thresholds"] == {"mocap": again["unknown_threshold"]}
