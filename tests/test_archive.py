"""Archives (issue 28): ``--workers`` and ``--shard K/N`` for ``stmt prepare`` and
``stmt classify``, ``stmt prepare --merge``, and a worker that dies.

The results must not depend on how the work was split: the same cache (every file's
sha256, ``--verify``) and the same predictions (files, labels, flags; probabilities to
1e-4) with 0 or 2 workers, and from 3 shards merged (a cache) or joined with ``cat``
(CSV, JSON lines). A worker killed with
SIGKILL (as the kernel's out-of-memory killer does) fails only its file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stmt import archive, reading
from stmt.archive import Failed, WorkerCrashed, Workers, parse_shard, shard_range
from stmt.cli import main as stmt
from stmt.data import prepare as prepare_module
from stmt.data.synth import generate
from stmt.errors import InputError
from stmt.inference import Classifier
from stmt.template import Template
from tests.helpers.smpl_model import write_smplh_model

CACHE_FILES = ("vertices.npy", "centres.npy", "bounds.npy", "template.npz", "index.json")
CLASSES = ["walk", "sit", "jump", "wave"]
ARGS = {"num_classes": 4, "num_frames": 8, "num_points": 48, "centers1": 16, "centers2": 8}


@pytest.fixture(autouse=True)
def _template_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("STMT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "stmt-cache"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path, list[Path]]:
    """(synthetic dataset, SMPL-H model folder, its motion files), one file corrupt."""
    root = tmp_path_factory.mktemp("archive")
    generate(root / "syn", per_class=3, seed=2, subjects=4, classes=CLASSES, progress=False)
    models = write_smplh_model(root / "models", genders=("male", "female", "neutral"))
    files = sorted((root / "syn" / "motions").rglob("*.npz"))
    files[4].write_bytes(b"not an npz")  # a file that fails, among the others
    return root / "syn", models, files


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """An untrained stmt_tiny checkpoint (weights do not matter: the same ones everywhere)."""
    from stmt.model.stmt import build_model

    torch.manual_seed(0)
    model = build_model("stmt_tiny", **ARGS)
    hp = {"arch": "stmt_tiny", "model_args": ARGS, "num_classes": 4, "num_frames": 8,
          "num_points": 48, "class_names": CLASSES, "fps": 30.0, "window_s": 1.0}  # fmt: skip
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"hyper_parameters": hp, "state_dict": state, "epoch": 0}, path)
    return path


def digests(cache: Path) -> dict[str, str]:
    return {n: hashlib.sha256((cache / n).read_bytes()).hexdigest() for n in CACHE_FILES}


def prepare(data, out: Path, *extra: str) -> int:
    syn, models, _ = data
    return stmt(["prepare", "--dataset", "synthetic", "--data", str(syn), "--out", str(out),
                 "--num-points", "48", "--body", "smplh", "--body-models", str(models),
                 "--quiet", *extra])  # fmt: skip


def classify(data, ckpt, *extra: str, files=None) -> int:
    _, models, all_files = data
    return stmt(["classify", *map(str, files or all_files), "--ckpt", str(ckpt), "--body",
                 "smplh", "--body-models", str(models), "--top-k", "3", *extra])  # fmt: skip


_DECIMAL = re.compile(r"-?\d+\.\d+(?:[eE][-+]?\d+)?")


def same_but_rounding(text: str, want: str, tol: float = 1e-4) -> bool:
    """``text`` is ``want`` but that its decimal numbers (the probabilities) may differ by
    ``tol``: the files, their order, labels, flags and window counts are the same. On
    the development machines the outputs were byte for byte the same in every split, but
    CPU kernels do not promise bitwise results across processes: on one CI machine two
    files' probabilities differed by 2e-6 to 1.1e-5 between --workers 0 and 2."""
    if _DECIMAL.split(text) != _DECIMAL.split(want):
        return False
    got, expected = _DECIMAL.findall(text), _DECIMAL.findall(want)
    return len(got) == len(expected) and all(
        abs(float(a) - float(b)) <= tol for a, b in zip(got, expected)
    )


