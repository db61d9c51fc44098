"""Readers that cannot run away: no recursion on file structure, no loop on an ASF
cycle, limits checked before anything is allocated, one-line errors for all of it."""

from __future__ import annotations

import io
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from stmt import limits
from stmt.errors import InputError
from stmt.io.asf_amc import parse_asf
from stmt.io.bvh import MAX_LINE, bvh_motion, parse_bvh

REPO = Path(__file__).resolve().parents[1]
BANDAI = REPO / "tests/data/bandai_walk-turn-left_normal_001_first30.bvh"
HDM = REPO / "tests/data/hdm05"
GB = 1024**3


@pytest.fixture(autouse=True)
def _default_limits():
    limits.set_max_frames(None)
    yield
    limits.set_max_frames(None)


def _chain_bvh(depth: int, frames: int = 1, frame_time: str = "0.0333333") -> str:
    """A BVH whose joints nest ``depth`` deep, one rotation channel triple each."""
    out = ["HIERARCHY", "ROOT j0", "{", "OFFSET 0 0 0", "CHANNELS 3 Zrotation Xrotation Yrotation"]
    for i in range(1, depth):
        out += [f"JOINT j{i}", "{", "OFFSET 0 1 0", "CHANNELS 3 Zrotation Xrotation Yrotation"]
    out += ["End Site", "{", "OFFSET 0 1 0", "}"] + ["}"] * depth
    out += ["MOTION", f"Frames: {frames}", f"Frame Time: {frame_time}"]
    out += [" ".join(["0"] * (3 * depth))] * frames
    return "\n".join(out) + "\n"


def _bandai_with(frames_line: str | None = None, time_line: str | None = None, extra: int = 0):
    lines = BANDAI.read_text().splitlines()
    m = next(i for i, s in enumerate(lines) if s.strip() == "MOTION")
    if frames_line is not None:
        lines[m + 1] = frames_line
    if time_line is not None:
        lines[m + 2] = time_line
    lines += [lines[-1]] * extra
    return "\n".join(lines) + "\n"


def test_deeply_nested_bvh_parses_without_recursion(tmp_path):
    path = tmp_path / "deep.bvh"
    path.write_text(_chain_bvh(limits.MAX_JOINTS))  # deeper than Python's recursion limit
    bvh = parse_bvh(path)
    assert len(bvh.names) == limits.MAX_JOINTS
    assert bvh.parents[-1] == limits.MAX_JOINTS - 2


def test_too_many_joints_is_one_line(tmp_path):
    path = tmp_path / "deeper.bvh"
    path.write_text(_chain_bvh(limits.MAX_JOINTS + 5))
    with pytest.raises(InputError, match=f"more than {limits.MAX_JOINTS} joints"):
        parse_bvh(path)


@pytest.mark.parametrize(
    "frames_line, time_line, extra, message",
    [
        ("Frames: 999999999999", None, 0, "frames, more than the limit"),
        (None, "Frame Time: 1e6", 0, "expected 1 to 1000 frames per second"),
        (None, "Frame Time: 1e-9", 0, "expected 1 to 1000 frames per second"),
        (None, "Frame Time: 1e-320", 0, "frames per second"),
        ("Frames: 3", None, 0, "more frame lines than 'Frames: 3'"),
        (None, None, 2, "more frame lines than"),
    ],
)
def test_bvh_header_numbers_are_checked_before_allocating(
    tmp_path, frames_line, time_line, extra, message
):
    path = tmp_path / "bad.bvh"
    path.write_text(_bandai_with(frames_line, time_line, extra))
    with pytest.raises(InputError, match=message) as err:
        parse_bvh(path)
    assert "\n" not in str(err.value)


def test_bvh_with_one_frame_line_more_than_its_count_is_read_with_a_warning(tmp_path):
    """Rokoko's exporter writes 'Frames: N' over N + 1 frame lines (AnimatedDrawings
    refuses such files: its issues 106, 140, 144); one line more is read, two are not."""
    path = tmp_path / "one_more.bvh"
    path.write_text(_bandai_with(extra=1))
    bvh = parse_bvh(path)
    assert bvh.motion.shape[0] == 31
    np.testing.assert_array_equal(bvh.motion[30], bvh.motion[29])  # the repeated last line
    (warning,) = bvh_motion(path).warnings
    assert "'Frames: 30' but 31 frame lines follow" in warning and "\n" not in warning
    exact = tmp_path / "exact.bvh"
    exact.write_text(_bandai_with())
    assert parse_bvh(exact).warnings == () and bvh_motion(exact).warnings == ()


def test_duration_cap_follows_max_frames(tmp_path):
    path = tmp_path / "slow.bvh"
    path.write_text(_bandai_with(time_line="Frame Time: 0.5"))  # 30 frames at 2 fps: 15 s
    parse_bvh(path)
    limits.set_max_frames(400)  # 400 / 30 = 13.3 s of duration
    with pytest.raises(InputError, match="lasts 15 s, more than the limit of 13 s"):
        parse_bvh(path)


