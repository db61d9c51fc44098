"""What `stmt fit | test | predict` leave behind and print at the end, on a tiny
synthetic cache: every printed path exists and holds what it says."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from stmt.cli import main as stmt_main

CONFIGS = Path(__file__).resolve().parents[1] / "datasets" / "synthetic"
SMALL = ["--data.num_workers=0", "--data.batch_size=4", "--trainer.enable_progress_bar=false",
         "--trainer.enable_model_summary=false"]  # fmt: skip


def run(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``stmt argv`` in ``cwd``; returns (status, stdout)."""
    here, buf = Path.cwd(), io.StringIO()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(buf):
            code = stmt_main(argv)
    finally:
        os.chdir(here)
    return code, buf.getvalue()


def printed_paths(out: str, cwd: Path) -> dict[str, Path]:
    """``{"last checkpoint": path, ...}`` from the summary lines ``name:   path``."""
    found = {}
    for line in out.splitlines():
        m = re.match(r"^([a-z][a-z0-9 ()/.=]*):\s+(\S+)$", line)
        if m:
            found[m.group(1)] = cwd / m.group(2)
    return found


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> tuple[Path, Path, str]:
    """A cache of 3 classes and a 2-epoch fit run in its own folder: (cache, cwd, fit stdout)."""
    root = tmp_path_factory.mktemp("outputs")
    assert stmt_main(["synth", "--out", str(root / "raw"), "--per-class", "2", "--subjects", "7",
                      "--classes", "walk,sit,stand up", "--quiet"]) == 0  # fmt: skip
    assert stmt_main(["prepare", "--dataset", "synthetic", "--data", str(root / "raw"),
                      "--out", str(root / "cache"), "--num-points", "64", "--quiet"]) == 0  # fmt: skip
    cwd = root / "work"
    cwd.mkdir()
    code, out = run(["fit", "--config", str(CONFIGS / "fit.yaml"), f"--data.cache={root / 'cache'}",
                     *SMALL, "--trainer.max_epochs=2", "--trainer.limit_train_batches=1",
                     "--trainer.limit_val_batches=1", "--trainer.check_val_every_n_epoch=1",
                     "--trainer.log_every_n_steps=1"], cwd)  # fmt: skip
    assert code == 0
    return root / "cache", cwd, out


def test_fit_prints_checkpoints_metrics_and_curves(run_dir):
    _, cwd, out = run_dir
    paths = printed_paths(out, cwd)
    best = [k for k in paths if k.startswith("best (val/top1 ")]
    assert len(best) == 1 and paths[best[0]].name.startswith("best-epoch=")
    assert paths["last checkpoint"] == cwd / "runs/synthetic/fit/checkpoints/last.ckpt"
    for key in (best[0], "last checkpoint", "metrics", "training curves"):
        assert paths[key].is_file(), key
    header = next(csv.reader(paths["metrics"].open()))
    assert "train/loss" in header and "val/top1" in header

    from PIL import Image

    png = np.asarray(Image.open(paths["training curves"]).convert("RGB"))
    assert png.shape[0] >= 300 and png.shape[1] >= 1000  # two panels: loss and accuracy
    colours = {tuple(c) for c in png.reshape(-1, 3)[::7]}
    assert len(colours) > 20  # curves, axes and text drawn, not a blank canvas