def test_same_but_rounding_tells_labels_and_numbers_apart():
    row = "a.npz,walk,0.301942,false,jump,0.271677,3.1667,6"
    assert same_but_rounding(row.replace("0.271677", "0.271667"), row)  # seen on CI
    assert not same_but_rounding(row.replace("0.301942", "0.302942"), row)
    assert not same_but_rounding(row.replace("walk", "jump"), row)
    assert not same_but_rounding(row.replace(",6", ",7"), row)
    assert not same_but_rounding(row + "\n" + row, row)


# --------------------------------------------------------------------------- prepare
def test_prepare_is_the_same_with_workers_and_from_merged_shards(data, tmp_path, capsys):
    assert prepare(data, tmp_path / "w0", "--workers", "0") == 1  # the corrupt file: 1
    err0 = capsys.readouterr().err
    assert prepare(data, tmp_path / "w2", "--workers", "2") == 1
    assert capsys.readouterr().err == err0  # the same lines, in the same order
    for k in (3, 1, 2):  # any order
        assert prepare(data, tmp_path / f"s{k}", "--workers", "2", "--shard", f"{k}/3") in (0, 1)
    capsys.readouterr()
    shards = [str(tmp_path / f"s{k}") for k in (2, 3, 1)]
    assert stmt(["prepare", "--merge", *shards, "--out", str(tmp_path / "merged")]) == 0
    assert "from 3 shard caches" in capsys.readouterr().out
    want = digests(tmp_path / "w0")
    assert digests(tmp_path / "w2") == want
    assert digests(tmp_path / "merged") == want  # index.json too: failed files, windows
    for cache in ("w0", "w2", "merged", "s1"):
        assert stmt(["prepare", "--out", str(tmp_path / cache), "--verify"]) == 0
    index = json.loads((tmp_path / "merged" / "index.json").read_text())
    assert len(index["failed"]) == 1 and "shard" not in index
    sizes = [len(json.loads((tmp_path / f"s{k}/index.json").read_text())["failed"])
             + len(json.loads((tmp_path / f"s{k}/index.json").read_text())["sequences"]["source"])
             for k in (1, 2, 3)]  # fmt: skip
    assert sum(sizes) == 12 and max(sizes) - min(sizes) <= 1


def test_merge_refuses_shards_that_do_not_make_one_run(data, tmp_path, capsys):
    for k in (1, 2):
        prepare(data, tmp_path / f"s{k}", "--workers", "0", "--shard", f"{k}/3")
    prepare(data, tmp_path / "whole", "--workers", "0")
    capsys.readouterr()

    def merge(*names: str, out: str = "m") -> str:
        code = stmt(["prepare", "--merge", *(str(tmp_path / n) for n in names),
                     "--out", str(tmp_path / out)])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("stmt: error: ") and err.count("\n") == 1, err
        assert not (tmp_path / out).exists() or out == "s1"
        return err

    assert "shard(s) 3 of 3 are missing" in merge("s1", "s2")
    assert "a shard given twice" in merge("s1", "s1", "s2")
    assert "is not a shard cache" in merge("s1", "whole")
    assert "is the --out of the merge" in merge("s1", "s2", out="s1")
    assert prepare(data, tmp_path / "other", "--workers", "0", "--shard", "3/3", "--fps", "25") < 2
    assert "has another fps" in merge("s1", "s2", "other")
    (tmp_path / "s2" / "vertices.npy").write_bytes(b"damaged")
    assert "s2" in merge("s1", "s2")