def test_max_frames_override(tmp_path):
    path = tmp_path / "clip.bvh"
    path.write_text(_bandai_with())
    limits.set_max_frames(10)
    with pytest.raises(InputError, match="--max-frames"):
        parse_bvh(path)
    limits.set_max_frames(30)
    assert parse_bvh(path).motion.shape[0] == 30
    with pytest.raises(InputError, match="--max-frames must be"):
        limits.set_max_frames(0)


def test_a_line_without_end_is_refused_without_reading_it_whole(tmp_path):
    path = tmp_path / "long.bvh"
    text = _bandai_with()
    path.write_text(text.rstrip("\n") + " " + "1" * (2 * MAX_LINE))
    with pytest.raises(InputError, match="longer than"):
        parse_bvh(path)


def _asf_with_hierarchy(hierarchy: list[str]) -> str:
    text = (HDM / "HDM_bd.asf").read_text()
    head, rest = text.split(":hierarchy", 1)
    tail = rest.split("end", 1)[1]
    return head + ":hierarchy\n  begin\n" + "\n".join(hierarchy) + "\n  end" + tail


def _hdm_hierarchy() -> list[str]:
    text = (HDM / "HDM_bd.asf").read_text()
    block = text.split(":hierarchy", 1)[1].split("end", 1)[0]
    return [line for line in block.splitlines() if line.strip() and line.strip() != "begin"]


def test_asf_cycle_names_the_bone(tmp_path):
    lines = _hdm_hierarchy()
    # lfemur -> ltibia -> lfoot ...: make lfoot the parent of lfemur instead of lhipjoint
    lines = [ln.replace("lhipjoint lfemur", "lhipjoint") for ln in lines]
    lines.append("  lfoot lfemur")
    path = tmp_path / "cycle.asf"
    path.write_text(_asf_with_hierarchy(lines))
    with pytest.raises(
        InputError, match="cycle through bone 'lfemur'|cycle through bone 'l"
    ) as err:
        parse_asf(path)
    assert "->" in str(err.value)


def test_asf_bone_with_two_parents_names_it(tmp_path):
    lines = _hdm_hierarchy() + ["  rfemur ltibia"]
    path = tmp_path / "two.asf"
    path.write_text(_asf_with_hierarchy(lines))
    with pytest.raises(InputError, match="bone 'ltibia' has two parents.*'lfemur'.*'rfemur'"):
        parse_asf(path)


def test_asf_root_as_a_child_is_refused(tmp_path):
    lines = _hdm_hierarchy() + ["  lfoot root"]
    path = tmp_path / "rootchild.asf"
    path.write_text(_asf_with_hierarchy(lines))
    with pytest.raises(InputError, match="'root' listed as a child"):
        parse_asf(path)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("order TX TY TZ RX RY RZ", "order TX TY TQ RX RY RZ", "root order 'TX TY TQ RX RY RZ'"),
        ("order TX TY TZ RX RY RZ", "order TX TX TZ RX RY RZ", "expected distinct channels"),
        ("axis XYZ", "axis XQZ", "axis order 'XQZ' of 'root'"),
    ],
)
def test_asf_axis_and_channel_names_are_checked(tmp_path, old, new, message):
    """Found by the fuzz tests: these were ValueError('substring not found')."""
    text = (HDM / "HDM_bd.asf").read_text()
    assert old in text
    path = tmp_path / "bad.asf"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(InputError, match=message):
        parse_asf(path)


