"""realmix: free recorded MoCap labelled with BABEL-60 category names.

Sources (found under ``stmt prepare --data DIR`` by their file names, so DIR may be
a folder holding both clones or either clone itself; see datasets/realmix/README.md):

- Bandai-Namco Research Motion Dataset 1+2: ``dataset-{1,2}_<content>_<style>_<take>.bvh``
  (30 fps). Labels from the content (:data:`BANDAI_LABELS`). No performer ids,
  so the split is by style (:data:`BANDAI_HELD_OUT`): an unseen style is tested.
- HDM05 cut clips: ``HDM_<performer>_<class>_<nnn>_120.amc`` (120 fps) with
  ``HDM_<performer>.asf`` beside. Labels from the class (:data:`HDM05_LABELS`);
  split by the ``train/`` or ``test/`` folder the clip lies in (performers bd,
  bk, dg train; mm, tr test), by :data:`HDM05_PERFORMER_SPLIT` when neither.
- Kinder-Gator (Kinect v1 joint positions, ~30 fps; 10 children aged 5-9 and 10
  adults, 58 actions each): ``{Adults,Children}/POSE-p<id>_<n>-<Action>-<time>.csv``.
  Labels from the action (:data:`KINDERGATOR_LABELS`), split by performer
  (:data:`KINDERGATOR_SPLIT`: two children and two adults test, one of each val).
- UTD-MHAD (Kinect v1 skeletons in MATLAB files, 30 fps; 8 people, 27 actions, 4
  takes each): ``a<action>_s<subject>_t<take>_skeleton.mat``. Labels from the action
  number (:data:`UTDMHAD_LABELS`: sit, stand up and squat labelled, its other shared
  classes unlabelled, 17 actions none of the classes names as other actions), split by
  person (:data:`UTDMHAD_SPLIT`).
- ReActIdle (BVH, 24 fps, a Blender metarig without hand joints; MIT): idle standing of
  15 people, ``{acted,genuine}/<id>_<kind>.bvh``, every file "stand", split by person
  (:data:`REACTIDLE_SPLIT`); the takes are long (40-140 s): a training clip is a window.
- Optionally the ``stmt synth`` output (``--synthetic DIR``): only the clips of
  :data:`SYNTH_USED`, the classes the recorded data lacks (and punch, of which
  Bandai has two clips), in the synthetic set's own subject split.

Each file is one sample (a whole clip is one action). Content mapped to ``None``
is unlabelled: its sample has label :data:`stmt.data.cache.UNLABELLED` (-1),
which the classifier never sees and the pretrainer uses
(``STMTDataModule(with_unlabelled=True)``). Content mapped to :data:`OTHER` is an
action none of the classes names (a pointing gesture, lying down): its sample has
label :data:`stmt.data.cache.OTHER_ACTION` (-2), kept for the pretrainer and for
learning and measuring "unknown" (``STMTDataModule(with_other=True)``). Labelled Bandai training clips are
capped at :data:`BANDAI_TRAIN_CAP` per label (:func:`spread_pick`); the clips
beyond the cap stay in the cache unlabelled. Files whose content or class is in
neither table are dropped.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from stmt.data.babel import BABEL_CATEGORIES, load_annotations, resolve_feat_p, segments_of
from stmt.data.cache import OTHER_ACTION, UNLABELLED
from stmt.data.jobs import Segment, SequenceJob
from stmt.data.synth import SYNTH_CLASSES
from stmt.errors import InputError

#: Table value of an action outside every class (an "unknown" example).
OTHER = "(other action)"

# Bandai content -> BABEL-60 category (None: unlabelled, pretraining only; OTHER: an
# action outside the classes).
BANDAI_LABELS: dict[str, str | None] = {
    "walk": "walk",
    "walk-back": "walk",
    "walk-left": "walk",
    "walk-right": "walk",
    # walking while turning is walking: as "turn" it drew every curved walk and every
    # jog in a circle of the sources it never saw (HDM05's circle jogs, cross-source)
    "walk-turn-left": "walk",
    "walk-turn-right": "walk",
    "run": "run",
    "dash": "run",
    "bow": "bend",
    "bye": "wave",
    "byebye": "wave",
    "wave-both-hands": "wave",
    "wave-left-hand": "wave",
    "wave-right-hand": "wave",
    "raise-up-both-hands": "raising body part",
    "raise-up-left-hand": "raising body part",
    "raise-up-right-hand": "raising body part",
    "kick": "kick",
    "punch": "punch",
    "guide": OTHER,
    "call": OTHER,
    "respond": OTHER,
    "slash": OTHER,
    "dance-long": "dance",
    "dance-short": "dance",
}

# HDM05 cut-clip class -> BABEL-60 category (None: unlabelled, pretraining only).
HDM05_LABELS: dict[str, str | None] = {
    "depositFloorR": "bend",
    "elbowToKnee1RepsLelbowStart": "touching body part",
    "grabHighR": "raising body part",
    # a hop on both feet is a jump (BABEL's "hop" is mostly on one foot): the only
    # optical-mocap jumps of realmix, where Kinect takes and synthetic clips were all
    "hopBothLegs1hops": "jump",
    "jogLeftCircle4StepsRstart": "run",
    "kickLFront1Reps": "kick",
    "rotateArmsBothBackward1Reps": "circular movement",
    "sneak2StepsLStart": "walk",
    "squat1Reps": "squat",
    "throwBasketball": "throw",
    "lieDownFloor": OTHER,  # BABEL-60 has no lie class
}

# Kinder-Gator action -> BABEL-60 category (OTHER: an action outside the classes). Walking
# and running are in place (no travel): kept as walk and run, as files with the root motion
# taken out are.
KINDERGATOR_LABELS: dict[str, str | None] = {
    "Raise-your-hand": "raising body part",
    "Raise-your-other-hand": "raising body part",
    "Raise-your-arm-to-one-side": "raising body part",
    "Raise-your-arm-to-the-other-side": "raising body part",
    "Wave-your-hand": "wave",
    "Wave-your-other-hand": "wave",
    "Bow": "bend",
    "Touch-your-toes": "bend",
    "Jump": "jump",
    "Jump-as-high-as-you-can": "jump",
    "Do-two-jumping-jacks": "jump",
    "Kick-a-ball": "kick",
    "Kick-a-ball-as-far-as-you-can": "kick",
    "Kick-a-ball-with-the-other-leg": "kick",
    "Kick-a-ball-as-far-as-you-can-with-the-other-leg": "kick",
    "Throw-a-ball": "throw",
    "Throw-a-ball-as-far-as-you-can": "throw",
    "Throw-a-ball-with-your-other-arm": "throw",
    "Throw-a-ball-as-far-as-you-can-with-the-other-arm": "throw",
    "Punch": "punch",
    "Make-the-letter-T": "t pose",
    "Walk-in-place": "walk",
    "Walk-in-place-as-fast-as-you-can": "walk",
    "Run-in-place": "run",
    "Run-in-place-as-fast-as-you-can": "run",
    **dict.fromkeys(
        [
            "Bend-your-knee-while-raising-your-leg", "Bend-your-other-knee-while-raising-your-leg",
            "Climb-and-imaginary-ladder", "Do-a-forward-lunge", "Draw-a-circle", "Draw-a-square",
            "Draw-a-triangle", "Draw-the-letter-A", "Draw-the-letter-C", "Draw-the-letter-K",
            "Draw-the-letter-M", "Draw-the-letter-X", "Fly-like-a-bird", "Fly-like-an-airplane",
            "Lift-your-leg-to-one-side", "Lift-your-leg-to-the-other-side", "Make-the-letter-A",
            "Make-the-letter-C", "Make-the-letter-K", "Make-the-letter-M", "Make-the-letter-P",
            "Make-the-letter-X", "Make-the-letter-Y", "Point-at-the-camera",
            "Push-an-imaginary-button-in-front-of-you",
            "Put-your-hands-on-your-hips-and-lean-to-the-other-side",
            "Put-your-hands-on-your-hips-and-lean-to-the-side",
            "Put-your-hands-on-your-hips-and-twist", "Signal-someone-to-come-here",
            "Signal-someone-to-stop", "Swim",
            "Swipe-across-an-imaginary-screen-in-front-of-you-from-left-to-right",
            "Swipe-across-an-imaginary-screen-in-front-of-you-from-right-to-left",
        ],
        OTHER,
    ),
}  # fmt: skip
# UTD-MHAD action number -> BABEL-60 category (jogging and walking are in place, as
# Kinder-Gator's; basketball shooting and pick-up-and-throw, throws of a sort, None):
# what benchmarks/eval_utd_mhad.py scores a checkpoint on.
UTDMHAD_ACTIONS = (
    "right arm swipe to the left", "right arm swipe to the right", "right hand wave",
    "two hand front clap", "right arm throw", "cross arms in the chest", "basketball shooting",
    "draw x", "draw circle (clockwise)", "draw circle (counter clockwise)", "draw triangle",
    "bowling", "front boxing", "baseball swing", "tennis forehand swing", "arm curl",
    "tennis serve", "two hand push", "knock on door", "hand catch", "pick up and throw",
    "jogging in place", "walking in place", "sit to stand", "stand to sit", "forward lunge",
    "squat",
)  # fmt: skip
UTDMHAD_CATEGORY: dict[int, str | None] = {
    **dict.fromkeys(range(1, 28), OTHER),
    3: "wave", 5: "throw", 13: "punch", 22: "run", 23: "walk", 24: "stand up", 25: "sit",
    27: "squat", 7: None, 21: None,
}  # fmt: skip
# Trained on as labelled: the classes the other recorded sources lack (sit and stand up:
# synthetic only; squat: HDM05 only). Its takes of the classes they cover are unlabelled:
# trained on them too, Bandai's held-out waves, classified whole, became "raising body
# part" (91.0 vs 98.6 % right; datasets/realmix/README.md).
UTDMHAD_LABELLED = (24, 25, 27)
UTDMHAD_LABELS: dict[int, str | None] = {
    a: c if c in (None, OTHER) or a in UTDMHAD_LABELLED else None
    for a, c in UTDMHAD_CATEGORY.items()
}
# UTD-MHAD people held out: 6 and 8 test, 4 val; 1, 2, 3, 5 and 7 train.
UTDMHAD_SPLIT = {"6": "test", "8": "test", "4": "val"}

# Kinder-Gator performers held out: children 595 (5 y) and 103 (8 y), adults 577 and 921
# (left-handed) test; child 342 and adult 934 val; the other 14 train.
KINDERGATOR_SPLIT = {"595": "test", "103": "test", "577": "test", "921": "test",
                     "342": "val", "934": "val"}  # fmt: skip

# ReActIdle people held out (each acted and genuine take of one person goes together).
REACTIDLE_SPLIT = {"002": "test", "011": "test", "008": "val"}

# Synthetic classes mixed in: those the recorded data lacks, and punch (2 Bandai clips).
SYNTH_USED = ("stand", "t pose", "jump", "sit", "stand up", "punch")

# Bandai styles held out (by sub-dataset); every other style is train.
BANDAI_HELD_OUT: dict[str, dict[str, str]] = {
    "dataset-1": {"proud": "test", "sad": "val"},
    "dataset-2": {"youthful": "test", "feminine": "val"},
}
HDM05_PERFORMER_SPLIT = {"bd": "train", "bk": "train", "dg": "train", "mm": "test", "tr": "test"}
# Bandai's other actions of one style only (dataset-1 "normal"): held out by content
# instead, so that the "unknown" rule is measured on actions it was not chosen on.
OTHER_HELD_OUT = {"call": "test", "slash": "test", "respond": "val"}
BANDAI_TRAIN_CAP = 150  # labelled Bandai training clips per label

BANDAI_RE = re.compile(r"^(dataset-[12])_([^_]+)_([^_]+)_(\d+)\.bvh$", re.IGNORECASE)
HDM05_RE = re.compile(r"^HDM_([A-Za-z]+)_([A-Za-z0-9]+)_(\d+)_120\.amc$")
KINDERGATOR_RE = re.compile(r"^POSE-p(\d+)_(\d+)-(.+?)-?-(\d+)\.csv$")
REACTIDLE_RE = re.compile(r"^(\d{3})_(acted|genuine)\.bvh$")
UTDMHAD_RE = re.compile(r"^a(\d+)_s(\d+)_t(\d+)_skeleton\.mat$")
SOURCES = ("bandai", "hdm05", "kindergator", "utdmhad", "reactidle", "synthetic")
RECORDED = ("bandai", "hdm05", "kindergator", "utdmhad", "reactidle")


def realmix_classes() -> list[str]:
    """Class names (index = label): every category the tables map to, in BABEL order."""
    used = set(BANDAI_LABELS.values()) | set(HDM05_LABELS.values()) | set(SYNTH_USED)
    used -= {None, OTHER}
    return [c for c in BABEL_CATEGORIES[:60] if c in used]


@dataclass
class Clip:
    """One file of a source, with what the tables make of it."""

    source: str  # "bandai" | "hdm05" | "synthetic"
    key: str  # stable id in the cache: "<source>/<path from the source root>"
    path: Path
    content: str  # Bandai content, HDM05 class or synthetic label
    group: str  # Bandai "<dataset>/<style>", HDM05 performer, synthetic subject
    take: int
    split: str
    label: str | None  # category name; None: unlabelled; OTHER: outside the classes
    # "labelled" | "unlabelled" | "other" (an action outside the classes) | "capped"
    # (unlabelled beyond the cap)
    status: str = "labelled"


@dataclass
class RealmixListing:
    """Everything ``stmt prepare --dataset realmix`` will pose, before posing."""

    clips: list[Clip]
    roots: dict[str, list[str]]  # source -> folders its files were found in
    dropped: Counter = field(default_factory=Counter)  # (source, content) -> files
    classes: list[str] = field(default_factory=realmix_classes)

    def jobs(self) -> list[SequenceJob]:
        """One job per kept clip, one whole-clip segment each (label -1 when unlabelled,
        -2 for an action outside the classes)."""
        index = {c: i for i, c in enumerate(self.classes)}
        fixed = {"other": OTHER_ACTION, "unlabelled": UNLABELLED, "capped": UNLABELLED}
        out = []
        for c in self.clips:
            label = fixed[c.status] if c.status in fixed else index[c.label]
            out.append(
                SequenceJob(
                    key=c.key,
                    path=c.path,
                    split=c.split,
                    subject=f"{c.source}/{c.group}",
                    segments=[Segment(label, 0.0, math.inf)],
                )
            )
        return out

    def counts(self) -> dict:
        """Clip counts: per source, split and status; labelled per label and split; dropped."""
        by_status: Counter = Counter((c.source, c.split, c.status) for c in self.clips)
        by_label: Counter = Counter(
            (c.label, c.split) for c in self.clips if c.status == "labelled"
        )
        return {
            "sources": {
                s: {
                    sp: {
                        st: by_status[(s, sp, st)]
                        for st in ("labelled", "other", "unlabelled", "capped")
                    }
                    for sp in ("train", "val", "test")
                }
                for s in SOURCES
                if s in self.roots
            },
            "labelled": {
                c: {sp: by_label[(c, sp)] for sp in ("train", "val", "test")} for c in self.classes
            },
            "dropped": {f"{s}/{k}": n for (s, k), n in sorted(self.dropped.items())},
            "missing_sources": [s for s in RECORDED if s not in self.roots],
        }

    def summary(self) -> str:
        """The counts as a readable table (printed by ``stmt prepare``)."""
        cnt = self.counts()
        lines = [
            "realmix clips (labelled / other actions / unlabelled / beyond the cap -> unlabelled):"
        ]
        for s, splits in cnt["sources"].items():
            cells = ", ".join(
                f"{sp} {v['labelled']}/{v['other']}/{v['unlabelled']}/{v['capped']}"
                for sp, v in splits.items()
            )
            lines.append(f"  {s:<11} {cells}   ({'; '.join(self.roots[s])})")
        for s in cnt["missing_sources"]:
            lines.append(f"  {s:<11} not found under --data (left out)")
        lines.append("labelled clips per class (train / val / test):")
        for c, v in cnt["labelled"].items():
            lines.append(f"  {c:<20} {v['train']:>4} {v['val']:>4} {v['test']:>4}")
        tot = {sp: sum(v[sp] for v in cnt["labelled"].values()) for sp in ("train", "val", "test")}
        lines.append(f"  {'total':<20} {tot['train']:>4} {tot['val']:>4} {tot['test']:>4}")
        if cnt["dropped"]:
            shown = ", ".join(f"{k} {n}" for k, n in cnt["dropped"].items())
            lines.append(
                f"dropped (content in no table, or a synthetic class not mixed in): {shown}"
            )
        return "\n".join(lines)


def _walk_files(root: Path):
    """Every file under ``root`` (hidden folders such as .git skipped), sorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _bandai_clip(path: Path, m: re.Match) -> Clip | None:
    ds, content, style, take = m.group(1).lower(), m.group(2), m.group(3), int(m.group(4))
    if content not in BANDAI_LABELS:
        return None
    return Clip(
        source="bandai",
        key=f"bandai/{path.name}",
        path=path,
        content=content,
        group=f"{ds}/{style}",
        take=take,
        split=OTHER_HELD_OUT.get(content) or BANDAI_HELD_OUT.get(ds, {}).get(style, "train"),
        label=BANDAI_LABELS[content],
    )


