"""A cache that is a transaction: a ``stmt prepare`` killed at any write step leaves
the old cache or the new one (never a mix), every corrupted file is detected (cheaply
on open, by checksum with ``--verify``) and never trained on, and a second writer is
refused with one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stmt.cli import main as cli
from stmt.data import cache_writer
from stmt.data import prepare as prep
from stmt.data.cache import ARRAYS, CURRENT, load_index, open_arrays, verify_cache
from stmt.data.synth import generate
from stmt.errors import InputError
from tests.helpers.smpl_model import write_smplh_model

CLASSES = ["walk", "stand", "jump"]
HELD_BACK = 3  # files missing from the first run, found by the second (the cache grows)
STEPS = ["shard", "arrays", "arrays-written", "template", "index", "version", "switch", "links"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel-cache")
    generate(root / "syn", per_class=3, seed=1, subjects=4, classes=CLASSES, progress=False)
    models = write_smplh_model(root / "models", genders=("male", "female", "neutral"))
    return root, models


def _prepare(data, out, **kw):
    root, models = data
    args = {"num_points": 32, "body": "smplh", "body_models": models, "progress": False,
            "template_cache": root / "templates", "log": lambda m: None}  # fmt: skip
    args.update(kw)
    return prep.prepare("synthetic", root / "syn", out, **args)


def _held_back(data) -> list[Path]:
    root, _ = data
    return sorted((root / "syn").rglob("*.npz"))[:HELD_BACK]


@pytest.fixture(scope="module")
def caches(data, tmp_path_factory):
    """``small``: built without HELD_BACK files; ``full``: with every file."""
    base = tmp_path_factory.mktemp("caches")
    away = base / "away"
    away.mkdir()
    moved = []
    for p in _held_back(data):
        moved.append((p, away / p.name))
        shutil.move(p, away / p.name)
    try:
        small = _prepare(data, base / "small")
    finally:
        for src, dst in moved:
            shutil.move(dst, src)
    assert len(small.missing) == HELD_BACK
    full = _prepare(data, base / "full")
    return base / "small", base / "full", small.sequences, full.sequences


def _sources(cache: Path) -> list[str]:
    return load_index(cache).meta["sequences"]["source"]


_CHILD = """
import os, sys
from pathlib import Path
from stmt.data import cache_writer, prepare as prep
step, root, models, out = sys.argv[1:5]
def hook(name):
    if name == step:
        os._exit(137)  # a kill: no finally, no cleanup
cache_writer.FAULT_HOOK = hook
prep.prepare("synthetic", Path(root) / "syn", Path(out), num_points=32, body="smplh",
             body_models=models, progress=False, template_cache=Path(root) / "templates",
             log=lambda m: None)
