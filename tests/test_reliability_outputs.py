"""Outputs never destroy what is not stmt's (:mod:`stmt.fileio`), whatever is already there.

The rule, tested on random situations (hypothesis) and then through each command:
a file is replaced only by a complete new one (through a symbolic link, keeping its
mode); a device or FIFO is written into; a write error names the file; an output
folder that holds anything stmt did not write is refused with one line unless
``--overwrite``, and even then nothing but stmt's own names is written or removed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stmt.cli import main as stmt_main
from stmt.errors import InputError
from stmt.fileio import (
    MARKER,
    TEMP_PREFIX,
    atomic_text,
    atomic_write,
    check_folder,
    claim_folder,
    new_folder,
)
from tests.helpers.hostile import HOSTILE

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "datasets/samples"
CKPT = REPO / "checkpoints/stmt-realmix.ckpt"


def run(argv: list, capsys) -> tuple[int, str, str]:
    code = stmt_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *expected: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("stmt: error: "), err
    for text in expected:
        assert text in lines[0], err


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under ``root`` (links not followed): its kind, bytes, mode, link target."""
    out: dict[str, object] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st_ = os.lstat(p)
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st_.st_mode))
            else:
                out[rel] = ("file", p.read_bytes(), stat.S_IMODE(st_.st_mode))
    return out


