"""Property-based tests of every reader: a random mutation of a valid file either
loads or raises :class:`~stmt.errors.InputError` (the one user-facing error), never
anything else, and never grows the address space by more than 4 GB.

Mutations work on the bytes (flip, delete, insert, truncate, duplicate a span), on
the text (a number token replaced by an extreme value, a line dropped or repeated)
and, for ``.npz`` files, on the arrays (shape, dtype, NaN, a key dropped or renamed).
"""

from __future__ import annotations

import io
import os
import resource
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stmt.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "datasets/samples"
HDM = REPO / "tests/data/hdm05"
BVH_FILES = [REPO / "tests/data/bandai_walk-turn-left_normal_001_first30.bvh", SAMPLES / "jump.bvh"]
CAP = 4 * 1024**3
EXAMPLES = int(os.environ.get("STMT_FUZZ_EXAMPLES", "50"))  # more for a longer hunt
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=EXAMPLES == 50,  # the suite's run is the same every time
    database=None,
)


def _address_space() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.fixture(scope="module", autouse=True)
def memory_cap():
    """RLIMIT_AS: what the process maps now plus 4 GB; restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + CAP
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# --------------------------------------------------------------------------- mutations
EXTREMES = ["nan", "inf", "-inf", "1e308", "-1e308", "0", "-0", "1e-320", "99999999999999",
            "-5", "1e9", "0.0000001", "abc", "", "{", "}", "JOINT", "MOTION", "root", "begin",
            "XQZ", "TQ", "RX", "end", "End", "Site", ":hierarchy", "CHANNELS", "6"]  # fmt: skip

byte_ops = st.lists(
    st.tuples(
        st.sampled_from(["flip", "delete", "insert", "truncate", "duplicate"]),
        st.floats(0, 1),
        st.binary(min_size=1, max_size=8),
        st.integers(1, 64),
    ),
    min_size=1,
    max_size=4,
)
text_ops = st.lists(
    st.tuples(
        st.sampled_from(["token", "drop_line", "repeat_line", "swap_lines"]),
        st.floats(0, 1),
        st.sampled_from(EXTREMES),
        st.integers(1, 2000),
    ),
    min_size=1,
    max_size=6,
)


def mutate_bytes(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, where, payload, n in ops:
        i = int(where * max(len(b) - 1, 0))
        if op == "flip" and b:
            b[i] ^= payload[0] or 0xFF
        elif op == "delete":
            del b[i : i + n]
        elif op == "insert":
            b[i:i] = payload
        elif op == "truncate":
            del b[i:]
        elif op == "duplicate":
            b[i:i] = b[i : i + n]
    return bytes(b)


def mutate_text(text: str, ops) -> str:
    lines = text.splitlines()
    for op, where, token, n in ops:
        if not lines:
            break
        i = int(where * (len(lines) - 1))
        if op == "token":
            parts = lines[i].split()
            if parts:
                parts[n % len(parts)] = token
                lines[i] = " ".join(parts)
        elif op == "drop_line":
            del lines[i]
        elif op == "repeat_line":
            lines[i:i] = [lines[i]] * (n % 50 + 1)
        elif op == "swap_lines":
            j = n % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines) + "\n"


def loads_or_input_error(read, *args) -> None:
    try:
        read(*args)
    except InputError as err:
        assert "\n" not in str(err), str(err)


mutation = st.one_of(st.tuples(st.just("bytes"), byte_ops), st.tuples(st.just("text"), text_ops))


def apply(data: bytes, m) -> bytes:
    kind, ops = m
    if kind == "bytes":
        return mutate_bytes(data, ops)
    return mutate_text(data.decode("utf-8", errors="replace"), ops).encode()


# --------------------------------------------------------------------------- readers
@FUZZ
@given(source=st.sampled_from(BVH_FILES), m=mutation)
def test_bvh(tmp_path_factory, source, m):
    from stmt.io.bvh import bvh_motion

    path = tmp_path_factory.mktemp("bvh") / "f.bvh"
    path.write_bytes(apply(source.read_bytes(), m))
    loads_or_input_error(bvh_motion, path)


@FUZZ
@given(which=st.sampled_from(["asf", "amc"]), m=mutation)
def test_asf_amc(tmp_path_factory, which, m):
    from stmt.io.asf_amc import amc_motion

    folder = tmp_path_factory.mktemp("amc")
    asf, amc = folder / "HDM_bd.asf", folder / "HDM_bd_kickLFront1Reps_001_first60_120.amc"
    shutil.copy(HDM / asf.name, asf)
    shutil.copy(HDM / amc.name, amc)
    target = asf if which == "asf" else amc
    target.write_bytes(apply(target.read_bytes(), m))
    loads_or_input_error(amc_motion, amc)


def _npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


array_ops = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "nan",
                "inf",
                "reshape",
                "dtype",
                "drop",
                "rename",
                "scalar",
                "empty",
                "huge_header",
                "object",
            ]
        ),
        st.integers(0, 10),
        st.sampled_from(["float16", "float64", "int8", "complex64", "bool", "U3", "uint64"]),
    ),
    min_size=1,
    max_size=3,
)


def mutate_arrays(arrays: dict, ops) -> bytes:
    arrays = {k: np.array(v) for k, v in arrays.items()}
    keys = sorted(arrays)
    huge = None
    for op, i, dtype in ops:
        if not keys:
            break
        k = keys[i % len(keys)]
        a = arrays.get(k)
        if a is None:
            continue
        if op == "nan" and a.dtype.kind == "f" and a.size:
            a.reshape(-1)[i % a.size] = np.nan
        elif op == "inf" and a.dtype.kind == "f" and a.size:
            a.reshape(-1)[-1] = np.inf
        elif op == "reshape" and a.size:
            arrays[k] = a.reshape(-1)
        elif op == "dtype":
            try:
                arrays[k] = a.astype(dtype)
            except (ValueError, TypeError):
                pass
        elif op == "drop":
            del arrays[k]
            keys.remove(k)
        elif op == "rename":
            arrays[k + "_x"] = arrays.pop(k)
            keys.remove(k)
        elif op == "scalar":
            arrays[k] = np.array(float(i) - 3.0)
        elif op == "empty":
            arrays[k] = a[:0] if a.ndim else np.zeros(0)
        elif op == "huge_header":
            huge = k
        elif op == "object":
            arrays[k] = np.array([{"x": 1}], dtype=object)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for k, a in arrays.items():
            member = io.BytesIO()
            if k == huge:  # a header claiming far more than the data holds
                header = {"descr": "<f8", "fortran_order": False, "shape": (10**7,) + a.shape[1:]}
                np.lib.format.write_array_header_1_0(member, header)
                member.write(b"\0" * 64)
            else:
                np.save(member, a, allow_pickle=True)
            z.writestr(f"{k}.npy", member.getvalue())
    return buf.getvalue()


npz_mutation = st.one_of(
    st.tuples(st.just("arrays"), array_ops), st.tuples(st.just("bytes"), byte_ops)
)


@pytest.fixture(scope="module")
def amass_arrays():
    with np.load(SAMPLES / "walk.npz") as z:
        return {k: z[k][:20] if z[k].ndim == 2 else z[k] for k in z.files}


@pytest.fixture(scope="module")
def mesh_arrays():
    with np.load(SAMPLES / "wave_mesh.npz") as z:
        verts, faces = z["vertices"][:4, :300], z["faces"]
        fps = z["fps"]
    faces = faces[(faces < 300).all(axis=1)]
    return {"vertices": verts, "faces": faces, "fps": fps}


def _npz(arrays: dict, m) -> bytes:
    kind, ops = m
    if kind == "arrays":
        return mutate_arrays(arrays, ops)
    return mutate_bytes(_npz_bytes(arrays), ops)


@FUZZ
@given(m=npz_mutation)
def test_amass(tmp_path_factory, amass_arrays, m):
    from stmt.io import detect_format
    from stmt.io.amass import load_amass

    path = tmp_path_factory.mktemp("amass") / "f.npz"
    path.write_bytes(_npz(amass_arrays, m))
    loads_or_input_error(load_amass, path, "amass-smplh")
    loads_or_input_error(detect_format, path)


@FUZZ
@given(m=npz_mutation)
def test_mesh_npz(tmp_path_factory, mesh_arrays, m):
    from stmt.io.mesh import read_mesh_npz

    path = tmp_path_factory.mktemp("mesh") / "f.npz"
    path.write_bytes(_npz(mesh_arrays, m))
    loads_or_input_error(read_mesh_npz, path)


@FUZZ
@given(m=mutation, fps=st.sampled_from(["30", "nan", "0", "-1", "1e9", "abc", ""]))
def test_mesh_folder(tmp_path_factory, mesh_arrays, m, fps):
    from stmt.io.mesh import read_mesh_folder

    folder = tmp_path_factory.mktemp("objs")
    v, f = mesh_arrays["vertices"].astype(np.float32), mesh_arrays["faces"]
    for t in range(3):
        text = "".join(f"v {x} {y} {z}\n" for x, y, z in v[t]) + "".join(
            f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in f
        )
        (folder / f"frame_{t:03d}.obj").write_text(text)
    victim = folder / "frame_001.obj"
    victim.write_bytes(apply(victim.read_bytes(), m))
    (folder / "fps.txt").write_text(fps)
    loads_or_input_error(read_mesh_folder, folder)