"""


def _kill_at(step: str, data, out: Path) -> int:
    """Run prepare in a fresh process that dies (os._exit) at ``step``; its exit status."""
    root, models = data
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, step, str(root), str(models), str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode in (0, 137), run.stderr
    return run.returncode


def _same_arrays(a: Path, b: Path) -> None:
    for x, y in zip(open_arrays(a), open_arrays(b)):
        np.testing.assert_array_equal(x, y)
    assert load_index(a).meta["samples"] == load_index(b).meta["samples"]


@pytest.mark.parametrize("step", STEPS)
def test_kill_while_growing_leaves_old_or_new_then_resumes(data, caches, tmp_path, step):
    small, full, n_small, n_full = caches
    out = tmp_path / "c"
    shutil.copytree(small, out, symlinks=True)
    assert _kill_at(step, data, out) == 137
    index = verify_cache(out)  # consistent: every file matches the index it is read with
    assert len(index.seq_offset) in (n_small, n_full)
    if step in ("shard", "arrays", "arrays-written", "template", "index", "version"):
        assert _sources(out) == _sources(small)  # not switched yet: the old cache
    else:
        assert _sources(out) == _sources(full)  # switched: the new one
    r = _prepare(data, out)  # resumes
    assert r.exit_status == 0 and r.sequences == n_full
    verify_cache(out)
    _same_arrays(out, full)
    assert not list(out.glob("v-*.tmp")) and not (out / "shards").exists()
    assert len(list(out.glob("v-[0-9]*"))) <= 2


def _legacy_copy(cache: Path, out: Path) -> None:
    """The cache as stmt wrote it before versions: plain top-level files, no checksums."""
    out.mkdir()
    for name in (*ARRAYS, "template.npz"):
        shutil.copy(cache / name, out / name)
    meta = json.loads((cache / "index.json").read_text())
    meta.pop("files")
    meta.pop("data")
    (out / "index.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("step", ["legacy-index", "link", "switch"])
def test_old_cache_is_read_and_converted_even_when_killed(data, caches, tmp_path, step):
    small, full, n_small, n_full = caches
    out = tmp_path / "old"
    _legacy_copy(small, out)
    verify_cache(out)  # readable as it is (NaN scan instead of checksums)
    assert not (out / CURRENT).exists()
    code = _kill_at(step, data, out)
    assert code == 137
    try:
        index = verify_cache(out)
        assert len(index.seq_offset) in (n_small, n_full)
    except InputError as err:  # the old index went first: incomplete, never a mix
        assert "incomplete" in str(err) and "rerun" in str(err)
    _prepare(data, out)
    verify_cache(out)
    _same_arrays(out, full)
    assert (out / "index.json").is_symlink()


def _flip_byte(path: Path, at: int) -> None:
    real = Path(os.path.realpath(path))
    raw = bytearray(real.read_bytes())
    raw[at] ^= 0xFF
    tmp = real.with_name(real.name + ".x")
    tmp.write_bytes(bytes(raw))
    os.replace(tmp, real)  # a new inode: the other version's hard link keeps the original


def _rewrite(path: Path, data: bytes) -> None:
    real = Path(os.path.realpath(path))
    real.unlink()
    real.write_bytes(data)


CORRUPTIONS = {
    "vertices truncated": lambda c: _rewrite(
        c / "vertices.npy", (c / "vertices.npy").read_bytes()[:-100]
    ),
    "vertices one byte": lambda c: _flip_byte(c / "vertices.npy", -7),
    "vertices NaN": lambda c: _nan_fill(c / "vertices.npy"),
    "vertices wrong shape": lambda c: _resave(c / "vertices.npy", lambda a: a[:-1]),
    "centres one byte": lambda c: _flip_byte(c / "centres.npy", -3),
    "centres missing": lambda c: Path(os.path.realpath(c / "centres.npy")).unlink(),
    "bounds wrong dtype": lambda c: _resave(c / "bounds.npy", lambda a: a.astype(np.float64)),
    "template truncated": lambda c: _rewrite(
        c / "template.npz", (c / "template.npz").read_bytes()[:200]
    ),
    "template one byte": lambda c: _flip_byte(c / "template.npz", 100),
    "template wrong points": lambda c: _template_points(c),
    "index not json": lambda c: _rewrite(c / "index.json", b"{not json"),
    "index missing key": lambda c: _edit_index(c, lambda m: m.pop("num_frames_total")),
    "index wrong total": lambda c: _edit_index(c, lambda m: m.update(num_frames_total=5)),
}


def _nan_fill(path: Path) -> None:
    a = np.load(path)
    a[:] = np.nan
    _resave(path, lambda _: a)


def _resave(path: Path, change) -> None:
    a = change(np.load(path))
    real = Path(os.path.realpath(path))
    real.unlink()
    np.save(real, a)


def _template_points(c: Path) -> None:
    real = Path(os.path.realpath(c / "template.npz"))
    with np.load(real) as z:
        arrays = dict(z)
    arrays["vertex_ids"] = arrays["vertex_ids"][:-1]
    real.unlink()
    np.savez(real, **arrays)


def _edit_index(c: Path, change) -> None:
    meta = json.loads((c / "index.json").read_text())
    change(meta)
    _rewrite(c / "index.json", json.dumps(meta).encode())


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_every_corruption_is_detected_and_never_trained_on(caches, data, tmp_path, kind, capsys):
    _, full, _, n_full = caches
    out = tmp_path / "c"
    shutil.copytree(full, out, symlinks=True)
    CORRUPTIONS[kind](out)
    code = cli(["prepare", "--out", str(out), "--verify"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("stmt: error: "), err
    assert "rerun" in err or "rebuild" in err
    cheap = kind not in (
        "vertices one byte",
        "vertices NaN",
        "centres one byte",
        "template one byte",
    )
    if cheap:  # the data module refuses it when it opens the cache
        from stmt.data.datamodule import STMTDataModule

        with pytest.raises(InputError):
            STMTDataModule(str(out), num_frames=8, batch_size=2, num_workers=0)
    r = _prepare(data, out)  # rerunning prepare repairs it, and says it posed again
    assert r.exit_status == 0 and r.sequences == n_full and r.posed == n_full
    verify_cache(out)
    _same_arrays(out, full)


def test_nan_cache_stops_fit_with_one_line(caches, tmp_path, capsys):
    """A cache whose vertices turned NaN after it was written (cheap checks pass):
    ``stmt fit`` stops at the first batch with one line, exit 2, no loss=nan."""
    _, full, _, _ = caches
    out = tmp_path / "c"
    shutil.copytree(full, out, symlinks=True)
    _nan_fill(out / "vertices.npy")
    load_index(out)  # shapes and sizes still match
    cfg = tmp_path / "fit.yaml"
    cfg.write_text(
        f"""