# --------------------------------------------------------------------------- one file
def test_a_symbolic_link_is_written_through_and_keeps_its_target_mode(tmp_path):
    target = tmp_path / "real" / "results.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    target.chmod(0o600)
    link = tmp_path / "results.csv"
    link.symlink_to(target)
    atomic_text(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["results.csv"]  # no temp left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(path, "w") as f:
        f.write("half")
        raise KeyboardInterrupt
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_a_full_disk_names_the_file(tmp_path):
    link = tmp_path / "out.csv"
    link.symlink_to("/dev/full")
    with pytest.raises(InputError, match="No space left on device") as err:
        atomic_text(link, "x" * 100_000)
    assert err.value.path == link and link.is_symlink()  # the device node is never replaced
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_fifo_is_written_into_and_one_nobody_reads_is_one_line(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="nobody reads"):
        atomic_text(fifo, "x")
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    for _ in range(200):  # wait for the reader to open its end
        try:
            atomic_text(fifo, "through the pipe\n")
            break
        except InputError:
            threading.Event().wait(0.01)
    reader.join(5)
    assert got == ["through the pipe\n"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_full_tmpfs_names_the_file_and_keeps_the_old_one(tmp_path):
    """A real full disk where root may mount a small tmpfs (skipped elsewhere)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
            check=False,
            capture_output=True,
        ).returncode
    ):
        pytest.skip("cannot mount a tmpfs here")
    try:
        path = mnt / "preds.json"
        path.write_text("old results")
        with pytest.raises(InputError, match="No space left on device") as err:
            atomic_text(path, "x" * 200_000)
        assert err.value.path == path and path.read_text() == "old results"
        assert [p.name for p in mnt.iterdir()] == ["preds.json"]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# --------------------------------------------------------------------------- folders
entry_names = st.sampled_from(
    ["train.json", "labels.json", "motions", "notes.txt", "index.json", "shards", "v-000001",
     "current", "frame_00000.png", "photo.jpg", ".hidden", "sub"]
)  # fmt: skip
entries = st.dictionaries(entry_names, st.sampled_from(["file", "dir", "link"]), max_size=5)


def build(root: Path, layout: dict[str, str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, kind in layout.items():
        p = root / name
        if kind == "file":
            p.write_bytes(f"user's {name}".encode())
        elif kind == "dir":
            p.mkdir()
            (p / "keep.txt").write_text("user's")
        else:
            p.symlink_to(root / "elsewhere")


OUR_NAMES = ("train.json", "labels.json", "motions", "index.json", "shards", "v-000001")


@HOSTILE
@given(layout=entries, overwrite=st.booleans(), mine=st.sets(st.sampled_from(OUR_NAMES)))
def test_folder_rule_on_random_contents(tmp_path_factory, layout, overwrite, mine):
    """Whatever a folder holds: it is refused with one line when it holds names stmt did
    not write (unless overwrite); writing then removing every name stmt writes leaves
    every other entry exactly as it was."""
    root = tmp_path_factory.mktemp("out") / "dir"
    build(root, layout)
    before = snapshot(root)
    foreign = set(layout)
    try:
        folder = claim_folder(root, "test", overwrite)
    except InputError as err:
        assert foreign and not overwrite and "\n" not in str(err)
        assert snapshot(root) == before
        return
    assert overwrite or not foreign
    for name in sorted(mine):
        if name in layout:
            continue  # with --overwrite a name of the user's stays the user's
        folder.own(name)
        atomic_text(root / name, "stmt's")
    for name in sorted(mine):
        folder.remove(name)
    after = snapshot(root)
    after.pop(MARKER)
    assert after == before  # the user's entries, bytes and modes, all there


def test_a_marked_folder_is_reused_and_a_new_one_appears_whole(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(RuntimeError), new_folder(out, "test") as folder:
        atomic_text(folder.path / "a.txt", "1")
        raise RuntimeError("killed half-way")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []
    with new_folder(out, "test") as folder:
        folder.own("a.txt")
        atomic_text(folder.path / "a.txt", "1")
    assert json.loads((out / MARKER).read_text())["entries"] == ["a.txt"]
    assert check_folder(out, "test") == {"a.txt"}  # ours: no --overwrite needed
    (out / "user.txt").write_text("mine")
    with pytest.raises(InputError, match=r"holds files stmt did not write \(user.txt\)"):
        check_folder(out, "test")


def test_leftover_temporaries_are_not_someone_elses(tmp_path):
    out = tmp_path / "o"
    claim_folder(out, "test")
    (out / f"{TEMP_PREFIX}a.json.x1y2.tmp").write_text("a killed run's")
    assert check_folder(out, "test") == set()


# --------------------------------------------------------------------------- commands
def test_synth_refuses_a_folder_of_user_files_and_overwrite_keeps_them(tmp_path, capsys):
    out = tmp_path / "data"
    build(out, {"train.json": "file", "sub": "dir", "notes.txt": "file"})
    before = snapshot(out)
    argv = ["synth", "--out", out, "--per-class", "1", "--subjects", "3", "--classes", "walk",
            "--quiet"]  # fmt: skip
    code, out_, err = run(argv, capsys)
    one_line_error(code, err, "holds files stmt did not write", "--overwrite")
    assert out_ == "" and snapshot(out) == before
    code, _, err = run([*argv, "--overwrite"], capsys)
    assert code == 0, err
    after = snapshot(out)
    for name in ("sub", "sub/keep.txt", "notes.txt"):
        assert after[name] == before[name]
    assert json.loads((out / "labels.json").read_text()) == ["walk"]
    code, _, err = run(argv, capsys)  # the user's files are still there: refused again
    one_line_error(code, err, "holds files stmt did not write (notes.txt, sub)")
    code, _, err = run([*argv[:2], out / "own", *argv[3:]], capsys)
    assert code == 0, err
    code, _, err = run([*argv[:2], out / "own", *argv[3:]], capsys)  # stmt's own: rewritten
    assert code == 0, err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["synth", "--per-class", "1000000000"], "--per-class must be a whole number 1 to"),
        (["synth", "--seed", "-1"], "--seed must be a whole number 0 to"),
        (["synth", "--subjects", "2"], "--subjects must be a whole number 3 to"),
        (["synth", "--classes", "walk,walk"], "--classes names walk more than once"),
        (["synth", "--classes", "walk,fly"], "unknown class 'fly'"),
        (["synth", "--samples", "--seed", "-1"], "--seed must be a whole number 0 to"),
    ],
    ids=["per-class", "seed", "subjects", "duplicate", "unknown", "samples-seed"],
)
def test_synth_options_are_checked_before_anything(tmp_path, capsys, argv, says):
    code, out, err = run([*argv, "--out", tmp_path / "s", "--quiet"], capsys)
    one_line_error(code, err, says)
    assert out == "" and not (tmp_path / "s").exists()


def test_prepare_refuses_a_foreign_folder_before_any_work(tmp_path, capsys):
    out = tmp_path / "cache"
    build(out, {"shards": "dir", "v-000001": "dir", "index.json": "file", "mine.txt": "file"})
    before = snapshot(out)
    code, _, err = run(["prepare", "--dataset", "synthetic", "--data", tmp_path, "--out", out,
                           "--quiet"], capsys)  # fmt: skip
    one_line_error(code, err, "holds files stmt did not write")
    assert snapshot(out) == before


def test_view_render_folder_of_user_files_is_refused(tmp_path, capsys):
    out = tmp_path / "frames"
    build(out, {"frame_00000.png": "file", "photo.jpg": "file"})
    before = snapshot(out)
    code, _, err = run(["view", SAMPLES / "jump.bvh", "--render", out], capsys)
    one_line_error(code, err, "holds files stmt did not write (frame_00000.png, photo.jpg)")
    assert snapshot(out) == before


@pytest.fixture(scope="module")
def odd_named(tmp_path_factory) -> Path:
    """walk.npz under a name that is not UTF-8 (one byte 0xff), as bytes the OS allows."""
    folder = tmp_path_factory.mktemp("names")
    name = os.fsdecode(b"walk-\xff.npz")
    (folder / name).write_bytes((SAMPLES / "walk.npz").read_bytes())
    return folder / name


def _classify(argv: list, capsys) -> tuple[int, bytes, str]:
    """stmt classify with stdout as bytes (as a terminal or a pipe gets them)."""
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
    with contextlib.redirect_stdout(stdout):
        code = stmt_main([str(a) if not isinstance(a, str) else a for a in argv])
    stdout.flush()
    return code, raw.getvalue(), capsys.readouterr().err


def test_classify_prints_and_writes_any_file_name(odd_named, tmp_path, capsys):
    csv_out, json_out = tmp_path / "p.csv", tmp_path / "p.json"
    code, out, err = _classify(["classify", os.fsdecode(odd_named), "--ckpt", str(CKPT),
                                "--top-k", "1", "--out", str(csv_out)], capsys)  # fmt: skip
    assert code == 0, err
    assert os.fsencode(odd_named) in out  # printed as the bytes the OS gave
    assert os.fsencode(odd_named) in csv_out.read_bytes()
    code, _, err = _classify(["classify", os.fsdecode(odd_named), "--ckpt", str(CKPT), "--top-k",
                              "1", "--out", str(json_out), "--json"], capsys)  # fmt: skip
    assert code == 0, err
    doc = json.loads(json_out.read_text())
    assert os.fsencode(doc["files"][0]["file"]) == os.fsencode(odd_named)  # surrogate escape


def test_classify_keeps_old_results_when_nothing_was_labelled(tmp_path, capsys):
    out = tmp_path / "old.csv"
    out.write_text("file,label\nwalk.npz,walk\n")
    out.chmod(0o640)
    bad = tmp_path / "bad.bvh"
    bad.write_text("not a bvh")
    empty = tmp_path / "empty"
    empty.mkdir()
    for inputs in ([bad], [empty, "--recursive"]):
        code, _, err = run(["classify", *inputs, "--ckpt", CKPT, "--out", out], capsys)
        assert code == 2 and "not written, no file was labelled" in err, err
        assert out.read_text() == "file,label\nwalk.npz,walk\n"
    link = tmp_path / "link.csv"
    link.symlink_to(out)
    code, _, err = run(["classify", SAMPLES / "jump.bvh", "--ckpt", CKPT, "--top-k", "1",
                        "--out", link], capsys)  # fmt: skip
    assert code == 0, err
    assert link.is_symlink() and out.read_text().splitlines()[1].startswith(str(SAMPLES))
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_classify_out_on_a_full_disk_is_one_line(tmp_path, capsys):
    link = tmp_path / "p.json"
    link.symlink_to("/dev/full")
    code, _, err = run(["classify", SAMPLES / "jump.bvh", "--ckpt", CKPT, "--out", link], capsys)
    one_line_error(code, err, f"{link}: cannot be written (No space left on device)")
    assert link.is_symlink()


def test_samples_written_as_before(tmp_path):
    """``synth --samples`` into a new folder: the four files and the marker, nothing else."""
    from stmt.data.samples import write_samples

    write_samples(tmp_path / "s")
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == sorted([MARKER, "README.md", "jump.bvh", "walk.npz", "wave_mesh.npz"])
    with np.load(tmp_path / "s" / "walk.npz") as z:
        assert z["poses"].shape[1] == 156


def test_odd_targets_long_names_read_only_files_and_links(tmp_path):
    long = tmp_path / ("n" * 250 + ".csv")  # a legal name; its temporary sibling must be too
    atomic_text(long, "x")
    assert long.read_text() == "x" and len(list(tmp_path.iterdir())) == 1
    frozen = tmp_path / "frozen.json"
    frozen.write_text("keep")
    frozen.chmod(0o444)
    with pytest.raises(InputError, match="is read-only; not replaced"):
        atomic_text(frozen, "new")
    assert frozen.read_text() == "keep"
    # a folder output through a link to a folder not made yet: the link stays, the folder appears
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "real")
    with new_folder(link, "test") as folder:
        folder.own("a.txt")
        atomic_text(folder.path / "a.txt", "1")
    assert link.is_symlink() and (tmp_path / "real" / "a.txt").read_text() == "1"
    # stmt's marker is never written through a link someone put in its place
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "real" / MARKER).unlink()
    (tmp_path / "real" / MARKER).symlink_to(victim)
    claim_folder(tmp_path / "real", "test", overwrite=True)
    assert victim.read_text() == "precious" and not (tmp_path / "real" / MARKER).is_symlink()


def test_an_error_line_stays_one_line_whatever_the_name(tmp_path, capsys):
    bad = tmp_path / "two\nlines\x1b[31m.bvh"
    bad.write_text("HIERARCHY\n")
    code, _, err = run(["inspect", bad], capsys)
    one_line_error(code, err, "two\\nlines\\x1b[31m.bvh")


def test_fit_refuses_a_checkpoint_folder_of_user_files(tmp_path, capsys, monkeypatch):
    import functools

    from test_engine import FakeClipData, write_config

    import stmt.engine.cli
    from stmt.engine.cli import is_stmt_checkpoint

    real = stmt.engine.cli.lightning_main
    monkeypatch.setattr(
        stmt.engine.cli, "lightning_main", functools.partial(real, datamodule_class=FakeClipData)
    )
    ckpts = tmp_path / "ckpt"
    build(ckpts, {"last.ckpt": "file", "notes.txt": "file"})
    before = snapshot(ckpts)
    argv = ["fit", "--config", write_config(tmp_path), f"--trainer.default_root_dir={tmp_path}",
            "--trainer.max_steps=1", "--trainer.limit_val_batches=1",
            "--trainer.callbacks=ModelCheckpoint", "--trainer.callbacks.save_last=true",
            f"--trainer.callbacks.dirpath={ckpts}"]  # fmt: skip
    code, _, err = run(argv, capsys)
    one_line_error(code, err, f"{ckpts}: holds files stmt did not write (last.ckpt, notes.txt)")
    assert snapshot(ckpts) == before
    code, _, err = run([*argv, "--overwrite"], capsys)  # the user asked for it
    assert code == 0, err
    after = snapshot(ckpts)
    assert all(after[name] == before[name] for name in before)  # Lightning saves last-v1.ckpt
    written = [n for n in after if n.endswith(".ckpt") and n not in before]
    assert written and all(is_stmt_checkpoint(ckpts / n) for n in written)


def test_a_killed_synth_leaves_no_half_dataset_under_its_name(tmp_path):
    """SIGKILL half-way: nothing under --out (only a hidden temporary sibling), and the
    same command then writes the whole dataset."""
    import signal
    import sys
    import time

    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "stmt", "synth", "--out", str(out), "--per-class", "400",
           "--subjects", "3", "--classes", "walk", "--quiet"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(f"{TEMP_PREFIX}data.*.tmp/motions/*/*.npz")):
            assert proc.poll() is None and time.monotonic() < deadline, "finished too soon"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert not out.exists()
    assert [p.name.startswith(TEMP_PREFIX) for p in tmp_path.iterdir()] == [True]
    cmd[cmd.index("400")] = "2"
    assert subprocess.run(cmd, env=env, check=False, capture_output=True).returncode == 0
    assert json.loads((out / "labels.json").read_text()) == ["walk"]