def test_test_prints_a_per_class_table_that_matches_the_matrix(run_dir):
    cache, cwd, _ = run_dir
    last = cwd / "runs/synthetic/fit/checkpoints/last.ckpt"
    code, out = run(["test", "--config", str(CONFIGS / "fit.yaml"), f"--data.cache={cache}", *SMALL,
                     f"--ckpt_path={last}"], cwd)  # fmt: skip
    assert code == 0
    paths = printed_paths(out, cwd)
    counts, picture = paths["confusion matrix (counts)"], paths["confusion matrix (picture)"]
    assert counts.suffix == ".csv" and counts.is_file() and picture.is_file()
    assert paths["metrics"].is_file()
    rows = list(csv.reader(counts.open()))
    matrix = {r[0]: [int(x) for x in r[1:]] for r in rows[1:]}
    names = rows[0][1:]
    table = out[out.index("per-class accuracy (test)") :].splitlines()
    shown = {}
    for line in table[2:]:
        m = re.match(r"^(.+?)\s+(\d+)\s+(\d+)\s+([\d.]+) %$", line)
        if not m:
            break
        shown[m.group(1)] = (int(m.group(2)), int(m.group(3)), float(m.group(4)))
    with_clips = {n for n in names if sum(matrix[n]) > 0}
    assert set(shown) == with_clips and with_clips
    for name, (correct, clips, acc) in shown.items():
        assert correct == matrix[name][names.index(name)] and clips == sum(matrix[name])
        assert acc == pytest.approx(100 * correct / clips, abs=0.01)
    hidden = len(names) - len(with_clips)
    assert f"({hidden} classes without test clips not shown)" in out


