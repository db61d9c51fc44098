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
    # checked before the run starts: no run folder with a config.yaml of a run that never ran
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        (
            "--trainer.strategy=foo",
            "trainer: You selected an invalid strategy name: `strategy='foo'`",
        ),
        ("--trainer.max_epochs=-5", "trainer: `max_epochs` must be a non-negative integer or -1"),
        ("--trainer.accelerator=tpu", "trainer: "),
        ("--model.init_args.arch=stmt_huge", "unknown arch 'stmt_huge'; choose from"),
        ("--model.init_args.model_args={heads: 3}", "is not divisible by 3 heads"),
        ("--model.init_args.lr=-1", "lr must be a positive number, got -1.0"),
        ("--model.init_args.weight_decay=-0.1", "weight_decay must be >= 0, got -0.1"),
        ("--model.init_args.warmup_fraction=1.5", "warmup_fraction must be in [0, 1), got 1.5"),
        ("--model.init_args.label_smoothing=1", "label_smoothing must be in [0, 1), got 1"),
    ],
)
def test_refused_setting_is_one_line_exit_2(run, tmp_path, setting, says):
    """A value the model or the trainer refuses when built (Lightning's own checks, the
    model's) is one line naming it, before anything is written; not a traceback."""
    code, err = run(["fit", setting])
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("stmt: error: ")]
    assert code == 2, err
    assert len(lines) == 1 and says in lines[0] and lines[0].endswith("(see `stmt fit --help`)")
    assert "Traceback" not in err
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []


def test_refused_setting_keeps_an_input_error_line(tmp_path):
    """The innermost cause is shown: a wrapped InputError stays the file's own line."""
    from stmt.engine.cli import SettingError, setting_error
    from stmt.errors import InputError

    try:
        try:
            raise InputError(tmp_path / "x.ckpt", "not a checkpoint")
        except InputError as inner:
            raise ValueError("Does not validate against any of the Union subtypes") from inner
    except ValueError as err:
        shown = setting_error(err, "model")
    assert (
        isinstance(shown, InputError) and str(shown) == f"{tmp_path / 'x.ckpt'}: not a checkpoint"
    )
    multi = setting_error(RuntimeError("first line\n  second   line"), "trainer")
    assert isinstance(multi, SettingError) and str(multi) == "trainer: first line second line"


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


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("--data.batch_size=0", "batch_size must be >= 1, got 0"),
        ("--data.num_workers=-2", "num_workers must be >= 0, got -2"),
    ],
)
def test_refused_data_setting_is_one_line_before_the_cache_is_read(tmp_path, capsys, setting, says):
    """The real data module checks its numbers first (Lightning's DataLoader would refuse
    them only when the run has started and written its folder)."""
    code = stmt_main(["fit", "--model=stmt.engine.classifier.STMTClassifier",
                      f"--data.cache={tmp_path / 'no-cache'}", setting,
                      f"--trainer.default_root_dir={tmp_path}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.strip().splitlines()[-1] == f"stmt: error: {says} (see `stmt fit --help`)"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("--model=nope.Module", "model: Problem with given class_path 'nope.Module': No module"),
        ("--model.init_args.nope=1", "Option 'nope' is not accepted"),
    ],
)
def test_wrong_model_class_or_key_says_why(tmp_path, capsys, setting, says):
    """jsonargparse's 'Does not validate against any of the Union subtypes' gives way to the
    reason it lists first (the class that would not import, the key it does not take)."""
    argv = ["fit", "--model=stmt.engine.classifier.STMTClassifier", setting]
    code = stmt_main([*argv, f"--data.cache={tmp_path}", f"--trainer.default_root_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Union subtypes" not in lines[0], err


@pytest.mark.parametrize("command", ["validate", "test", "predict"])
def test_best_or_missing_last_checkpoint_is_one_line_not_an_untrained_model(run, tmp_path, command):
    """Outside fit, 'best' is unknown (Lightning: a traceback) and a missing 'last' made
    Lightning warn and evaluate the untrained model with exit 0; both are one line now.
    A 'last' that exists is used."""
    folder = tmp_path / "ckpt"
    saving = ["--trainer.callbacks=ModelCheckpoint", f"--trainer.callbacks.dirpath={folder}",
              "--trainer.callbacks.save_last=true"]  # fmt: skip
    code, err = run([command, "--ckpt_path=best", *saving])
    assert code == 2 and err.strip().splitlines()[-1].startswith("stmt: error: --ckpt_path best")
    code, err = run([command, "--ckpt_path=last", *saving])
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith(
        f"stmt: error: --ckpt_path last: no last checkpoint in {folder}"
    )
    assert "Traceback" not in err
    code, err = run(["fit", *saving])
    assert code == 0 and (folder / "last.ckpt").exists(), err
    code, err = run([command, "--ckpt_path=last", *saving])
    assert code == 0, err