def _hdm05_clip(path: Path, m: re.Match) -> tuple[Clip | None, Path]:
    """The clip (None when its class is in no table) and the folder above its split folder."""
    performer, cls, take = m.group(1), m.group(2), int(m.group(3))
    parts = path.parts
    at = next(
        (i for i in range(len(parts) - 2, -1, -1) if parts[i].lower() in ("train", "test")), None
    )
    root = path.parent if at is None else Path(*parts[:at])
    if cls not in HDM05_LABELS:
        return None, root
    split = (
        parts[at].lower()
        if at is not None
        else HDM05_PERFORMER_SPLIT.get(performer.lower(), "train")
    )
    rel = "/".join(parts[at:]) if at is not None else path.name  # independent of --data
    clip = Clip(
        source="hdm05",
        key=f"hdm05/{rel}",
        path=path,
        content=cls,
        group=performer,
        take=take,
        split=split,
        label=HDM05_LABELS[cls],
    )
    return clip, root


def _kindergator_clip(path: Path, m: re.Match) -> Clip | None:
    pid, take, action = m.group(1), int(m.group(2)), m.group(3)
    if action not in KINDERGATOR_LABELS:
        return None
    group = path.parent.name  # Adults / Children
    return Clip(
        source="kindergator",
        key=f"kindergator/{group}/{path.name}",
        path=path,
        content=action,
        group=f"p{pid}",
        take=take,
        split=KINDERGATOR_SPLIT.get(pid, "train"),
        label=KINDERGATOR_LABELS[action],
    )