def test_merge_takes_a_shard_whose_template_differs_by_rounding(data, tmp_path, capsys):
    """Shards prepared on different CPUs: anny's faces (the template key's input) and the
    geodesics' last bits differ by machine (stmt.data.merge). Such a shard is merged; one
    whose geodesics or vertices really differ is refused."""
    for k in (1, 2, 3):
        assert prepare(data, tmp_path / f"s{k}", "--workers", "0", "--shard", f"{k}/3") < 2
    assert prepare(data, tmp_path / "whole", "--workers", "0") < 2
    capsys.readouterr()
    shard = (tmp_path / "s2").resolve()
    template = Template.load(shard / "template.npz")

    def restamp(geodesic: np.ndarray, vertex_ids: np.ndarray, key: str) -> None:
        """s2 as another machine would have written it: another key, other geodesics."""
        other = Template(vertex_ids, geodesic.astype(np.float32), template.rest, key)
        other.save(shard / "template.npz")
        index_path = (shard / "index.json").resolve()
        index = json.loads(index_path.read_text())
        index["template_key"] = key
        index["files"]["template.npz"] = {
            "bytes": (shard / "template.npz").stat().st_size,
            "sha256": hashlib.sha256((shard / "template.npz").read_bytes()).hexdigest(),
        }
        index_path.write_text(json.dumps(index))

    def merge(out: str) -> tuple[int, str]:
        code = stmt(["prepare", "--merge", *(str(tmp_path / f"s{k}") for k in (1, 2, 3)),
                     "--out", str(tmp_path / out)])  # fmt: skip
        return code, capsys.readouterr().err

    rounding = template.geodesic + np.float32(1.2e-7) * (template.geodesic > 0)
    restamp(rounding, template.vertex_ids, "0123456789abcdef")
    assert merge("merged") == (0, "")
    assert (
        np.load(tmp_path / "merged/vertices.npy") == np.load(tmp_path / "whole/vertices.npy")
    ).all()
    restamp(template.geodesic * np.float32(1.01), template.vertex_ids, "0123456789abcdef")
    code, err = merge("m2")
    assert code == 2 and "has another template" in err and "geodesics up to" in err, err
    restamp(template.geodesic, template.vertex_ids[::-1].copy(), template.key)
    code, err = merge("m3")
    assert code == 2 and "has another template" in err and "(other vertices)" in err, err
    assert not (tmp_path / "m2").exists() and not (tmp_path / "m3").exists()


