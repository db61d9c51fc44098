"""The built-in synthetic action dataset (``stmt synth``).

Motions are generated procedurally as SMPL+H pose parameters and written as
AMASS-format ``.npz`` files plus BABEL-format annotation JSON, so they pass
through the same reader (:func:`stmt.reading.read_sequence`) and the same
preparation (``stmt prepare --dataset synthetic``) as real data.

How a clip is made
------------------
1. Each class has a generator that returns named joint-angle *channels*
   (degrees; e.g. ``hipL_flex``, ``shR_elev``, ``spine_flex``) over time, plus a
   body-frame pelvis path (``fwd``, ``lat`` in metres), a flight height and a
   heading change. Keyframed classes interpolate with cosine easing; periodic
   ones (walk, run, hop, wave) use sinusoids.
2. Variation: per clip a speed factor (time scale), an amplitude factor, a left/
   right mirror (swap the L/R channels, negate the lateral ones), smooth angle
   noise (sigma ~2 degrees), idle lead-in/out (0.2-0.8 s of the start/end pose),
   a heading in [0, 2 pi) and a start position in a 4 m square; per subject a body
   shape (``betas``), a gender and a personal speed/amplitude bias.
3. Channels become SMPL axis-angles (``channels_to_poses``), a small forward
   kinematics on a table of approximate SMPL mean rest joints (``SMPL_REST_JOINTS``)
   puts the lowest foot joint on the floor each frame (plus flight) and, for
   motions in place, keeps the feet from sliding.
4. ``stand up`` is literally a ``sit`` motion played backwards (the same
   generator, frames reversed), given its own idle lead-in (seated) and lead-out
   (standing).

SMPL conventions used (verified against the rotation formulas, see tests):
joint rotations are local, in the body's own frame where x = body left,
y = up, z = forward (SMPL is Y-up). Knee flexion is +x; hip flexion (thigh
forward) is -x; spine flexion (lean forward) is +x; the left arm (along +x in
the T-pose) is lowered by -z, the right by +z; elbow flexion is -y (left) / +y
(right). AMASS's ``root_orient`` for an upright person includes +90 degrees about
x, which takes the body's Y-up frame to the world's Z-up; the body then faces
world -y, rotated by the heading about world z.

Splits: subjects (body shapes) are split train/val/test (70/15/15 %, at least
one each), so test bodies are unseen in training. Everything is deterministic
given ``seed``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stmt import limits
from stmt.body.smpl import BODY_PARENTS
from stmt.errors import InputError
from stmt.fileio import atomic_savez, atomic_text, new_folder, read_text

FPS = 30.0

# Classes, in BABEL's action_label_2_idx order (all are BABEL-60 categories).
SYNTH_CLASSES: list[str] = [
    "walk", "stand", "turn", "t pose", "jump", "sit", "run", "bend", "throw",
    "stand up", "kick", "wave", "punch", "squat", "hop",
]  # fmt: skip

SMPL_PARENTS = np.array(BODY_PARENTS)  # SMPL body joints 0..21, AMASS order
# Approximate SMPL mean-shape rest joint positions (metres, body frame: x left, y up,
# z forward), enough for floor contact and foot anchoring.
SMPL_REST_JOINTS = np.array([
    [0.000, -0.223, 0.028], [0.070, -0.318, 0.020], [-0.068, -0.315, 0.021],
    [-0.003, -0.109, 0.002], [0.104, -0.676, 0.017], [-0.106, -0.682, 0.013],
    [0.005, 0.025, 0.026], [0.089, -1.079, -0.027], [-0.092, -1.085, -0.029],
    [0.001, 0.078, 0.026], [0.120, -1.137, 0.086], [-0.119, -1.143, 0.090],
    [-0.003, 0.290, -0.015], [0.078, 0.196, -0.006], [-0.082, 0.194, -0.011],
    [0.005, 0.353, 0.037], [0.172, 0.229, -0.016], [-0.175, 0.225, -0.019],
    [0.432, 0.215, -0.042], [-0.433, 0.215, -0.044], [0.693, 0.223, -0.047],
    [-0.696, 0.221, -0.049],
], dtype=np.float64)  # fmt: skip
FOOT_JOINTS = [7, 8, 10, 11]
FOOT_CLEARANCE = 0.05  # height of the lowest foot joint above the floor (m)
MAX_FRAMES = 150  # 5 s: every clip is one sample of the 5 s chunking

# Channels (degrees unless noted) and their standing defaults.
DEFAULTS: dict[str, float] = {
    "root_pitch": 0.0, "root_roll": 0.0, "root_yaw": 0.0,
    "spine_flex": 0.0, "spine_twist": 0.0, "spine_side": 0.0, "neck_flex": 0.0,
    "hipL_flex": 0.0, "hipR_flex": 0.0, "hipL_abd": 2.0, "hipR_abd": 2.0,
    "kneeL": 3.0, "kneeR": 3.0, "ankleL": 0.0, "ankleR": 0.0,
    "shL_elev": 8.0, "shR_elev": 8.0, "shL_fwd": 0.0, "shR_fwd": 0.0,
    "elbL": 10.0, "elbR": 10.0,
    # not angles: body-frame pelvis path (m), flight height (m), heading change (deg)
    "fwd": 0.0, "lat": 0.0, "flight": 0.0, "heading": 0.0,
}  # fmt: skip
_LATERAL = ("root_roll", "root_yaw", "spine_twist", "spine_side", "lat", "heading")
_IN_PLACE_ANCHOR = {"stand", "t pose", "sit", "stand up", "bend", "squat", "wave", "punch"}


@dataclass(frozen=True)
class Subject:
    """A generated person: body shape and a personal style."""

    index: int
    betas: np.ndarray  # (16,)
    gender: str
    speed: float
    amplitude: float
    split: str


# ----------------------------------------------------------------- channels
class Track:
    """Channel arrays over T frames, starting from the standing defaults."""

    def __init__(self, num_frames: int):
        self.t = np.arange(num_frames) / FPS
        self.ch = {k: np.full(num_frames, v) for k, v in DEFAULTS.items()}

    def keys(self, times: list[float], poses: list[dict[str, float]]) -> Track:
        """Cosine-eased keyframes; channels not named in a key keep their default."""
        names = set().union(*poses)
        for name in names:
            vals = [p.get(name, DEFAULTS[name]) for p in poses]
            self.ch[name] = _eased_interp(self.t, np.asarray(times), np.asarray(vals, float))
        return self


def _eased_interp(t: np.ndarray, kt: np.ndarray, kv: np.ndarray) -> np.ndarray:
    seg = np.clip(np.searchsorted(kt, t, side="right") - 1, 0, len(kt) - 2)
    t0, t1 = kt[seg], kt[seg + 1]
    u = np.clip((t - t0) / np.maximum(t1 - t0, 1e-9), 0.0, 1.0)
    u = 0.5 - 0.5 * np.cos(math.pi * u)
    return kv[seg] + (kv[seg + 1] - kv[seg]) * u


def _n(seconds: float) -> int:
    return max(2, round(seconds * FPS))


# One generator per class: (rng, speed, amp) -> Track of the core motion.
def _walk(rng, s, a):
    tr = Track(_n(rng.uniform(3.0, 4.2)))
    ph = 2 * math.pi * 0.95 * s * tr.t + rng.uniform(0, 2 * math.pi)
    c = tr.ch
    c["hipL_flex"], c["hipR_flex"] = 25 * a * np.sin(ph), -25 * a * np.sin(ph)
    c["kneeL"] = 5 + 45 * a * np.maximum(0, np.cos(ph))
    c["kneeR"] = 5 + 45 * a * np.maximum(0, -np.cos(ph))
    c["shL_fwd"], c["shR_fwd"] = -22 * a * np.sin(ph), 22 * a * np.sin(ph)
    c["elbL"] = c["elbR"] = np.full_like(ph, 20.0)
    c["root_yaw"] = 5 * np.sin(ph)
    c["fwd"] = 1.25 * s * a * tr.t
    return tr


def _run(rng, s, a):
    tr = Track(_n(rng.uniform(2.5, 3.5)))
    ph = 2 * math.pi * 1.45 * s * tr.t + rng.uniform(0, 2 * math.pi)
    c = tr.ch
    c["hipL_flex"], c["hipR_flex"] = 45 * a * np.sin(ph), -45 * a * np.sin(ph)
    c["kneeL"] = 20 + 85 * a * np.maximum(0, np.cos(ph))
    c["kneeR"] = 20 + 85 * a * np.maximum(0, -np.cos(ph))
    c["shL_fwd"], c["shR_fwd"] = -40 * a * np.sin(ph), 40 * a * np.sin(ph)
    c["elbL"] = c["elbR"] = np.full_like(ph, 90.0)
    c["root_pitch"] = np.full_like(ph, 10.0)
    c["root_yaw"] = 8 * np.sin(ph)
    c["fwd"] = 3.2 * s * a * tr.t
    c["flight"] = 0.07 * a * np.maximum(0, np.sin(2 * ph))
    return tr


def _stand(rng, s, a):
    tr = Track(_n(rng.uniform(3.0, 4.5)))
    ph = 2 * math.pi * rng.uniform(0.2, 0.35) * tr.t + rng.uniform(0, 2 * math.pi)
    c = tr.ch
    c["root_roll"] = 3 * np.sin(ph)
    c["lat"] = 0.03 * np.sin(ph)
    c["kneeL"] = 4 + 4 * np.maximum(0, np.sin(ph))
    c["kneeR"] = 4 + 4 * np.maximum(0, -np.sin(ph))
    c["neck_flex"] = 8 * np.sin(0.6 * ph + 1.0)
    c["spine_twist"] = 4 * np.sin(0.4 * ph)
    return tr


def _turn(rng, s, a):
    dur = rng.uniform(1.4, 2.2) / s
    tr = Track(_n(dur + 0.3))
    angle = rng.choice([-1, 1]) * rng.uniform(90, 180) * a
    u = np.clip(tr.t / dur, 0, 1)
    c = tr.ch
    c["heading"] = angle * (0.5 - 0.5 * np.cos(math.pi * u))
    steps = np.sin(2 * math.pi * 1.6 * s * tr.t) * (u < 1)
    c["hipL_flex"], c["hipR_flex"] = 18 * np.maximum(0, steps), 18 * np.maximum(0, -steps)
    c["kneeL"], c["kneeR"] = 3 + 35 * np.maximum(0, steps), 3 + 35 * np.maximum(0, -steps)
    c["spine_twist"] = 0.1 * np.gradient(c["heading"]) * FPS / 10
    return tr


def _tpose(rng, s, a):
    up, hold = 0.9 / s, rng.uniform(1.0, 2.0)
    down = rng.random() < 0.5
    p = {"shL_elev": 90.0, "shR_elev": 90.0, "elbL": 0.0, "elbR": 0.0}
    times, poses = [0, up, up + hold], [{}, p, p]
    if down:
        times.append(up + hold + up)
        poses.append({})
    return Track(_n(times[-1])).keys(times, poses)


def _jump(rng, s, a):
    reps = int(rng.integers(1, 3))
    dur = 1.3 / s
    tr = Track(_n(reps * dur))
    c = tr.ch
    crouch = {
        "hipL_flex": 60 * a,
        "hipR_flex": 60 * a,
        "kneeL": 95 * a,
        "kneeR": 95 * a,
        "root_pitch": 30 * a,
        "shL_fwd": -40,
        "shR_fwd": -40,
        "elbL": 15,
        "elbR": 15,
    }
    takeoff = {"shL_fwd": 150 * a, "shR_fwd": 150 * a, "elbL": 10, "elbR": 10}
    land = {
        "hipL_flex": 40 * a,
        "hipR_flex": 40 * a,
        "kneeL": 60 * a,
        "kneeR": 60 * a,
        "root_pitch": 20 * a,
        "shL_fwd": 40,
        "shR_fwd": 40,
    }
    fwd_step = rng.uniform(0.0, 0.6) * a
    times, poses = [], []
    for r in range(reps):
        t0 = r * dur
        times += [t0, t0 + 0.3 * dur, t0 + 0.45 * dur, t0 + 0.75 * dur, t0 + 0.85 * dur]
        poses += [
            {"fwd": r * fwd_step},
            {**crouch, "fwd": r * fwd_step},
            {**takeoff},
            {**land, "fwd": (r + 1) * fwd_step},
            {**land, "fwd": (r + 1) * fwd_step},
        ]
    times.append(reps * dur)
    poses.append({"fwd": reps * fwd_step})
    tr.keys(times, poses)
    for r in range(reps):  # ballistic flight between takeoff and landing
        u = (tr.t - (r + 0.45) * dur) / (0.3 * dur)
        c["flight"] = c["flight"] + np.where((u > 0) & (u < 1), 4 * u * (1 - u), 0) * 0.35 * a
    return tr


def _sit(rng, s, a):
    """Standing -> seated (held); ``stand up`` is this played backwards."""
    down, hold = rng.uniform(1.1, 1.6) / s, rng.uniform(0.8, 1.5)
    mid = {
        "hipL_flex": 45 * a,
        "hipR_flex": 45 * a,
        "kneeL": 45 * a,
        "kneeR": 45 * a,
        "root_pitch": 30,
        "shL_fwd": 30,
        "shR_fwd": 30,
    }
    deep = 88 * (0.9 + 0.1 * a)  # seat height varies little: sitting is on a chair
    seated = {
        "hipL_flex": deep,
        "hipR_flex": deep,
        "kneeL": deep,
        "kneeR": deep,
        "root_pitch": 8,
        "shL_fwd": 35,
        "shR_fwd": 35,
        "elbL": 45,
        "elbR": 45,
        "hipL_abd": 8,
        "hipR_abd": 8,
    }
    times = [0, 0.5 * down, down, down + hold]
    return Track(_n(times[-1])).keys(times, [{}, mid, seated, seated])


def _bend(rng, s, a):
    down, hold = rng.uniform(0.9, 1.3) / s, rng.uniform(0.4, 1.0)
    depth = rng.uniform(55, 80) * a
    p = {
        "root_pitch": depth * 0.6,
        "hipL_flex": depth * 0.6,
        "hipR_flex": depth * 0.6,
        "spine_flex": depth * 0.5,
        "shL_fwd": depth,
        "shR_fwd": depth,
        "neck_flex": 15,
        "kneeL": 10,
        "kneeR": 10,
    }
    times = [0, down, down + hold, 2 * down + hold]
    return Track(_n(times[-1])).keys(times, [{}, p, p, {}])


def _throw(rng, s, a):
    d = 1.0 / s
    windup = {
        "shR_elev": 100,
        "shR_fwd": -35 * a,
        "elbR": 90,
        "spine_twist": -35 * a,
        "shL_fwd": 45,
        "spine_flex": -10,
        "hipL_flex": 20,
        "kneeL": 20,
    }
    release = {
        "shR_elev": 60,
        "shR_fwd": 130 * a,
        "elbR": 15,
        "spine_twist": 30 * a,
        "spine_flex": 20,
        "shL_fwd": -10,
        "hipL_flex": 25,
        "fwd": 0.3 * a,
    }
    follow = {
        "shR_elev": 20,
        "shR_fwd": 60,
        "elbR": 30,
        "spine_twist": 20,
        "spine_flex": 30,
        "hipL_flex": 20,
        "kneeL": 25,
        "kneeR": 10,
        "fwd": 0.35 * a,
    }
    end = {"fwd": 0.35 * a}
    times = [0, 0.45 * d, 0.75 * d, 0.95 * d, 1.5 * d]
    return Track(_n(times[-1])).keys(times, [{}, windup, release, follow, end])


def _kick(rng, s, a):
    d = 1.1 / s
    arms = {"shL_elev": 35, "shR_elev": 35}
    chamber = {"hipL_flex": 65 * a, "kneeL": 95, "spine_flex": -8, **arms}
    extend = {"hipL_flex": 85 * a, "kneeL": 5, "spine_flex": -15, "ankleL": -20, **arms}
    times = [0, 0.3 * d, 0.5 * d, 0.7 * d, 1.1 * d]
    return Track(_n(times[-1])).keys(times, [{}, chamber, extend, chamber, {}])


def _wave(rng, s, a):
    up, cycles, f = 0.5 / s, int(rng.integers(3, 7)), 2.0 * s
    dur = cycles / f
    raised = {"shR_elev": 140, "shR_fwd": 15, "elbR": 40}
    times = [0, up, up + dur, 2 * up + dur]
    tr = Track(_n(times[-1])).keys(times, [{}, raised, raised, {}])
    osc = np.sin(2 * math.pi * f * (tr.t - up)) * ((tr.t > up) & (tr.t < up + dur))
    tr.ch["shR_elev"] = tr.ch["shR_elev"] + 12 * a * osc
    tr.ch["elbR"] = tr.ch["elbR"] + 30 * a * osc
    return tr


def _punch(rng, s, a):
    n = int(rng.integers(2, 6))
    guard = {
        "shL_fwd": 35,
        "shR_fwd": 35,
        "elbL": 115,
        "elbR": 115,
        "shL_elev": 15,
        "shR_elev": 15,
        "hipL_flex": 12,
        "hipR_flex": -8,
        "kneeL": 12,
        "kneeR": 12,
    }
    times, poses = [0.0, 0.4 / s], [{}, guard]
    t = times[-1]
    for i in range(n):
        side = "L" if (i % 2 == 0) else "R"
        hit = {
            **guard,
            f"sh{side}_fwd": 85 * a,
            f"elb{side}": 5,
            "spine_twist": (-15 if side == "L" else 15) * a,
        }
        times += [t + 0.16 / s, t + 0.38 / s]
        poses += [hit, guard]
        t = times[-1]
    times.append(t + 0.4 / s)
    poses.append({})
    return Track(_n(times[-1])).keys(times, poses)


def _squat(rng, s, a):
    reps, d = int(rng.integers(1, 4)), 1.7 / s
    low = {
        "hipL_flex": 100 * a,
        "hipR_flex": 100 * a,
        "kneeL": 115 * a,
        "kneeR": 115 * a,
        "root_pitch": 35 * a,
        "ankleL": -20,
        "ankleR": -20,
        "shL_fwd": 85,
        "shR_fwd": 85,
        "elbL": 5,
        "elbR": 5,
        "hipL_abd": 12,
        "hipR_abd": 12,
    }
    top = {"shL_fwd": 85, "shR_fwd": 85, "elbL": 5, "elbR": 5}
    times, poses = [0.0, 0.3 / s], [{}, top]
    for r in range(reps):
        t0 = times[-1]
        times += [t0 + 0.5 * d, t0 + 0.6 * d, t0 + d]
        poses += [low, low, top]
    times.append(times[-1] + 0.3 / s)
    poses.append({})
    return Track(_n(times[-1])).keys(times, poses)


def _hop(rng, s, a):
    n, f = int(rng.integers(3, 7)), 2.0 * s
    lift = 0.25 / s
    dur = lift + n / f
    tr = Track(_n(dur + lift))
    raised = {"hipL_flex": 35, "kneeL": 85, "shL_elev": 30, "shR_elev": 30}
    tr.keys([0, lift, dur, dur + lift], [{}, raised, raised, {}])
    ph = 2 * math.pi * f * (tr.t - lift)
    on = (tr.t > lift) & (tr.t < dur)
    c = tr.ch
    c["flight"] = np.where(on, 0.13 * a * np.maximum(0, np.sin(ph)), 0.0)
    c["kneeR"] = c["kneeR"] + np.where(on, 25 * a * np.maximum(0, -np.sin(ph)), 0.0)
    c["hipR_flex"] = c["hipR_flex"] + np.where(on, 15 * a * np.maximum(0, -np.sin(ph)), 0.0)
    c["fwd"] = rng.uniform(0.0, 0.25) * a * f * np.clip(tr.t - lift, 0, dur - lift)
    return tr


GENERATORS = {
    "walk": _walk, "stand": _stand, "turn": _turn, "t pose": _tpose, "jump": _jump,
    "sit": _sit, "run": _run, "bend": _bend, "throw": _throw, "kick": _kick,
    "wave": _wave, "punch": _punch, "squat": _squat, "hop": _hop,
}  # fmt: skip


# ------------------------------------------------------------ channel ops
def reverse_track(tr: Track) -> Track:
    """The same motion played backwards (path and heading re-based to start at 0)."""
    out = Track(len(tr.t))
    for k, v in tr.ch.items():
        r = v[::-1].copy()
        if k in ("fwd", "lat", "heading"):
            r = r - r[0]
        out.ch[k] = r
    return out


def mirror_track(tr: Track) -> Track:
    """Swap left and right; negate the lateral channels."""
    out = Track(len(tr.t))
    for k, v in tr.ch.items():
        if "L_" in k or k.endswith("L"):
            other = k.replace("L_", "R_") if "L_" in k else k[:-1] + "R"
        elif "R_" in k or k.endswith("R"):
            other = k.replace("R_", "L_") if "R_" in k else k[:-1] + "L"
        else:
            other = k
        out.ch[other] = -v if k in _LATERAL else v.copy()
    return out


def retime_track(tr: Track, num_frames: int) -> Track:
    """The same motion resampled (linearly) to ``num_frames`` frames."""
    out = Track(num_frames)
    src = np.linspace(0, len(tr.t) - 1, num_frames)
    for k, v in tr.ch.items():
        out.ch[k] = np.interp(src, np.arange(len(v)), v)
    return out


def pad_track(tr: Track, lead: int, tail: int) -> Track:
    """Idle lead-in/out: hold the first/last pose for ``lead``/``tail`` frames."""
    out = Track(len(tr.t) + lead + tail)
    for k, v in tr.ch.items():
        out.ch[k] = np.concatenate([np.full(lead, v[0]), v, np.full(tail, v[-1])])
    return out


def _euler_xyz(x, y, z):
    """(T, 3) axis-angles of Rx(x) @ Ry(y) @ Rz(z) (degrees in)."""
    from scipy.spatial.transform import Rotation

    ang = np.radians(np.stack([x, y, z], axis=-1))  # (T, 3)
    return Rotation.from_euler("XYZ", ang).as_rotvec()


def channels_to_body_rotvecs(ch: dict[str, np.ndarray]) -> np.ndarray:
    """(T, 22, 3) local axis-angles in the body frame; row 0 is the pelvis's own
    rotation (pitch/roll/yaw), without the heading and the AMASS +90 deg about x."""
    T = len(ch["fwd"])
    z = np.zeros(T)
    out = np.zeros((T, 22, 3))
    out[:, 0] = _euler_xyz(ch["root_pitch"], ch["root_yaw"], ch["root_roll"])
    for j in (3, 6, 9):
        out[:, j] = _euler_xyz(ch["spine_flex"] / 3, ch["spine_twist"] / 3, ch["spine_side"] / 3)
    out[:, 12] = _euler_xyz(ch["neck_flex"] / 2, z, z)
    out[:, 15] = _euler_xyz(ch["neck_flex"] / 2, z, z)
    out[:, 1] = _euler_xyz(-ch["hipL_flex"], z, ch["hipL_abd"])
    out[:, 2] = _euler_xyz(-ch["hipR_flex"], z, -ch["hipR_abd"])
    out[:, 4] = _euler_xyz(ch["kneeL"], z, z)
    out[:, 5] = _euler_xyz(ch["kneeR"], z, z)
    out[:, 7] = _euler_xyz(ch["ankleL"], z, z)
    out[:, 8] = _euler_xyz(ch["ankleR"], z, z)
    out[:, 16] = _euler_xyz(-ch["shL_fwd"], z, ch["shL_elev"] - 90)
    out[:, 17] = _euler_xyz(-ch["shR_fwd"], z, 90 - ch["shR_elev"])
    out[:, 18] = _euler_xyz(z, -ch["elbL"], z)
    out[:, 19] = _euler_xyz(z, ch["elbR"], z)
    return out


def forward_kinematics(root_rot: np.ndarray, rotvecs: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(T, 22, 3) world joint positions for AMASS-style parameters.

    ``root_rot`` (T, 3, 3) world rotation of the pelvis; ``rotvecs`` (T, 22, 3) local
    axis-angles (row 0 ignored); ``trans`` (T, 3). As in SMPL, the pelvis sits at
    rest joint 0 + trans and the root rotation turns the body about it.
    """
    from scipy.spatial.transform import Rotation

    T = len(trans)
    local = Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_matrix().reshape(T, 22, 3, 3)
    glob = np.zeros((T, 22, 3, 3))
    pos = np.zeros((T, 22, 3))
    glob[:, 0] = root_rot
    pos[:, 0] = SMPL_REST_JOINTS[0] + trans
    for j in range(1, 22):
        p = SMPL_PARENTS[j]
        glob[:, j] = glob[:, p] @ local[:, j]
        offset = SMPL_REST_JOINTS[j] - SMPL_REST_JOINTS[p]
        pos[:, j] = pos[:, p] + np.einsum("tij,j->ti", glob[:, p], offset)
    return pos