def _utdmhad_clip(path: Path, m: re.Match) -> Clip | None:
    action, person, take = int(m.group(1)), str(int(m.group(2))), int(m.group(3))
    if action not in UTDMHAD_LABELS:
        return None
    return Clip(
        source="utdmhad",
        key=f"utdmhad/{path.name}",
        path=path,
        content=UTDMHAD_ACTIONS[action - 1],
        group=f"s{person}",
        take=take,
        split=UTDMHAD_SPLIT.get(person, "train"),
        label=UTDMHAD_LABELS[action],
    )


def _reactidle_clip(path: Path, m: re.Match) -> Clip | None:
    person, kind = m.group(1), m.group(2)
    if path.parent.name != kind:  # acted/000_acted.bvh: the folder names the kind too
        return None
    return Clip(
        source="reactidle",
        key=f"reactidle/{kind}/{path.name}",
        path=path,
        content=f"idle ({kind})",
        group=person,
        take=0,
        split=REACTIDLE_SPLIT.get(person, "train"),
        label="stand",
    )


def find_real_clips(data: str | Path) -> tuple[list[Clip], dict[str, list[str]], Counter]:
    """The files of every recorded source under ``data``, recognised by their names.

    Returns the clips (sorted by key), the folders each source was found in, and the
    dropped files per (source, content); a file found twice (same key) is kept once.
    ``.amc.mat`` and other files are ignored.
    """
    data = Path(data)
    clips: list[Clip] = []
    roots: dict[str, set[str]] = {}
    dropped: Counter = Counter()
    for path in _walk_files(data):
        m = BANDAI_RE.match(path.name)
        if m:
            clip = _bandai_clip(path, m)
            roots.setdefault("bandai", set()).add(str(path.parent))
            if clip is None:
                dropped[("bandai", m.group(2))] += 1
            else:
                clips.append(clip)
            continue
        m = HDM05_RE.match(path.name)
        if m:
            clip, root = _hdm05_clip(path, m)
            roots.setdefault("hdm05", set()).add(str(root))
            if clip is None:
                dropped[("hdm05", m.group(2))] += 1
            else:
                clips.append(clip)
            continue
        m = REACTIDLE_RE.match(path.name)
        if m and (clip := _reactidle_clip(path, m)) is not None:
            roots.setdefault("reactidle", set()).add(str(path.parent.parent))
            clips.append(clip)
            continue
        m = UTDMHAD_RE.match(path.name)
        if m:
            clip = _utdmhad_clip(path, m)
            roots.setdefault("utdmhad", set()).add(str(path.parent))
            if clip is None:
                dropped[("utdmhad", f"action {m.group(1)}")] += 1
            else:
                clips.append(clip)
            continue
        m = KINDERGATOR_RE.match(path.name)
        if m:
            clip = _kindergator_clip(path, m)
            roots.setdefault("kindergator", set()).add(str(path.parent.parent))
            if clip is None:
                dropped[("kindergator", m.group(3))] += 1
            else:
                clips.append(clip)
    unique: dict[str, Clip] = {}
    for c in clips:  # the same file in two copies of a clone: keep the first found
        if c.key in unique:
            dropped[(c.source, "duplicate file")] += 1
        else:
            unique[c.key] = c
    return sorted(unique.values(), key=lambda c: c.key), _summarise_roots(roots), dropped