trainer: {{accelerator: cpu, devices: 1, max_steps: 2, logger: false,
  enable_checkpointing: false, enable_progress_bar: false, num_sanity_val_steps: 0,
  default_root_dir: {tmp_path}}}
model:
  class_path: stmt.engine.classifier.STMTClassifier
  init_args: {{arch: stmt_tiny, model_args: {{centers1: 8, centers2: 4, k: 4}}}}
data: {{cache: {out}, num_frames: 4, batch_size: 2, num_workers: 0}}
"""
    )
    code = cli(["fit", "--config", str(cfg)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"stmt: error: {out}: ") and "NaN or Inf vertices" in err[-1]


def test_second_prepare_on_the_same_folder_is_refused(data, caches, tmp_path, capsys):
    _, full, _, _ = caches
    out = tmp_path / "c"
    shutil.copytree(full, out, symlinks=True)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    root, models = data
    with cache_writer.cache_lock(out):
        code = cli(["prepare", "--dataset", "synthetic", "--data", str(root / "syn"), "--out",
                    str(out), "--body", "smplh", "--body-models", str(models), "--quiet",
                    "--num-points", "32"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "another `stmt prepare` is writing this cache" in err and f"pid {os.getpid()}" in err
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != ".lock"}
    assert after == {k: v for k, v in before.items() if k != ".lock"}
    verify_cache(out)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_a_shard_of_non_finite_vertices_is_never_committed(tmp_path):
    # A worker writes each file's shard with its per-frame bounds; the commit checks only
    # the bounds, so they must carry a NaN or an overflow (float16 offsets: 65,504 m) of
    # any one point, and a shard written before the bounds were stored is still checked.
    from stmt.data.jobs import SequenceJob
    from stmt.template import Template

    n = 4
    tpl = Template(np.arange(n), np.zeros((n, n), np.float32), np.zeros((n, 3), np.float32), "k")
    frames = np.random.default_rng(0).normal(size=(3, n, 3)).astype(np.float32)
    far = frames.copy()
    far[1, 2] = [1e5, 0, 0]  # 75,000 m from the frame's mean point: inf as float16
    nan = frames.copy()
    nan[2, 0, 1] = np.nan
    for name, bad, drop_bounds in [("far", far, False), ("nan", nan, False), ("old", nan, True)]:
        out = tmp_path / name
        job = SequenceJob(key=name, path=tmp_path / f"{name}.bvh", split="train", subject="s")
        with cache_writer.CacheWriter(out, tpl, 30.0, "anny") as w:
            w.add(job.key, bad)
            shard = w.shards / f"{cache_writer.shard_name(job.key)}.npz"
            if drop_bounds:
                with np.load(shard) as z:
                    np.savez(shard, offsets=z["offsets"], centres=z["centres"])
            meta = {"dataset": "x", "class_names": ["a"], "chunk_s": 10.0}
            with pytest.raises(InputError, match=f"{name}.bvh: posed to NaN or Inf vertices"):
                w.commit([job], meta)
        assert not (out / "index.json").exists()
    with cache_writer.CacheWriter(tmp_path / "good", tpl, 30.0, "anny") as w:
        w.add("good", frames)
        index = w.commit([SequenceJob("good", tmp_path / "good.bvh", "train", "s")], meta)
    assert index["num_frames_total"] == 3
    bounds = np.load(tmp_path / "good" / CURRENT / "bounds.npy")
    world = frames.astype(np.float16).astype(np.float32)  # the cache keeps float16 offsets
    np.testing.assert_allclose(bounds[:, 0], world.min(axis=1), atol=0.01)
    np.testing.assert_allclose(bounds[:, 1], world.max(axis=1), atol=0.01)