def _npz_claiming(path: Path, arrays: dict[str, np.ndarray], claimed: dict[str, tuple]) -> None:
    """An .npz whose members' headers claim ``claimed`` shapes over little data."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for key, value in arrays.items():
            buf = io.BytesIO()
            if key in claimed:
                header = {"descr": "<f8", "fortran_order": False, "shape": claimed[key]}
                np.lib.format.write_array_header_1_0(buf, header)
                buf.write(b"\0" * 4096)
            else:
                np.save(buf, value)
            z.writestr(f"{key}.npy", buf.getvalue())


def _amass_arrays(frames: int = 10, fps: float = 120.0) -> dict[str, np.ndarray]:
    return {
        "poses": np.zeros((frames, 156)),
        "trans": np.zeros((frames, 3)),
        "betas": np.zeros(16),
        "gender": np.array("male"),
        "mocap_framerate": np.array(fps),
    }


def test_amass_npz_that_would_unpack_to_millions_of_frames_is_refused_unread(tmp_path):
    from stmt.io.amass import load_amass

    path = tmp_path / "bomb.npz"
    _npz_claiming(path, _amass_arrays(), {"poses": (50_000_000, 156)})
    assert path.stat().st_size < 100_000
    with pytest.raises(InputError, match="50000000 frames, more than the limit"):
        load_amass(path, "amass-smplh")


def test_npz_array_over_the_byte_limit_is_refused_unread(tmp_path):
    from stmt.io.mesh import read_mesh_npz

    path = tmp_path / "mesh.npz"
    _npz_claiming(
        path, {"vertices": None, "fps": np.array(30.0)}, {"vertices": (1000, 1_000_000, 3)}
    )
    with pytest.raises(InputError, match="would unpack to 22.4 GB"):
        read_mesh_npz(path)


@pytest.mark.parametrize("fps", [1e-6, 0.0, -5.0, 1e9])
def test_amass_frame_rate_out_of_range(tmp_path, fps):
    from stmt.io.amass import load_amass

    path = tmp_path / "rate.npz"
    np.savez(path, **_amass_arrays(fps=fps))
    with pytest.raises(InputError, match="mocap_framerate"):
        load_amass(path, "amass-smplh")


def test_amass_complex_poses_are_refused(tmp_path):
    from stmt.io.amass import load_amass

    arrays = _amass_arrays()
    arrays["poses"] = arrays["poses"].astype(np.complex128)
    path = tmp_path / "complex.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match="complex128 values; expected real numbers"):
        load_amass(path, "amass-smplh")


def test_amc_frames_held_to_the_cap(tmp_path):
    from stmt.io.asf_amc import amc_motion

    amc = next(HDM.glob("*.amc"))
    limits.set_max_frames(5)
    with pytest.raises(InputError, match="more than the limit of 5"):
        amc_motion(amc)
    with pytest.raises(InputError, match="fps is"):
        amc_motion(amc, fps=float("nan"))


def test_inspect_memory_does_not_grow_with_the_take(tmp_path):
    """inspect poses CHUNK frames at a time: a take of 3 chunks gives the same numbers
    as posing it whole."""
    from stmt.commands.inspect import CHUNK, describe
    from stmt.reading import read_sequence

    lines = BANDAI.read_text().splitlines()
    m = next(i for i, s in enumerate(lines) if s.strip() == "MOTION")
    rows = [s for s in lines[m + 3 :] if s.strip()]
    n = 2 * CHUNK + 7
    path = tmp_path / "long.bvh"
    path.write_text(
        "\n".join(
            lines[: m + 1]
            + [f"Frames: {n}", "Frame Time: 0.0333333"]
            + [rows[i % 30] for i in range(n)]
        )
        + "\n"
    )
    info = describe(path)
    seq = read_sequence(path)
    assert info["frames"] == n == seq.num_frames
    extent = seq.vertices.max(axis=(0, 1)) - seq.vertices.min(axis=(0, 1))
    assert info["extent_m"] == [round(float(x), 3) for x in extent]


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (4 * GB, 4 * GB))


def test_cli_bad_files_under_4gb_address_space(tmp_path):
    """A file of each kind that used to run away: one line each, exit 2, and the good
    file in the same call still completes, under ``ulimit -v`` 4 GB."""
    (tmp_path / "deep.bvh").write_text(_chain_bvh(5000))
    (tmp_path / "frames.bvh").write_text(_bandai_with("Frames: 2000000000"))
    (tmp_path / "slow.bvh").write_text(_bandai_with(time_line="Frame Time: 100000"))
    _npz_claiming(tmp_path / "bomb.npz", _amass_arrays(), {"poses": (50_000_000, 156)})
    good = tmp_path / "good.bvh"
    good.write_text(_bandai_with())
    bad = ["deep.bvh", "frames.bvh", "slow.bvh", "bomb.npz"]
    cmd = [
        sys.executable,
        "-m",
        "stmt",
        "inspect",
        "--json",
        *[str(tmp_path / b) for b in bad],
        str(good),
    ]
    run = subprocess.run(
        cmd, capture_output=True, text=True, preexec_fn=_limit_memory, timeout=300, check=False
    )
    assert run.returncode == 2, run.stderr
    errors = run.stderr.strip().splitlines()
    assert len(errors) == len(bad), run.stderr
    assert all(line.startswith("stmt: error: ") for line in errors)
    assert "Traceback" not in run.stderr
    assert '"frames": 30' in run.stdout


def test_cli_max_frames_option(tmp_path):
    good = tmp_path / "good.bvh"
    good.write_text(_bandai_with())
    base = [sys.executable, "-m", "stmt", "inspect", "--json", str(good)]
    run = subprocess.run(
        [*base, "--max-frames", "10"], capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "--max-frames" in run.stderr
    run = subprocess.run(
        [*base, "--max-frames", "0"], capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 2 and run.stderr.strip() == (
        "stmt: error: --max-frames must be a whole number >= 1, got 0"
    )


def test_symbolic_link_loop_and_broken_link_say_so(tmp_path):
    from stmt.io import detect_format

    loop = tmp_path / "loop.bvh"
    loop.symlink_to(loop)
    with pytest.raises(InputError, match="loops back on itself"):
        detect_format(loop)
    broken = tmp_path / "broken.bvh"
    broken.symlink_to(tmp_path / "nowhere.bvh")
    with pytest.raises(InputError, match="broken symbolic link"):
        detect_format(broken)