def _summarise_roots(roots: dict[str, set[str]]) -> dict[str, list[str]]:
    out = {}
    for s, dirs in roots.items():
        dirs_sorted = sorted(dirs)
        out[s] = dirs_sorted if len(dirs_sorted) <= 2 else [os.path.commonpath(dirs_sorted)]
    return out


def spread_pick(items: list[Clip], cap: int) -> list[Clip]:
    """At most ``cap`` of ``items``, spread evenly over groups (styles) and takes.

    Groups take turns (sorted by name), one clip each, until ``cap`` are chosen or
    every group is exhausted; a group that gets q of its n clips (sorted by content,
    then take) keeps those at positions floor((i + 0.5) * n / q). Deterministic.
    """
    if len(items) <= cap:
        return list(items)
    groups: dict[str, list[Clip]] = {}
    for c in sorted(items, key=lambda c: (c.group, c.content, c.take, c.key)):
        groups.setdefault(c.group, []).append(c)
    quota = dict.fromkeys(groups, 0)
    chosen = 0
    while chosen < cap:
        for g, members in groups.items():
            if chosen < cap and quota[g] < len(members):
                quota[g] += 1
                chosen += 1
    out = []
    for g, members in groups.items():
        n, q = len(members), quota[g]
        out.extend(members[int((i + 0.5) * n / q)] for i in range(q))
    return out


