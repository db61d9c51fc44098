"""Hostile inputs, generated: every read is bounded, every number is one an exporter
writes, every encoding an exporter uses is read, and nonsense gets one line, never a
label. Hypothesis strategies for BVH, ASF/AMC, npz frame rates, joint maps, configs and
geometry; each property holds for every draw, so new draws keep finding the same class
of defect instead of one case.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from stmt import limits
from stmt.errors import InputError
from stmt.fileio import decode_text, input_file, load_yaml, read_bytes
from stmt.io.text import NUMBER, numbers
from tests.helpers.hostile import HOSTILE

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "datasets/samples"
HDM = REPO / "tests/data/hdm05"
BANDAI = REPO / "tests/data/bandai_walk-turn-left_normal_001_first30.bvh"

# what Python's float() or int() takes and no MoCap exporter writes
FLOAT_ONLY = ["1_0", "1_000.5", "nan", "-NaN", "inf", "+Infinity", "١٢", "٣.٥", "１", "0x10",
              "1,5", "1e1_0", "²", "-nan(ind)", "1.#QNAN"]  # fmt: skip


def one_line(err: InputError) -> None:
    assert "\n" not in str(err) and err.path is not None, str(err)


# --------------------------------------------------------------------------- numbers
@HOSTILE
@given(token=st.one_of(st.sampled_from(FLOAT_ONLY), st.text(min_size=1, max_size=8)))
def test_number_grammar_is_the_exporters(token):
    token = token.strip() or "x"
    assume(not any(c.isspace() for c in token))
    got = numbers([token], token + "\n")
    if NUMBER.fullmatch(token):
        assert got == [float(token)]
    else:
        assert got == token  # refused, named


def _replace_value(text: str, where: str, token: str, at: float) -> str:
    lines = text.splitlines()
    m = next(i for i, s in enumerate(lines) if s.strip() == "MOTION")
    if where == "offset":
        rows = [i for i, s in enumerate(lines[:m]) if s.strip().startswith("OFFSET")]
    elif where == "motion":
        rows = list(range(m + 3, len(lines)))
    else:
        rows = [m + 1 if where == "frames" else m + 2]
    i = rows[int(at * (len(rows) - 1))]
    head, _, _ = lines[i].rpartition(" ") if where in ("frames", "time") else ("", "", "")
    if where in ("frames", "time"):
        lines[i] = f"{head} {token}"
    else:
        parts = lines[i].split()
        k = 1 if where == "offset" else int(at * 1000) % len(parts)
        parts[k] = token
        lines[i] = " ".join(parts)
    return "\n".join(lines) + "\n"


@HOSTILE
@given(
    where=st.sampled_from(["offset", "motion", "frames", "time"]),
    token=st.sampled_from(FLOAT_ONLY),
    at=st.floats(0, 1),
)
def test_bvh_number_float_takes_is_one_line_naming_it(tmp_path_factory, where, token, at):
    from stmt.io.bvh import parse_bvh

    path = tmp_path_factory.mktemp("bvh") / "f.bvh"
    path.write_text(_replace_value(BANDAI.read_text(), where, token, at), encoding="utf-8")
    with pytest.raises(InputError) as err:
        parse_bvh(path)
    one_line(err.value)


@HOSTILE
@given(which=st.sampled_from(["asf", "amc"]), token=st.sampled_from(FLOAT_ONLY), at=st.floats(0, 1))
def test_asf_amc_number_float_takes_is_one_line(tmp_path_factory, which, token, at):
    from stmt.io.asf_amc import amc_motion

    folder = tmp_path_factory.mktemp("amc")
    for f in HDM.iterdir():
        shutil.copy(f, folder / f.name)
    target = next(folder.glob(f"*.{which}"))
    lines = target.read_text(encoding="latin-1").splitlines()
    read = ("length", "direction", "axis", "position", "orientation")  # what the reader reads
    spots = [
        (n, k)
        for n, line in enumerate(lines)
        for k, word in enumerate(line.split())
        if NUMBER.fullmatch(word)
        and (which == "amc" and not line.startswith(("#", ":")) or line.split()[0] in read)
    ]
    n, k = spots[int(at * (len(spots) - 1))]
    parts = lines[n].split()
    parts[k] = token
    lines[n] = " ".join(parts)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        amc_motion(next(folder.glob("*.amc")))
    one_line(err.value)


# --------------------------------------------------------------------------- encodings
ENCODINGS = ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"]


@HOSTILE
@given(encoding=st.sampled_from(ENCODINGS), crlf=st.booleans())
def test_text_files_in_every_exporters_encoding_read_the_same(tmp_path_factory, encoding, crlf):
    from stmt.io import detect_format
    from stmt.io.asf_amc import amc_motion
    from stmt.io.bvh import parse_bvh

    folder = tmp_path_factory.mktemp("enc")
    nl = "\r\n" if crlf else "\n"
    bvh = folder / "take.bvh"
    bvh.write_bytes(nl.join(SAMPLES.joinpath("jump.bvh").read_text().splitlines()).encode(encoding))
    np.testing.assert_array_equal(parse_bvh(bvh).motion, parse_bvh(SAMPLES / "jump.bvh").motion)
    for f in HDM.iterdir():
        text = f.read_text(encoding="latin-1")
        (folder / f.name).write_bytes(nl.join(text.splitlines()).encode(encoding))
    amc = next(folder.glob("*.amc"))
    ours, theirs = amc_motion(amc), amc_motion(next(HDM.glob("*.amc")))
    np.testing.assert_allclose(ours.rotations, theirs.rotations, atol=1e-9)
    renamed = folder / "take.txt"
    bvh.rename(renamed)
    assert detect_format(renamed) == "bvh"  # from content, in any of these encodings


@pytest.mark.parametrize(("name", "source", "fmt"), [
    ("walk.bvh", "walk.npz", "amass-smplh"), ("walk.amc", "walk.npz", "amass-smplh"),
    ("jump.amc", "jump.bvh", "bvh"), ("jump.npz", "jump.bvh", "bvh"),
    ("kick.bvh", "HDM_mm_kickLFront1Reps_023_120.amc", "asf-amc"),
])  # fmt: skip
def test_format_from_content_where_the_extension_lies(tmp_path, name, source, fmt):
    from stmt.io import detect_format

    path = tmp_path / name
    shutil.copy(SAMPLES / source, path)
    assert detect_format(path) == fmt


# --------------------------------------------------------------------------- units and rates
def test_radians_declared_for_degrees_is_one_line(tmp_path):
    from stmt.io.asf_amc import amc_motion

    asf, amc = (next(HDM.glob(f"*.{x}")) for x in ("asf", "amc"))
    shutil.copy(amc, tmp_path / amc.name)
    (tmp_path / asf.name).write_text(
        asf.read_text(encoding="latin-1").replace("angle deg", "angle rad"), encoding="latin-1"
    )
    with pytest.raises(InputError, match="declares angles in radians .* only degrees") as err:
        amc_motion(tmp_path / amc.name)
    assert err.value.path == tmp_path / asf.name
    shutil.copy(asf, tmp_path / asf.name)  # the ASF in degrees, the AMC says :RADIANS
    text = amc.read_text(encoding="latin-1").replace(":DEGREES", ":RADIANS")
    (tmp_path / amc.name).write_text(text, encoding="latin-1")
    with pytest.raises(InputError, match="declared in radians .* only degrees"):
        amc_motion(tmp_path / amc.name)


def test_an_amc_in_radians_says_so_and_reads_as_in_degrees(tmp_path):
    from stmt.io.asf_amc import amc_motion

    asf, amc = (next(HDM.glob(f"*.{x}")) for x in ("asf", "amc"))
    shutil.copy(asf, tmp_path / asf.name)
    out = []
    for line in amc.read_text(encoding="latin-1").splitlines():
        parts = line.split()
        if line.strip() == ":DEGREES":
            line = ":RADIANS"
        elif len(parts) > 1 and not line.startswith(("#", ":")):
            keep = 4 if parts[0] == "root" else 1  # the root's TX TY TZ are lengths
            angles = (f"{math.radians(float(v)):.9g}" for v in parts[keep:])
            line = " ".join([*parts[:keep], *angles])
        out.append(line)
    (tmp_path / amc.name).write_text("\n".join(out) + "\n", encoding="latin-1")
    ours, theirs = amc_motion(tmp_path / amc.name), amc_motion(amc)
    np.testing.assert_allclose(ours.rotations, theirs.rotations, atol=1e-6)


rates = st.one_of(
    st.booleans(), st.text(max_size=4), st.complex_numbers(allow_nan=False, max_magnitude=100),
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**6),
    st.lists(st.floats(1, 100), min_size=0, max_size=3),
)  # fmt: skip


@HOSTILE
@given(rate=rates, key=st.sampled_from(["mocap_framerate", "fps"]))
def test_a_frame_rate_is_a_real_number_in_range_or_one_line(tmp_path_factory, rate, key):
    from stmt.io.amass import load_amass
    from stmt.io.mesh import read_mesh_npz

    path = tmp_path_factory.mktemp("rate") / "f.npz"
    with np.load(SAMPLES / ("walk.npz" if key != "fps" else "wave_mesh.npz")) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[key] = np.array(rate)
    np.savez(path, **arrays)
    read = (lambda p: load_amass(p, "amass-smplh")) if key != "fps" else read_mesh_npz
    try:
        fps = read(path).fps
    except InputError as err:
        one_line(err)
        return
    assert not isinstance(rate, (bool, str, complex)) and np.asarray(rate).size == 1
    assert limits.MIN_FPS <= fps <= limits.MAX_FPS and fps == float(np.asarray(rate))


# --------------------------------------------------------------------------- geometry
def _mesh_sequence(vertices: np.ndarray, fps: float = 30.0):
    from stmt.sequence import MeshSequence

    return MeshSequence(vertices=vertices, faces=None, fps=fps, body="mesh", source=Path("m.npz"))


@pytest.fixture(scope="module")
def body() -> np.ndarray:
    with np.load(SAMPLES / "wave_mesh.npz") as z:
        return z["vertices"][:, ::40].astype(np.float32)  # (T, V/40, 3) metres


@HOSTILE
@given(
    scale=st.floats(-7, 5), squash=st.sampled_from([None, 0, 1, 2, (0, 1)]), move=st.floats(0, 4)
)
def test_geometry_that_is_no_body_is_one_line_and_odd_sizes_a_warning(body, scale, squash, move):
    from stmt.io.mesh import HUMAN_SIZE_M, MAX_SPEED_M_S, check_plausible

    v = body * np.float32(10.0**scale)
    if squash is not None:
        v[..., list(np.atleast_1d(squash))] = 0.0
    v[:, :, 0] += np.arange(len(v), dtype=np.float32)[:, None] * np.float32(10.0**move / 30)
    seq = _mesh_sequence(v)
    extent = np.ptp(v, axis=1)  # (T, 3)
    try:
        warnings = check_plausible(seq)
    except InputError as err:
        one_line(err)
        assert extent.max() < 1e-3 or squash is not None
        return
    assert squash is None and extent.max() >= 1e-3
    size = float(np.median(extent.max(axis=1)))
    odd_size = not HUMAN_SIZE_M[0] <= size <= HUMAN_SIZE_M[1]
    assert any("are the units metres" in w for w in warnings) == odd_size
    if 10.0**move > 2 * MAX_SPEED_M_S:
        assert any("faster than anyone runs" in w for w in warnings)


def test_a_take_too_short_for_the_window_is_labelled_with_a_warning(tmp_path, monkeypatch):
    import torch

    from stmt.clip import ClipSettings
    from stmt.inference import TOO_SHORT, Classifier
    from tests.helpers.models import tiny_model

    monkeypatch.setenv("STMT_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    settings = ClipSettings(["a", "b", "c"], num_frames=8, num_points=32, fps=30.0, window_s=2.0)
    clf = Classifier(tiny_model(8, 32), settings)
    import trimesh

    rest = np.asarray(trimesh.creation.capsule(height=1.2, radius=0.25).vertices, np.float32)
    for frames in (1, 5, 6, 60):
        seq = _mesh_sequence(np.repeat(rest[None], frames, axis=0))
        item = clf.preprocess(seq)
        short = [w for w in item.warnings if w.startswith("too short:")]
        assert bool(short) == (frames / 30.0 < TOO_SHORT * 2.0), (frames, item.warnings)
        assert clf.postprocess(item, clf.forward([item])[0]).warnings == item.warnings


# --------------------------------------------------------------------------- bounded reads
@pytest.fixture
def specials(tmp_path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    broken = tmp_path / "broken.yaml"
    broken.symlink_to(tmp_path / "gone")
    out = {"fifo": fifo, "folder": tmp_path, "broken link": broken}
    if os.path.exists("/dev/zero"):
        out["device"] = Path("/dev/zero")
    return out


def test_only_regular_files_are_read(specials):
    for kind, path in specials.items():
        with pytest.raises(InputError) as err:
            read_bytes(path, "a joint map", 1024)
        one_line(err.value)
        assert kind.split()[0] in str(err.value) or "character device" in str(err.value)


@pytest.mark.parametrize("command", [
    ["classify", str(SAMPLES / "jump.bvh"), "--ckpt", "{p}"],
    ["inspect", str(SAMPLES / "jump.bvh"), "--joint-map", "{p}"],
    ["fit", "--config", "{p}"],
], ids=["ckpt", "joint-map", "config"])  # fmt: skip
def test_commands_take_no_fifo_device_or_folder(specials, capsys, command):
    from stmt.cli import main

    for kind, path in specials.items():
        code = main([c.format(p=path) for c in command])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith(f"stmt: error: {path}: "), (
            kind,
            err,
        )


def test_a_file_over_its_cap_is_refused_before_reading(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_bytes(b"a: b\n" * 1000)
    with pytest.raises(InputError, match="more than the .* a joint map may be"):
        read_bytes(path, "a joint map", 1000)
    assert input_file(path, "x") == path


texts = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=32).map(lambda t: t.encode("utf-8")),
    st.sampled_from(["utf-8-sig", "utf-16", "utf-32", "latin-1"]).flatmap(
        lambda enc: st.text(alphabet="abcäöü: {}[]-\n", max_size=20).map(
            lambda t, enc=enc: t.encode(enc, errors="replace")
        )
    ),
)


@HOSTILE
@given(data=texts)
def test_decoding_is_text_or_one_line(data):
    try:
        text = decode_text(data, Path("f.yaml"), "a joint map")
    except InputError as err:
        one_line(err)
        assert "expected a joint map saved as UTF-8" in str(err)
        return
    assert isinstance(text, str)


@HOSTILE
@given(depth=st.integers(1, 12), width=st.integers(1, 12), recursive=st.booleans())
def test_yaml_aliases_are_capped_not_expanded(depth, width, recursive):
    """A document whose aliases expand past the cap (or name themselves) is one line,
    decided without expanding it; a smaller one loads."""
    lines, size, total = ['a0: &a0 ["x"]'], 2, 1 + 1 + 2  # nodes: the root, key a0, its list
    for i in range(1, depth + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
        size = 1 + width * size  # a list of `width` copies of the one before
        total += 1 + size
    if recursive:
        lines.append("r: &r [1, *r]")  # an alias inside its own anchor
    try:
        data = load_yaml("\n".join(lines) + "\n", Path("c.yaml"))
    except InputError as err:
        one_line(err)
        assert recursive or total > limits.MAX_YAML_NODES
        return
    assert not recursive and total <= limits.MAX_YAML_NODES and len(data) == depth + 1


@HOSTILE
@given(data=st.one_of(texts, st.recursive(
    st.one_of(st.text(max_size=8), st.integers(), st.none()),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=6), kids,
                                                                        max_size=3)),
    max_leaves=8).map(lambda d: yaml.safe_dump(d).encode())))  # fmt: skip
def test_joint_maps_load_or_are_one_line(tmp_path_factory, data):
    from stmt.retarget import load_joint_map

    for suffix in (".yaml", ".json"):
        path = tmp_path_factory.mktemp("jm") / f"map{suffix}"
        path.write_bytes(data)
        try:
            result = load_joint_map(path)
        except InputError as err:
            one_line(err)
            continue
        assert isinstance(result, dict)


def test_amass_angles_in_degrees_and_a_joint_map_mapping_twice_are_one_line(tmp_path):
    from stmt.io.amass import load_amass
    from stmt.retarget import load_joint_map

    with np.load(SAMPLES / "walk.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["poses"] = np.degrees(arrays["poses"])
    np.savez(tmp_path / "deg.npz", **arrays)
    with pytest.raises(InputError, match="look like degrees"):
        load_amass(tmp_path / "deg.npz", "amass-smplh")
    (tmp_path / "map.yaml").write_text("hip: Hips\npelvis: Hips\n")
    with pytest.raises(InputError, match="maps hip, pelvis all to Hips"):
        load_joint_map(tmp_path / "map.yaml")
