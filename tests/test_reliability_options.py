"""Every number validated where it enters: command-line options of classify, view and
prepare, checkpoint hyper-parameters and weights, and the network's outputs. Each bad
value is one ``stmt: error:`` line naming the option or field, exit status 2, nothing
on stdout."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from stmt.cli import main as stmt_main

REPO = Path(__file__).resolve().parents[1]
JUMP = REPO / "datasets/samples/jump.bvh"
CLASSES = ["walk", "jump", "sit", "wave"]
ARGS = {"num_classes": 4, "num_frames": 8, "num_points": 64, "centers1": 16, "centers2": 8}


@pytest.fixture(autouse=True)
def _template_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("STMT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "stmt-cache"))
    monkeypatch.delenv("DISPLAY", raising=False)


def _write_ckpt(path: Path, nan_weights: bool = False, **hp_changes) -> Path:
    from stmt.model.stmt import build_model

    torch.manual_seed(0)
    model = build_model("stmt_tiny", **ARGS)
    hp = {"arch": "stmt_tiny", "model_args": dict(ARGS), "num_classes": 4, "num_frames": 8,
          "num_points": 64, "class_names": CLASSES, "fps": 30.0, "window_s": 1.0}  # fmt: skip
    for key, value in hp_changes.items():
        if key.startswith("model_args_"):
            hp["model_args"][key[len("model_args_") :]] = value
        else:
            hp[key] = value
    state = {f"model.{k}": v.clone() for k, v in model.state_dict().items()}
    if nan_weights:
        for v in state.values():
            if v.is_floating_point():
                v.fill_(float("nan"))
    state["geodesic"] = torch.zeros(64, 64)
    torch.save({"hyper_parameters": hp, "state_dict": state, "epoch": 0}, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return _write_ckpt(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def _mesh_npz(path: Path, seconds: float, fps: float = 30.0) -> Path:
    import trimesh

    mesh = trimesh.creation.capsule(height=1.2, radius=0.25, count=[12, 12])
    rest = np.asarray(mesh.vertices, dtype=np.float32)
    t = np.arange(round(seconds * fps), dtype=np.float32)[:, None, None] / fps
    verts = rest[None] + 0.3 * np.sin(t) * np.float32([1, 0, 0])
    np.savez(path, vertices=verts.astype(np.float32), faces=mesh.faces, fps=np.float32(fps))
    return path


def _run(argv, capsys) -> tuple[int, str, str]:
    code = stmt_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, out, err, *words):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stmt: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.parametrize(
    "options, words",
    [
        (["--window", "nan"], ["--window", "nan"]),
        (["--window", "inf"], ["--window"]),
        (["--window", "-1"], ["--window"]),
        (["--stride", "nan"], ["--stride"]),
        (["--stride", "0"], ["--stride"]),
        (["--top-k", "0"], ["--top-k"]),
        (["--batch-size", "0"], ["--batch-size"]),
        (["--device", "bogus"], ["--device"]),
        (["--device", "cuda:99"], ["--device"]),
        (["--max-frames", "0"], ["--max-frames"]),
    ],
)
def test_classify_bad_numbers(ckpt, capsys, options, words):
    code, out, err = _run(["classify", JUMP, "--ckpt", ckpt, *options], capsys)
    _one_line_error(code, out, err, *words)
    assert out == ""


def test_classify_tiny_stride_on_a_long_file_is_refused_before_cutting(ckpt, tmp_path, capsys):
    f = _mesh_npz(tmp_path / "long.npz", 60.0)
    code, out, err = _run(["classify", f, "--ckpt", ckpt, "--stride", "0.00001"], capsys)
    assert code == 2 and out == ""
    assert err.strip().startswith(f"stmt: error: {f}: ") and "use a larger --stride" in err


@pytest.mark.parametrize(
    "change, field",
    [
        ({"window_s": float("nan")}, "window_s"),
        ({"window_s": -1.0}, "window_s"),
        ({"num_frames": 0}, "num_frames"),
        ({"num_points": 10**9}, "num_points"),
        ({"fps": float("inf")}, "fps"),
        ({"model_args_width": 200_000}, "parameters"),
    ],
)
def test_checkpoint_hyper_parameters_are_checked(tmp_path, capsys, change, field):
    bad = _write_ckpt(tmp_path / "bad.ckpt", **change)
    code, out, err = _run(["classify", JUMP, "--ckpt", bad], capsys)
    _one_line_error(code, out, err, str(bad), field)


def test_nan_weights_give_no_label(tmp_path, capsys):
    bad = _write_ckpt(tmp_path / "nan.ckpt", nan_weights=True)
    code, out, err = _run(["classify", JUMP, "--ckpt", bad], capsys)
    _one_line_error(code, out, err, "NaN or Inf")
    assert "nan" not in out


def test_nan_outputs_are_an_error_not_a_label(tmp_path, capsys, monkeypatch):
    """Weights that pass the load check but still give NaN: each file gets its error
    line, and no label."""
    import stmt.checkpoint

    monkeypatch.setattr(stmt.checkpoint, "check_finite", lambda weights, path: None)
    bad = _write_ckpt(tmp_path / "nan.ckpt", nan_weights=True)
    f2 = _mesh_npz(tmp_path / "b.npz", 2.0)
    code, out, err = _run(["classify", JUMP, f2, "--ckpt", bad, "--json"], capsys)
    assert code == 2
    assert out.strip() == "[]"
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all("outputs are NaN or Inf" in ln for ln in lines)


@pytest.mark.parametrize(
    "options, words",
    [
        (["--fps", "0"], ["--fps"]),
        (["--fps", "nan"], ["--fps"]),
        (["--fps", "-5"], ["--fps"]),
        (["--at", "nan"], ["--at"]),
        (["--at", "-1"], ["--at"]),
        (["--window", "0"], ["--window"]),
        (["--stride", "nan"], ["--stride"]),
    ],
)
def test_view_bad_numbers(tmp_path, capsys, options, words):
    out_file = tmp_path / "out.gif"
    code, out, err = _run(["view", JUMP, "--render", out_file, *options], capsys)
    _one_line_error(code, out, err, *words)
    assert not out_file.exists() and list(tmp_path.iterdir()) == []


def test_view_bad_render_paths_fail_before_rendering(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = _run(["view", JUMP, "--render", blocker / "out.gif"], capsys)
    _one_line_error(code, out, err, "is a file, not a folder")
    code, out, err = _run(["view", JUMP, "--render", tmp_path / "out.jpg"], capsys)
    _one_line_error(code, out, err, "unknown render format '.jpg'")


@pytest.mark.parametrize(
    "command",
    [
        ["synth", "--out", "{out}"],
        ["synth", "--samples", "--out", "{out}"],
        ["prepare", "--dataset", "synthetic", "--data", "{data}", "--out", "{out}"],
        ["classify", str(JUMP), "--ckpt", "{ckpt}", "--out", "{out}/p.csv"],
    ],
    ids=["synth", "samples", "prepare", "classify"],
)
def test_output_that_cannot_be_written_fails_first(tmp_path, capsys, ckpt, monkeypatch, command):
    """An output location under a file, or in a folder that refuses new entries, is one line
    naming it before any work starts (no progress bar, no labels printed, nothing written)."""
    import tempfile

    blocker = tmp_path / "file"
    blocker.write_text("x")
    fill = {"out": blocker / "sub", "data": tmp_path, "ckpt": ckpt}
    code, out, err = _run([c.format(**fill) for c in command], capsys)
    _one_line_error(code, out, err, f"{blocker} is a file, not a folder")
    assert out == "" and sorted(tmp_path.iterdir()) == [blocker]

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)  # what a read-only mount says, even to root
    fill["out"] = tmp_path / "new"
    code, out, err = _run([c.format(**fill) for c in command], capsys)
    _one_line_error(code, out, err, f"cannot be written in {tmp_path}: Permission denied")
    assert out == "" and sorted(tmp_path.iterdir()) == [blocker]


def test_a_refused_system_call_is_one_line_naming_the_file(monkeypatch, capsys):
    """The last net: an OSError no check foresaw (disk full, a folder gone meanwhile)."""
    import stmt.commands.synth

    def full(args):
        raise OSError(28, "No space left on device", "/data/out/motions/S001.npz")

    monkeypatch.setattr(stmt.commands.synth, "main", full)
    code, out, err = _run(["synth", "--out", "/data/out"], capsys)
    _one_line_error(code, out, err)
    assert err.strip() == "stmt: error: /data/out/motions/S001.npz: No space left on device"


def test_view_size_too_large(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        stmt_main(["view", str(JUMP), "--render", str(tmp_path / "o.gif"), "--size", "16000x16000"])
    assert exit_.value.code == 2
    assert "--size: size too large" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options, words",
    [
        (["--chunk-s", "0"], ["--chunk-s"]),
        (["--chunk-s", "nan"], ["--chunk-s"]),
        (["--chunk-s", "-1"], ["--chunk-s"]),
        (["--fps", "1e-6"], ["--fps"]),
        (["--fps", "nan"], ["--fps"]),
        (["--num-points", "0"], ["--num-points"]),
        (["--chunk-s", "1e9"], ["--chunk-s", "--max-frames"]),
    ],
)
def test_prepare_bad_numbers(tmp_path, capsys, options, words):
    out_dir = tmp_path / "cache"
    code, out, err = _run(
        ["prepare", "--dataset", "synthetic", "--data", tmp_path, "--out", out_dir, *options],
        capsys,
    )
    _one_line_error(code, out, err, *words)
    assert not out_dir.exists()


def test_positive_number_messages():
    from stmt.errors import InputError
    from stmt.limits import positive_number

    assert positive_number("window", "2.5") == 2.5
    for bad in ("nan", "inf", "-inf", "0", "-3", "abc", math.nan):
        with pytest.raises(InputError, match="--window must be"):
            positive_number("window", bad)


def test_a_closed_pipe_ends_quietly():
    """`stmt ... | head`: the reader gone is no error to report (no 'Broken pipe' line, no
    traceback, nothing at exit); the status is a SIGPIPE death's, 141."""
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # every write the child makes fails with EPIPE
    code = (  # a command whose output the closed pipe refuses (argparse's --help swallows it)
        "import sys, stmt.commands.synth as synth\n"
        "synth.main = lambda args: print('label ' * 1000, flush=True)\n"
        "from stmt.cli import main\n"
        "sys.exit(main(['synth', '--out', 'unused']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], stdout=write_end, stderr=subprocess.PIPE, check=False
    )
    os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == b""
