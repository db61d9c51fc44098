"""BABEL annotations over AMASS: label sets, annotation reading, samples, KIT split.

Label sets (:func:`stmt.data.registry.label_set` lists every dataset's):

- ``babel120``: the first 120 categories of BABEL's ``action_label_2_idx`` ordering
  (``BABEL_CATEGORIES`` below, copied from the published ordering; index = label).
- ``babel60``: its first 60.
- ``kit``: BABEL-60 without ``sideways movement``, ``dance`` and ``stumble``. The
  STMT paper removes a fourth category, ``balance``, but in the published ordering
  ``balance`` is category 60, i.e. not one of the first 60, so the set has 57
  classes, not the paper's 56 (see datasets/kit/README.md).
- ``synthetic`` (``stmt synth``'s classes) is read from BABEL-format annotations too;
  ``realmix``'s files come from no annotations (:mod:`stmt.data.realmix`).

Samples (BABEL's own action-recognition protocol): every segment of a
sequence's dense ``frame_ann`` (or its ``seq_ann`` when ``frame_ann`` is null)
is cut into chunks of at most 5 s; a chunk gives one sample per category of the
segment (``act_cat``) that is in the label set. Chunks shorter than
``MIN_CHUNK_S`` are dropped.

``feat_p`` (e.g. ``"CMU/CMU/01/01_01_poses.npz"``) is looked up under the AMASS
root as given, then with its first one or two folders removed, so both
``AMASS/CMU/01/01_01_poses.npz`` and ``AMASS/CMU/CMU/01/...`` layouts work
(:func:`resolve_feat_p`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from stmt import limits
from stmt.data.jobs import Segment, SequenceJob
from stmt.errors import InputError
from stmt.fileio import read_text

# BABEL's action_label_2_idx ordering, first 120 categories.
BABEL_CATEGORIES: list[str] = [
    "walk", "stand", "hand movements", "turn", "interact with/use object", "arm movements",
    "t pose", "step", "backwards movement", "raising body part", "look", "touch object",
    "leg movements", "forward movement", "circular movement", "stretch", "jump",
    "touching body part", "sit", "place something", "take/pick something up", "run", "bend",
    "throw", "foot movements", "a pose", "stand up", "lowering body part",
    "sideways movement", "move up/down incline", "action with ball", "kick", "gesture",
    "head movements", "jog", "grasp object", "waist movements", "lift something",
    "knee movement", "wave", "move something", "swing body part", "catch", "dance", "lean",
    "greet", "poses", "touching face", "sports move", "exercise/training",
    "clean something", "punch", "squat", "scratch", "hop", "play sport", "stumble",
    "crossing limbs", "perform", "martial art",
    # 60..119
    "balance", "kneel", "shake", "grab body part", "clap", "crouch", "spin",
    "upper body movements", "knock", "adjust", "crawl", "twist",
    "move back to original position", "bow", "hit", "touch ground", "shoulder movements",
    "telephone call", "grab person", "play instrument", "tap", "spread", "skip",
    "rolling movement", "jump rope", "play catch", "drink", "evade", "support", "point",
    "side to side movement", "stop", "protect", "wrist movements", "stances", "wait",
    "shuffle", "lunge", "communicate (vocalise)", "jumping jacks", "rub", "dribble", "swim",
    "sneak", "to lower a body part", "misc. abstract action", "mix", "limp", "sway", "slide",
    "cartwheel", "press something", "shrug", "open something", "leap", "trip", "golf",
    "move misc. body part", "get injured", "sudden movement",
]  # fmt: skip
KIT_REMOVED = ("sideways movement", "dance", "stumble", "balance")
CHUNK_S = 5.0
MIN_CHUNK_S = 0.25
KIT_SPLIT = (0.8, 0.1, 0.1)  # train / val / test fractions of KIT sequences


def load_annotations(folder: str | Path) -> dict[str, dict]:
    """BABEL JSON files of ``folder`` by split: train.json, val.json and, when
    present, test.json (BABEL's public test.json has no labels; it is read anyway)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "expected a folder with BABEL train.json / val.json")
    out = {}
    for split in ("train", "val", "test"):
        f = folder / f"{split}.json"
        if os.path.lexists(f):  # a regular file of bounded size (stmt.fileio), else one line
            text = read_text(f, "BABEL annotations (JSON)", limits.MAX_ANNOTATION_BYTES)
            try:
                out[split] = json.loads(text)
            except (ValueError, RecursionError) as err:
                raise InputError(f, f"not valid JSON ({err})") from None
            if not isinstance(out[split], dict):
                raise InputError(f, "expected a JSON object of BABEL sequences by id")
    if "train" not in out and "val" not in out:
        raise InputError(folder, "found neither train.json nor val.json (BABEL annotations)")
    return out


def resolve_feat_p(feat_p: str, root: str | Path) -> Path:
    """The AMASS file ``feat_p`` names, under ``root``.

    Tries ``root/feat_p``, then with the first folder of ``feat_p`` removed, then
    the first two (BABEL writes ``"CMU/CMU/01/01_01_poses.npz"``; AMASS unpacks to
    ``CMU/01/...``). Returns the first that exists, else ``root/feat_p`` minus its
    first folder (the usual layout, for the error message).
    """
    root = Path(root)
    parts = Path(feat_p.replace("\\", "/")).parts
    candidates = [root.joinpath(*parts[i:]) for i in range(min(3, len(parts)))]
    for c in candidates:
        if c.is_file():
            return c
    return candidates[1] if len(candidates) > 1 else candidates[0]


def subject_of(feat_p: str) -> str:
    """AMASS subject of a ``feat_p``: its sub-dataset and subject folder, e.g. "CMU/01"."""
    parts = Path(feat_p.replace("\\", "/")).parts[:-1]
    if len(parts) >= 2 and parts[0] == parts[1]:
        parts = parts[1:]  # "CMU/CMU/01" -> "CMU/01"
    return "/".join(parts[-2:]) if parts else ""


def kit_split(feat_p: str) -> str:
    """Deterministic KIT split of a sequence: sha1 of its path from the KIT folder on
    (e.g. "KIT/3/walking_medium01_poses.npz") mapped to [0, 1): < 0.8 train,
    < 0.9 val, else test."""
    parts = Path(feat_p.replace("\\", "/")).parts
    i = max((k for k, p in enumerate(parts) if p.upper() == "KIT"), default=0)
    key = "/".join(parts[i:])
    u = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 16**8
    if u < KIT_SPLIT[0]:
        return "train"
    return "val" if u < KIT_SPLIT[0] + KIT_SPLIT[1] else "test"


def is_kit(feat_p: str) -> bool:
    return any(p.upper() == "KIT" for p in Path(feat_p.replace("\\", "/")).parts[:-1])


def segments_of(seq: dict, class_index: dict[str, int], chunk_s: float = CHUNK_S) -> list[Segment]:
    """Samples of one BABEL sequence entry (see the module docstring)."""
    dur = float(seq.get("dur") or 0.0)
    ann = seq.get("frame_ann") or seq.get("seq_ann") or {}
    whole = not seq.get("frame_ann")
    out = []
    for lab in ann.get("labels") or []:
        cats = [c for c in dict.fromkeys(lab.get("act_cat") or []) if c in class_index]
        if not cats:
            continue
        s = 0.0 if whole else float(lab.get("start_t", 0.0))
        e = dur if whole else float(lab.get("end_t", dur))
        s, e = min(s, e), max(s, e)
        if dur > 0:
            e = min(e, dur)
        n = max(1, math.ceil((e - s) / chunk_s - 1e-9))
        for k in range(n):
            cs, ce = s + k * chunk_s, min(e, s + (k + 1) * chunk_s)
            if ce - cs < MIN_CHUNK_S:
                continue
            out.extend(Segment(class_index[c], round(cs, 4), round(ce, 4)) for c in cats)
    return out


def sequence_jobs(
    classes: list[str],
    annotations: dict[str, dict],
    data_root: str | Path,
    chunk_s: float = CHUNK_S,
    kit: bool = False,
) -> list[SequenceJob]:
    """The files to pose for a label set ``classes`` and their samples, in a stable order.

    Split: the annotation file's split (a ``"split"`` field in an entry wins); with
    ``kit``, :func:`kit_split` over the KIT sequences of all annotation files. Subject:
    an entry's ``"subject"`` field, else :func:`subject_of`. Sequences without a sample
    in the label set are left out.
    """
    index = {c: i for i, c in enumerate(classes)}
    jobs: dict[str, SequenceJob] = {}
    for file_split in ("train", "val", "test"):
        for seq in (annotations.get(file_split) or {}).values():
            feat_p = seq.get("feat_p")
            if not isinstance(feat_p, str):
                continue
            if kit:
                if not is_kit(feat_p):
                    continue
                split = kit_split(feat_p)
            else:
                split = str(seq.get("split") or file_split)
            segs = segments_of(seq, index, chunk_s)
            if not segs:
                continue
            if feat_p in jobs:  # the same file listed twice: keep the first split
                jobs[feat_p].segments.extend(segs)
                continue
            jobs[feat_p] = SequenceJob(
                key=feat_p,
                path=resolve_feat_p(feat_p, data_root),
                split=split,
                subject=str(seq.get("subject") or subject_of(feat_p)),
                segments=segs,
            )
    return [jobs[k] for k in sorted(jobs)]