def _rot_z(deg: np.ndarray) -> np.ndarray:
    r = np.radians(deg)
    c, s = np.cos(r), np.sin(r)
    m = np.zeros((len(r), 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = c, -s, s, c, 1
    return m


RX90 = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # body Y-up -> world Z-up


def track_to_amass(
    tr: Track, heading_deg: float, position_xy: np.ndarray, anchor_feet: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Channels -> AMASS ``poses`` (T, 156), ``trans`` (T, 3) and world joints (T, 22, 3)."""
    from scipy.spatial.transform import Rotation

    ch = tr.ch
    T = len(ch["fwd"])
    rv = channels_to_body_rotvecs(ch)
    heading = heading_deg + ch["heading"]
    world_from_body = _rot_z(heading) @ RX90  # (T, 3, 3)
    root_local = Rotation.from_rotvec(rv[:, 0]).as_matrix()
    root_rot = world_from_body @ root_local
    # pelvis path: integrate body-frame steps in the current heading
    step = np.stack([np.gradient(ch["lat"]), np.zeros(T), np.gradient(ch["fwd"])], -1)  # (T, 3)
    path = np.cumsum(np.einsum("tij,tj->ti", world_from_body, step), axis=0)
    path -= path[0]
    trans = np.zeros((T, 3))
    trans[:, :2] = position_xy + path[:, :2]
    joints = forward_kinematics(root_rot, rv, trans)
    if anchor_feet:  # motions in place: keep the mean foot position where it starts
        feet = joints[:, FOOT_JOINTS, :2].mean(axis=1)  # (T, 2)
        trans[:, :2] -= feet - feet[0]
    lowest = joints[:, FOOT_JOINTS, 2].min(axis=1)  # (T,)
    trans[:, 2] += FOOT_CLEARANCE - lowest + ch["flight"]
    joints = forward_kinematics(root_rot, rv, trans)
    poses = np.zeros((T, 156))
    poses[:, :3] = Rotation.from_matrix(root_rot).as_rotvec()
    poses[:, 3:66] = rv[:, 1:].reshape(T, 63)  # (T, 21 * 3)
    return poses.astype(np.float32), trans.astype(np.float32), joints.astype(np.float32)


# --------------------------------------------------------------- clips
def _smooth_noise(rng, n: int, sigma: float, width: int = 9) -> np.ndarray:
    k = np.hanning(width + 2)[1:-1]
    k /= np.sqrt(np.sum(k**2))
    x = rng.normal(0, sigma, n + width - 1)
    return np.convolve(x, k, mode="valid")


def make_track(label: str, rng: np.random.Generator, subject: Subject) -> Track:
    """One clip's channels: core motion + mirror + noise + idle lead-in/out."""
    speed = subject.speed * rng.uniform(0.8, 1.25)
    amp = subject.amplitude * rng.uniform(0.85, 1.12)
    if label == "stand up":
        tr = reverse_track(GENERATORS["sit"](rng, speed, amp))
    else:
        tr = GENERATORS[label](rng, speed, amp)
    if rng.random() < 0.5:
        tr = mirror_track(tr)
    lead, tail = _n(rng.uniform(0.2, 0.8)), _n(rng.uniform(0.2, 0.8))
    room = MAX_FRAMES - lead - tail
    if len(tr.t) > room:  # keep every clip within one 5 s sample: play it a bit faster
        tr = retime_track(tr, room)
    tr = pad_track(tr, lead, tail)
    n = len(tr.t)
    for k in tr.ch:
        if k not in ("fwd", "lat", "flight", "heading"):
            tr.ch[k] = tr.ch[k] + _smooth_noise(rng, n, 2.0)
    return tr


def make_subjects(count: int, rng: np.random.Generator) -> list[Subject]:
    """``count`` subjects split 70/15/15 (at least one each) into train/val/test."""
    if count < 3:
        raise ValueError("need at least 3 subjects (one per split)")
    n_val = n_test = max(1, round(0.15 * count))
    splits = ["train"] * (count - n_val - n_test) + ["val"] * n_val + ["test"] * n_test
    subjects = []
    for i in range(count):
        betas = np.zeros(16, dtype=np.float32)
        betas[:10] = rng.normal(0, 1.0, 10)
        subjects.append(
            Subject(
                index=i,
                betas=betas,
                gender=str(rng.choice(["male", "female"])),
                speed=float(rng.uniform(0.85, 1.15)),
                amplitude=float(rng.uniform(0.9, 1.1)),
                split=splits[i],
            )
        )
    return subjects


OUTPUT_NAMES = ("labels.json", "train.json", "val.json", "test.json", "subjects.json", "motions")


def adopt_output(path: Path, entries: set[str]) -> set[str]:
    """The entries of a folder without a marker that an earlier ``stmt synth`` wrote
    (:func:`stmt.fileio.check_folder`): its names, when ``labels.json`` lists synthetic
    classes only."""
    try:
        labels = json.loads(read_text(path / "labels.json", "labels", limits.MAX_CONFIG_BYTES))
    except (InputError, ValueError):
        return set()
    if not (isinstance(labels, list) and labels and all(c in SYNTH_CLASSES for c in labels)):
        return set()
    return entries & set(OUTPUT_NAMES)


def check_options(per_class: int, seed: int, subjects: int, classes: list[str] | None) -> None:
    """The ranges of :func:`generate`'s arguments, checked before anything is allocated
    (one InputError naming the option)."""
    limits.whole_number("per-class", per_class, 1, MAX_PER_CLASS)
    limits.whole_number("seed", seed, 0, 2**32 - 1)
    limits.whole_number("subjects", subjects, 3, MAX_SUBJECTS)
    for c in classes or []:
        if c not in SYNTH_CLASSES:
            raise InputError(None, f"unknown class {c!r}; choose from {', '.join(SYNTH_CLASSES)}")
    twice = sorted({c for c in classes or [] if classes.count(c) > 1})
    if twice:
        raise InputError(None, f"--classes names {', '.join(twice)} more than once")


MAX_PER_CLASS = 100_000
MAX_SUBJECTS = 10_000


def generate(
    out: str | Path,
    per_class: int = 200,
    seed: int = 0,
    subjects: int = 20,
    classes: list[str] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Write the synthetic dataset under ``out`` and return a summary.

    Layout::

        out/labels.json                      class names (index = label)
        out/{train,val,test}.json            BABEL-format annotations
        out/subjects.json                    subject -> split, gender, betas
        out/motions/S003/walk_00012.npz       AMASS SMPL+H npz, 30 fps

    A new ``out`` is built as a temporary sibling and renamed into place when complete.
    An existing one must be stmt's (:mod:`stmt.fileio`: its marker, or an earlier
    ``stmt synth``'s files), else InputError unless ``overwrite``; there every file is
    written atomically, clips with the same name replaced (generation is deterministic,
    so the content is the same) and nothing else touched.
    """
    check_options(per_class, seed, subjects, classes)
    classes = list(classes or SYNTH_CLASSES)
    with new_folder(out, "stmt synth", overwrite, adopt_output) as folder:
        folder.own(*OUTPUT_NAMES)
        return _generate(folder.path, per_class, seed, subjects, classes, progress, tqdm)


def _generate(out: Path, per_class, seed, subjects, classes, progress, tqdm) -> dict:
    rng = np.random.default_rng(seed)
    people = make_subjects(subjects, rng)
    ann: dict[str, dict] = {"train": {}, "val": {}, "test": {}}
    jobs = [(label, i) for label in classes for i in range(per_class)]
    for n, (label, i) in enumerate(tqdm(jobs, desc="synth", unit="clip", disable=not progress)):
        crng = np.random.default_rng([seed, SYNTH_CLASSES.index(label), i])
        subject = people[int(crng.integers(len(people)))]
        tr = make_track(label, crng, subject)
        heading = crng.uniform(0, 360)
        pos = crng.uniform(-2, 2, 2)
        poses, trans, _ = track_to_amass(tr, heading, pos, label in _IN_PLACE_ANCHOR)
        rel = f"motions/S{subject.index:03d}/{label.replace(' ', '_')}_{i:05d}.npz"
        _write_npz(out / rel, poses, trans, subject)
        dur = len(poses) / FPS
        babel_id = str(n)
        seg = {
            "act_cat": [label],
            "proc_label": label,
            "raw_label": label,
            "seg_id": f"{babel_id}-0",
            "start_t": 0.0,
            "end_t": round(dur, 4),
        }
        ann[subject.split][babel_id] = {
            "babel_sid": n + 1,
            "url": "",
            "feat_p": f"synthetic/{rel}",
            "dur": round(dur, 4),
            "split": subject.split,
            "subject": f"S{subject.index:03d}",
            "seq_ann": {"labels": [dict(seg)], "mul_act": False},
            "frame_ann": {"labels": [seg], "mul_act": False},
        }
    for split, data in ann.items():
        _write_json(out / f"{split}.json", data)
    _write_json(out / "labels.json", classes)
    _write_json(
        out / "subjects.json",
        {
            f"S{p.index:03d}": {
                "split": p.split,
                "gender": p.gender,
                "betas": [round(float(b), 4) for b in p.betas],
            }
            for p in people
        },
    )
    return {
        "clips": len(jobs),
        "classes": len(classes),
        "subjects": len(people),
        "per_split": {k: len(v) for k, v in ann.items()},
    }


def _write_npz(path: Path, poses: np.ndarray, trans: np.ndarray, subject: Subject) -> None:
    atomic_savez(
        path,
        poses=poses,
        trans=trans,
        betas=subject.betas.astype(np.float64),
        gender=np.array(subject.gender),
        mocap_framerate=np.array(FPS),
        dmpls=np.zeros((len(poses), 8), dtype=np.float32),
    )


def _write_json(path: Path, data) -> None:
    atomic_text(path, json.dumps(data, indent=1))
