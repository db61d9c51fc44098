"""One error path for the Lightning commands: a bad ``--ckpt_path`` or
``model.init_args.pretrained`` and NaN data give the one-line ``stmt: error:`` and
exit status 2 that ``classify`` gives, never a traceback or ``loss=nan`` with exit 0."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import pytest
import torch
from test_engine import FakeClipData, write_config

import stmt.engine.cli
from stmt.cli import main as stmt_main

COMMANDS = ["fit", "validate", "test", "predict"]


class NaNClipData(FakeClipData):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.data.vertices[3, 1, 5, 0] = float("nan")


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


@pytest.fixture
def run(monkeypatch, capsys, tmp_path):
    def go(argv: list[str], data=FakeClipData) -> tuple[int, str]:
        monkeypatch.setattr(
            stmt.engine.cli,
            "lightning_main",
            functools.partial(stmt.engine.cli.__dict__["_real_main"], datamodule_class=data),
        )
        cfg = write_config(tmp_path)
        common = ["--config", cfg, f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=2",
                  "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false"]  # fmt: skip
        code = stmt_main([argv[0], *common, *argv[1:]])
        return code, capsys.readouterr().err

    stmt.engine.cli.__dict__.setdefault("_real_main", stmt.engine.cli.lightning_main)
    return go


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.ckpt"
    torch.save(
        {"hyper_parameters": {"arch": "stmt_tiny"}, "state_dict": {"model.w": torch.zeros(2)}}, good
    )
    files = {"truncated": tmp_path / "trunc.ckpt", "garbage": tmp_path / "garbage.ckpt",
             "evil": tmp_path / "evil.ckpt", "missing": tmp_path / "nope.ckpt",
             "nan": tmp_path / "nan.ckpt", "empty": tmp_path / "empty.ckpt"}  # fmt: skip
    files["truncated"].write_bytes(good.read_bytes()[:300])
    files["garbage"].write_bytes(b"\x00garbage" * 100)
    files["empty"].write_bytes(b"")
    with files["evil"].open("wb") as f:
        pickle.dump({"hyper_parameters": _Evil(tmp_path / "MARKER")}, f)
    torch.save(
        {
            "hyper_parameters": {"arch": "stmt_tiny"},
            "state_dict": {"model.w": torch.full((2,), float("nan"))},
        },
        files["nan"],
    )
    return files


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_ckpt_path_is_one_line_exit_2(run, tmp_path, command):
    for kind, path in _bad_files(tmp_path).items():
        code, err = run([command, f"--ckpt_path={path}"])
        lines = err.strip().splitlines()
        assert code == 2, (kind, err)
        assert lines[-1].startswith(f"stmt: error: {path}: "), (kind, err)
        assert "Traceback" not in err, kind
        assert not (tmp_path / "MARKER").exists()
        assert all(not ln.startswith(("  File", "RuntimeError", "Exception")) for ln in lines), err


@pytest.mark.parametrize("kind", ["truncated", "garbage", "evil", "missing", "empty"])
def test_bad_pretrained_is_one_line_exit_2(run, tmp_path, kind):
    path = _bad_files(tmp_path)[kind]
    code, err = run(["fit", f"--model.init_args.pretrained={path}"])
    assert code == 2, err
    assert err.strip().splitlines()[-1].startswith(f"stmt: error: {path}: ")
    assert "Traceback" not in err and not (tmp_path / "MARKER").exists()


def test_ckpt_of_another_model_is_one_line(run, tmp_path):
    code, err = run(["fit", "--ckpt_path=checkpoints/stmt-tiny-synthetic.ckpt"])
    last = err.strip().splitlines()[-1]
    # the data's point count differs first: the line says what to rerun
    assert code == 2 and last.startswith("stmt: error: checkpoints/stmt-tiny-synthetic.ckpt")
    assert "N=256" in last and "--num-points 256" in last


@pytest.mark.parametrize("command", COMMANDS)
def test_nan_data_stops_with_one_line(run, command):
    code, err = run([command], data=NaNClipData)
    last = err.strip().splitlines()[-1]
    assert code == 2, err
    assert last.startswith("stmt: error: ") and "NaN or Inf vertices" in last


def test_good_run_still_exits_0(run):
    code, err = run(["fit"])
    assert code == 0, err