def apply_cap(clips: list[Clip], cap: int = BANDAI_TRAIN_CAP) -> None:
    """Mark labelled Bandai train clips beyond ``cap`` per label as "capped" (in place)."""
    by_label: dict[str, list[Clip]] = {}
    for c in clips:
        if c.source == "bandai" and c.split == "train" and c.label not in (None, OTHER):
            by_label.setdefault(c.label, []).append(c)
    for members in by_label.values():
        keep = {c.key for c in spread_pick(members, cap)}
        for c in members:
            c.status = "labelled" if c.key in keep else "capped"
    for c in clips:
        if c.label is None:
            c.status = "unlabelled"
        elif c.label == OTHER:
            c.status = "other"


def synthetic_clips(folder: str | Path) -> tuple[list[Clip], Counter]:
    """The ``stmt synth`` clips of :data:`SYNTH_USED` in ``folder`` (its own split)."""
    folder = Path(folder)
    ann = load_annotations(folder)
    index = {c: i for i, c in enumerate(SYNTH_CLASSES)}
    clips, dropped = [], Counter()
    seen = set()
    for file_split in ("train", "val", "test"):
        for seq in (ann.get(file_split) or {}).values():
            feat_p = seq.get("feat_p")
            segs = segments_of(seq, index) if isinstance(feat_p, str) else []
            if not segs or feat_p in seen:
                continue
            seen.add(feat_p)
            name = SYNTH_CLASSES[segs[0].label]
            if name not in SYNTH_USED:
                dropped[("synthetic", name)] += 1
                continue
            path = resolve_feat_p(feat_p, folder)
            rel = path.relative_to(folder).as_posix() if folder in path.parents else feat_p
            clips.append(
                Clip(
                    source="synthetic",
                    key=f"synthetic/{rel}",
                    path=path,
                    content=name,
                    group=str(seq.get("subject") or ""),
                    take=0,
                    split=str(seq.get("split") or file_split),
                    label=name,
                )
            )
    clips.sort(key=lambda c: c.key)
    return clips, dropped


def list_realmix(
    data: str | Path, synthetic: str | Path | None = None, cap: int = BANDAI_TRAIN_CAP
) -> RealmixListing:
    """Find, label, split and cap every realmix clip (no file is read beyond its name).

    Raises InputError when neither Bandai nor HDM05 files are under ``data``.
    """
    clips, roots, dropped = find_real_clips(data)
    if not clips and not roots:
        raise InputError(
            data,
            "found neither Bandai-Namco BVH files (dataset-1_<content>_<style>_<take>.bvh) "
            "nor HDM05 clips (HDM_<performer>_<class>_<nnn>_120.amc); see "
            "datasets/realmix/README.md",
        )
    if synthetic is not None:
        syn, syn_dropped = synthetic_clips(synthetic)
        clips += syn
        dropped += syn_dropped
        roots["synthetic"] = [str(synthetic)]
    apply_cap(clips, cap)
    return RealmixListing(clips=clips, roots=roots, dropped=dropped)


def write_labels(path: str | Path) -> None:
    """``datasets/realmix/labels.json``: :func:`realmix_classes`, one per line."""
    Path(path).write_text(json.dumps(realmix_classes(), indent=1) + "\n")