def test_merge_into_a_folder_of_other_files_needs_overwrite(data, tmp_path, capsys):
    for k in (1, 2):
        prepare(data, tmp_path / f"s{k}", "--workers", "0", "--shard", f"{k}/2")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    shards = [str(tmp_path / "s1"), str(tmp_path / "s2")]
    capsys.readouterr()
    assert stmt(["prepare", "--merge", *shards, "--out", str(out)]) == 2
    assert "holds files stmt did not write" in capsys.readouterr().err
    assert stmt(["prepare", "--merge", *shards, "--out", str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "keep me"
    assert stmt(["prepare", "--out", str(out), "--verify"]) == 0


def _dies_on(name: str):
    """A stand-in for a reading step that kills its worker process (SIGKILL, as the
    out-of-memory killer does) on the file ``name``; in the test's own process it reads."""
    parent, read = os.getpid(), reading.read_sequence

    def read_or_die(path, *args, **kwargs):
        if Path(path).name == name and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return read(path, *args, **kwargs)

    return read_or_die


def test_a_killed_prepare_worker_fails_its_file_and_the_rest_complete(
    data, tmp_path, capsys, monkeypatch
):
    victim = data[2][7]
    monkeypatch.setattr(reading, "read_sequence", _dies_on(victim.name))
    assert prepare(data, tmp_path / "c", "--workers", "2") == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if victim.name in line]  # at once, and listed
    assert lines[0].startswith(f"stmt prepare: skipped {victim}: ") and len(lines) == 2, err
    assert "SIGKILL" in lines[0] and "died" in lines[0] and lines[1].strip().startswith(str(victim))
    assert stmt(["prepare", "--out", str(tmp_path / "c"), "--verify"]) == 0
    index = json.loads((tmp_path / "c" / "index.json").read_text())
    assert len(index["sequences"]["source"]) == 10  # 12, less the corrupt and the killed
    capsys.readouterr()
    monkeypatch.undo()
    assert prepare(data, tmp_path / "c", "--workers", "2", "--json") == 1  # only the corrupt
    summary = json.loads(capsys.readouterr().out)
    assert summary["posed_now"] == 1 and summary["sequences"] == 11  # the killed one, now
    prepare(data, tmp_path / "w0", "--workers", "0")
    assert digests(tmp_path / "c")["vertices.npy"] == digests(tmp_path / "w0")["vertices.npy"]


def test_a_cache_that_cannot_be_written_stops_the_run_with_one_line(
    data, tmp_path, capsys, monkeypatch
):
    def full_disk(shards, key, frames):
        raise InputError(shards / "x.npz", "cannot be written (No space left on device)")

    monkeypatch.setattr(prepare_module, "write_shard", full_disk)  # in the workers too
    assert prepare(data, tmp_path / "c", "--workers", "2") == 2
    err = capsys.readouterr().err
    assert err.count("No space left on device") == 1 and err.startswith("stmt: error: "), err
    assert not (tmp_path / "c" / "index.json").exists()


# --------------------------------------------------------------------------- classify
def test_classify_is_the_same_with_workers_and_from_joined_shards(data, ckpt, tmp_path, capsys):
    outputs = {}
    for workers in ("0", "2"):
        for suffix in (".csv", ".jsonl"):
            out = tmp_path / f"w{workers}{suffix}"
            assert classify(data, ckpt, "--workers", workers, "--out", str(out)) == 2
            outputs[workers, suffix] = out.read_text(), capsys.readouterr()
    for suffix in (".csv", ".jsonl"):
        (text0, cap0), (text2, cap2) = outputs["0", suffix], outputs["2", suffix]
        assert same_but_rounding(text2, text0) and cap2.err == cap0.err
        out2, out0 = cap2.out.replace(f"w2{suffix}", ""), cap0.out.replace(f"w0{suffix}", "")
        assert same_but_rounding(out2, out0)
        assert cap0.err.count("stmt: error: ") == 1  # the corrupt file
        joined = ""
        for k in (1, 2, 3):
            part = tmp_path / f"part{k}{suffix}"
            classify(data, ckpt, "--workers", "2", "--shard", f"{k}/3", "--out", str(part))
            joined += part.read_text()  # cat part1 part2 part3
        assert same_but_rounding(joined, text0)
    lines = outputs["0", ".csv"][0].splitlines()
    assert len(lines) == 1 + 11 and lines[0].startswith("file,label,prob")
    records = [json.loads(line) for line in outputs["0", ".jsonl"][0].splitlines()]
    assert len(records) == 11 and all(r["overall"][0]["prob"] > 0 for r in records)


def test_a_killed_classify_worker_fails_its_file_and_the_rest_complete(
    data, ckpt, tmp_path, capsys, monkeypatch
):
    victim = data[2][2]
    parent, read = os.getpid(), Classifier.read

    def read_or_die(self, path, **kwargs):
        if Path(path).name == victim.name and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return read(self, path, **kwargs)

    monkeypatch.setattr(Classifier, "read", read_or_die)
    assert classify(data, ckpt, "--workers", "2", "--out", str(tmp_path / "p.jsonl")) == 2
    err = capsys.readouterr().err
    died = [line for line in err.splitlines() if victim.name in line]
    assert len(died) == 1 and died[0].startswith("stmt: error: ") and "SIGKILL" in died[0]
    files = [json.loads(line)["file"] for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(files) == 10 and str(victim) not in files  # 12 less the corrupt and the killed


def test_a_shard_without_files_writes_an_empty_part(data, ckpt, tmp_path, capsys):
    one = data[2][:1]
    for k in (1, 2):
        out = tmp_path / f"p{k}.csv"
        assert classify(data, ckpt, "--shard", f"{k}/2", "--out", str(out), files=one) == 0
    header = (tmp_path / "p1.csv").read_text()  # shard 1 of 2 of one file: no file
    assert header.startswith("file,label,prob,") and header.count("\n") == 1
    row = (tmp_path / "p2.csv").read_text()  # its file, no header
    assert row.startswith(str(one[0])) and row.count("\n") == 1


# --------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "option", [["--shard", "0/3"], ["--shard", "4/3"], ["--shard", "a/b"], ["--workers", "-1"]]
)
@pytest.mark.parametrize("command", ["prepare", "classify"])
def test_bad_options_are_one_line(data, ckpt, tmp_path, capsys, command, option):
    if command == "prepare":
        code = prepare(data, tmp_path / "c", *option)
    else:
        code = classify(data, ckpt, *option)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and option[0] in err, err
    assert not (tmp_path / "c").exists()


def test_merge_takes_only_shards_and_out(data, tmp_path, capsys):
    code = stmt(["prepare", "--merge", str(tmp_path), "--out", str(tmp_path / "m"),
                 "--dataset", "synthetic"])  # fmt: skip
    assert code == 2 and "--merge takes only the shard caches" in capsys.readouterr().err


# --------------------------------------------------------------------------- the machinery
def test_shards_are_consecutive_near_equal_parts_of_the_whole():
    for count in range(40):
        for n in range(1, 12):
            parts = [shard_range(count, (k, n)) for k in range(1, n + 1)]
            assert [i for p in parts for i in p] == list(range(count))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert parse_shard(" 3 / 16 ") == (3, 16) and parse_shard(None) is None
    with pytest.raises(InputError):
        parse_shard("3/2")


def _square_slowly(x: int):
    time.sleep(0.02 * (x % 3))  # results come back out of order
    if x == 4:
        return Failed("4 is bad")
    if x == 6:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_workers_give_results_in_order_and_a_death_fails_one_item(workers):
    items = [i for i in range(12) if workers or i != 6]  # in-process, 6 would kill pytest
    with Workers(_square_slowly, workers) as pool:
        got = list(pool.map(items))
    for item, result in zip(items, got):
        if item == 4:
            assert result == Failed("4 is bad")
        elif item == 6:
            assert isinstance(result, Failed) and result.kind == "died"
            assert "SIGKILL" in result.message
        else:
            assert result == item * item


def _when_done(x: int) -> float:
    time.sleep(0.02)
    return time.monotonic()


def test_workers_go_on_while_the_command_uses_a_result():
    # the command takes the first result, then is busy (runs the model) for 1 s: the
    # workers keep going meanwhile, up to AHEAD files each beyond the one it waits for
    with Workers(_when_done, 2) as pool:
        results = pool.map(list(range(40)))
        next(results)
        busy_until = time.monotonic() + 1.0
        time.sleep(1.0)
        rest = list(results)
    during = sum(t < busy_until for t in rest)
    assert during >= archive.AHEAD * 2 - 2, f"only {during} files were done while it was busy"
    assert during <= archive.AHEAD * 2 + 2, "more files were handed out than the bound"


def _bug(x: int):
    raise ValueError(f"bug on {x}")


def test_an_exception_a_task_lets_through_stops_the_run():
    with Workers(_bug, 2) as pool, pytest.raises(WorkerCrashed, match="bug on 0"):
        list(pool.map([0, 1]))


def test_workers_by_default_are_the_cores_capped_by_memory(monkeypatch):
    monkeypatch.setattr(archive, "usable_cores", lambda: 16)
    monkeypatch.setattr(archive, "available_memory", lambda: 5 * archive.WORKER_MEMORY + 1)
    assert archive.default_workers() == 5
    assert archive.resolve_workers(None, 100) == 5 and archive.resolve_workers(None, 3) == 3
    assert archive.resolve_workers(None, 1) == 0  # one file: no worker process
    assert archive.resolve_workers(2, 1) == 1 and archive.resolve_workers(0, 9) == 0
    monkeypatch.setattr(archive, "available_memory", lambda: None)
    assert archive.default_workers() == 16
    assert np.isfinite(archive.usable_cores())


# the policy OpenMP found when torch loaded, in a fresh interpreter running `stmt classify`
_POLICY_PROBE = """
import os, sys
seen = []
class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY", "unset"))
        return None
sys.meta_path.insert(0, Probe())
from stmt.cli import main
code = main(sys.argv[1:])
print("POLICY", seen[0] if seen else "torch never loaded", code)
"""


@pytest.mark.parametrize(
    "workers, preset, expected",
    [("1", None, "PASSIVE"), ("0", None, "unset"), ("1", "ACTIVE", "ACTIVE")],
)
def test_classify_with_workers_lets_model_threads_sleep(tmp_path, workers, preset, expected):
    """Beside workers, the model's OpenMP threads wait passively (set before torch
    loads, which is when OpenMP reads it); in-process, and where the user chose a
    policy, the environment is left as it is."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    repo = Path(__file__).resolve().parents[1]
    argv = ["classify", "datasets/samples/wave_mesh.npz", "--ckpt",
            "checkpoints/stmt-realmix.ckpt", "--workers", workers, "--json"]  # fmt: skip
    out = subprocess.run([sys.executable, "-c", _POLICY_PROBE, *argv], check=False, cwd=repo,
                         env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"POLICY {expected} 0"