def test_predict_writes_csv_and_json(run_dir):
    cache, cwd, _ = run_dir
    last = cwd / "runs/synthetic/fit/checkpoints/last.ckpt"
    code, out = run(["predict", "--config", str(CONFIGS / "fit.yaml"), f"--data.cache={cache}",
                     *SMALL, f"--ckpt_path={last}"], cwd)  # fmt: skip
    assert code == 0
    written = [
        cwd / line.split()[-1] for line in out.splitlines() if line.startswith("predictions:")
    ]
    assert [p.suffix for p in written] == [".csv", ".json"] and all(p.is_file() for p in written)
    doc = json.loads(written[1].read_text())
    index = json.loads((cache / "index.json").read_text())
    test_ids = [i for i, s in enumerate(index["samples"]["split"]) if s == "test"]
    assert doc["checkpoint"] == str(last) and doc["classes"] == index["class_names"]
    assert [p["sample"] for p in doc["predictions"]] == test_ids
    for p in doc["predictions"]:
        i = p["sample"]
        assert p["true_label"] == index["class_names"][index["samples"]["label"][i]]
        assert p["sequence"] == index["sequences"]["source"][index["samples"]["sequence"][i]]
        assert p["end_s"] > p["start_s"] >= 0
        probs = [t["prob"] for t in p["top_k"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    rows = list(csv.DictReader(written[0].open()))
    assert [int(r["sample"]) for r in rows] == test_ids
    for r, p in zip(rows, doc["predictions"]):
        assert r["true_label"] == p["true_label"] and r["label"] == p["top_k"][0]["label"]
        assert float(r["prob"]) == pytest.approx(p["top_k"][0]["prob"], abs=1e-6)
    assert not [f for f in written[0].parent.iterdir() if f.name.endswith(".tmp")]


def test_finetune_says_where_the_encoder_came_from(run_dir):
    cache, cwd, _ = run_dir
    common = [
        f"--data.cache={cache}",
        *SMALL,
        "--trainer.max_steps=1",
        "--trainer.limit_val_batches=0",
    ]
    assert run(["fit", "--config", str(CONFIGS / "pretrain.yaml"), *common], cwd)[0] == 0
    pretrained = "runs/synthetic/pretrain/checkpoints/last.ckpt"
    assert (cwd / pretrained).is_file()
    code, out = run(["fit", "--config", str(CONFIGS / "finetune.yaml"), *common,
                     f"--model.init_args.pretrained={pretrained}"], cwd)  # fmt: skip
    assert code == 0
    assert re.search(rf"^loaded pretrained encoder from {re.escape(pretrained)} \(\d+ tensors", out,
                     re.MULTILINE)  # fmt: skip


def test_synth_and_prepare_print_a_summary_or_json(tmp_path, capsys):
    raw, cache = tmp_path / "raw", tmp_path / "cache"
    assert stmt_main(["synth", "--out", str(raw), "--per-class", "1", "--subjects", "3",
                      "--classes", "walk,sit", "--quiet"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"wrote 2 clips of 2 classes by 3 subjects to {raw}"
    assert f"next: stmt prepare --dataset synthetic --data {raw} --out CACHE" in out
    prep = ["prepare", "--dataset", "synthetic", "--data", str(raw), "--out", str(cache),
            "--num-points", "32", "--quiet"]  # fmt: skip
    assert stmt_main(prep) == 0
    lines = capsys.readouterr().out.splitlines()
    frames = json.loads((cache / "index.json").read_text())["num_frames_total"]
    assert lines == [f"cache      {cache}", "sequences  2 (2 posed now, 0 reused)",
                     f"samples    2 ({frames} frames)"]  # fmt: skip
    assert stmt_main([*prep, "--json"]) == 0  # the old JSON object; a rerun reuses the poses
    info = json.loads(capsys.readouterr().out)
    assert info == {"cache": str(cache), "sequences": 2, "samples": 2, "frames": info["frames"],
                    "posed_now": 0, "failed": 0, "missing": 0}  # fmt: skip
    assert stmt_main(["synth", "--out", str(raw), "--per-class", "1", "--subjects", "3",
                      "--classes", "walk,sit", "--quiet", "--json"]) == 0  # fmt: skip
    info = json.loads(capsys.readouterr().out)
    assert info["out"] == str(raw) and info["clips"] == 2 and info["classes"] == 2


def test_smoke_config_trains_one_epoch_on_a_capped_subset(run_dir):
    """datasets/synthetic/smoke.yaml as it is (only the cache named): one epoch over
    max_samples clips, no limit_* option, and the summary's files exist."""
    import yaml

    from stmt.data.datamodule import STMTDataModule

    cache, cwd, _ = run_dir
    config = yaml.safe_load((CONFIGS / "smoke.yaml").read_text())
    assert not any(k.startswith("limit_") for k in config["trainer"])
    cap, batch = config["data"]["max_samples"], config["data"]["batch_size"]
    code, out = run(["fit", "--config", str(CONFIGS / "smoke.yaml"), f"--data.cache={cache}"], cwd)
    assert code == 0
    paths = printed_paths(out, cwd)
    assert paths["last checkpoint"] == cwd / "runs/synthetic/smoke/checkpoints/last.ckpt"
    assert paths["last checkpoint"].is_file() and paths["metrics"].is_file()
    rows = list(csv.DictReader(paths["metrics"].open()))
    n_train = len(STMTDataModule(str(cache), max_samples=cap).dataset("fit"))
    steps = {int(r["step"]) for r in rows if r.get("train/loss")}
    assert len(steps) == -(-n_train // batch)  # every batch of the (capped) epoch, once
    assert [r for r in rows if r.get("val/top1")], "no validation at the end of the epoch"


def test_max_samples_takes_the_classes_in_turn(run_dir):
    from stmt.data.datamodule import STMTDataModule

    cache, _, _ = run_dir
    full = STMTDataModule(str(cache), num_workers=0).dataset("fit")
    classes = np.unique(full.label)
    assert len(full) > len(classes) > 1  # (the tiny cache: 3 training clips of 2 classes)
    for cap in range(1, len(full)):
        ds = STMTDataModule(str(cache), num_workers=0, max_samples=cap).dataset("fit")
        assert len(ds) == cap and set(ds.sample_ids) <= set(full.sample_ids)
        counts = [int(np.sum(ds.label == c)) for c in classes]
        assert max(counts) - min(counts) <= 1  # classes taken in turn
    big = STMTDataModule(str(cache), num_workers=0, max_samples=1000).dataset("fit")
    np.testing.assert_array_equal(big.sample_ids, full.sample_ids)
    again = STMTDataModule(str(cache), num_workers=0, max_samples=cap).dataset("fit")
    np.testing.assert_array_equal(again.sample_ids, ds.sample_ids)  # fixed by the seed
    with pytest.raises(ValueError, match="max_samples"):
        STMTDataModule(str(cache), max_samples=0)
