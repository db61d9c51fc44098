"""``stmt classify FILE [FILE ...] --ckpt CKPT``: label the actions in MoCap files.

Each file is read (any format ``stmt inspect`` reads) and labelled the way the
checkpoint was trained (:mod:`stmt.clip`): a file no longer than the longest
training sample (the checkpoint's ``clip_s``) is one whole clip; a longer one,
or any file when ``--window`` is given, is cut into windows of ``--window``
seconds (default: the checkpoint's ``window_s``) every ``--stride`` seconds
that cover the whole sequence (the last window is aligned to the end; a file
shorter than a window is one window), and each window is labelled. The overall
label is the mean of the window probabilities. See :mod:`stmt.inference`.

Output: a table per file (overall top-k, then a timeline of per-window top-1
labels when there is more than one window). With ``--json`` stdout holds only
one JSON document, a list with one object per file that was read::

    [
      {
        "file": "walk.npz",            # the path as given
        "duration_s": 10.0,            # seconds the sequence covers
        "fps": 120.0,                  # the file's own frame rate
        "unknown": false,              # true: none of the classes fits (score below the
        "score": 0.81,                 #   checkpoint's threshold); score = top-1 prob
        "overall": [                   # top-k of the mean window probabilities,
          {"label": "walk", "prob": 0.81},      # sorted by falling prob
          ...
        ],
        "windows": [                   # in time order; their union is [0, duration_s]
          {"start": 0.0, "end": 2.0,   # seconds
           "unknown": false,           # this window's own "unknown"
           "top_k": [{"label": "walk", "prob": 0.93}, ...]},
          ...
        ],
        "warnings": ["..."]            # input that is legal but odd (also printed)
      },
      ...
    ]

Probabilities are softmax outputs (floats in [0, 1]; of the logits divided by
the checkpoint's temperature when it is calibrated); a top-k list sums to at
most 1. **Unknown**: a calibrated checkpoint (``stmt calibrate``) says a file
or window shows none of its actions when its top-1 probability is below its
threshold (one for motion capture, one for joint positions a sensor tracked: Kinect
CSV and MAT files): the table then reads ``unknown (best: LABEL 0.31)``.
``--unknown-threshold P`` sets one threshold for all files, ``0`` turns the rule off. The
windows of several files go through the model together, in batches of exactly
``--batch-size`` windows (the last one filled up with copies), so that a window's
probabilities do not depend on the windows it shares a batch with.

Keeping the predictions: ``--out FILE.json`` writes one JSON document that
also says how they were made::

    {
      "checkpoint": "checkpoints/stmt-tiny-synthetic.ckpt",
      "arch": "stmt_tiny",
      "clip_s": 16.0,                  # files up to this long were whole clips (null: none)
      "window_s": 3.7,                 # the window and stride longer files were cut into
      "stride_s": 1.85,
      "classes": ["walk", ...],        # the checkpoint's class list, in head order
      "top_k": 5,
      "files": [ ...one record per file, as above... ]
    }

``--out FILE.csv`` writes one row per file: ``file, label, prob`` (the overall
top-1), ``unknown`` (true/false), then ``label_2, prob_2, ... label_k, prob_k``,
then ``duration_s`` and ``windows``. ``--out FILE.jsonl`` writes the records of
``--json``, one line per file. Each is written atomically (a temporary file renamed into place);
the path is printed at the end (on stderr with ``--json``, which keeps stdout
for the JSON).

Archives (:mod:`stmt.archive`): ``--workers N`` reads and poses the files in N worker
processes (default: one per core, fewer when memory is short; 0: in this process)
while this process runs the model on their windows, ``--batch-size`` at a time across
files; the output is the same with any number of workers (the files' order, the same
batches; the probabilities to rounding: CPU kernels do not promise bitwise results
across processes). A worker that dies (killed, out of memory) fails the file it held with one
``stmt: error:`` line, the other files complete, the exit status is 2. ``--shard K/N``
classifies the K-th of N consecutive parts of the sorted file list (after folders are
expanded), for one job of a job array; each shard writes its own ``--out``, and the
shards' files joined in order (``cat``) are the file one run over all files writes:
a CSV's header is written by shard 1 only, and ``.jsonl`` has no header.

Folders: a FILE that is a folder of per-frame meshes is one sequence. Any other
folder needs ``--recursive``: then every MoCap file under it (AMASS/mesh
``.npz``, ``.bvh``, ``.amc``; a mesh-sequence folder counts as one) is
classified, in sorted path order.

Takes: an FBX or glTF file with several takes (animation stacks, glTF
``animations``) is classified once per take, each its own entry named
``FILE#TAKE`` (``walk.fbx#Take 001``) in the table, JSON and CSV; ``--take
NAME|INDEX`` keeps one. ``FILE#TAKE`` on the command line names one too.

Errors: a file that cannot be read prints ``stmt: error: <file>: <why>`` on
stderr and is left out of the output; the other files still complete. The
exit status is 0 when every file was labelled, 2 when any file failed (or the
checkpoint could not be loaded).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stmt import limits
from stmt.archive import (
    Failed,
    Workers,
    model_threads_yield,
    parse_shard,
    resolve_workers,
    shard_range,
)
from stmt.commands.options import (
    add_archive_arguments,
    add_body_arguments,
    add_files_argument,
    add_max_frames_argument,
    add_take_argument,
    apply_max_frames,
    joint_map_of,
    take_entries,
)
from stmt.errors import InputError
from stmt.fileio import atomic_text, check_output
from stmt.inference import Classifier, Inputs, resolve_device
from stmt.io.detect import MESH_SUFFIXES, detect_format
from stmt.reading import body_topology

MOCAP_SUFFIXES = (".npz", ".bvh", ".amc", ".csv", ".mat", ".fbx", ".glb", ".gltf", ".vrma")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_files_argument(p)
    p.add_argument("--ckpt", type=Path, required=True, help="trained stmt checkpoint (.ckpt)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE.csv|FILE.json|FILE.jsonl",
        help="also write the predictions to this file; the format follows the extension "
        "(JSON also records checkpoint, window, stride and classes; JSON lines: one record "
        "per file, which shards' files join with cat)",
    )
    p.add_argument(
        "--recursive",
        "-r",
        action="store_true",
        help="a FILE that is a folder (not a mesh-sequence folder): classify every MoCap "
        "file under it",
    )
    p.add_argument("--top-k", type=int, default=5, help="labels to show per window and overall")
    p.add_argument(
        "--window",
        type=float,
        default=None,
        metavar="S",
        help="cut every file into windows of S seconds (default: a file no longer than the "
        "checkpoint's longest training clip is one clip, longer files are cut into windows "
        "of its median training clip)",
    )
    p.add_argument(
        "--stride",
        type=float,
        default=None,
        metavar="S",
        help="seconds between window starts, at most the window (default: half the window)",
    )
    p.add_argument(
        "--json", action="store_true", help="print JSON (schema in `pydoc stmt.commands.classify`)"
    )
    p.add_argument(
        "--unknown-threshold",
        type=float,
        default=None,
        metavar="P",
        help='say "unknown" when the top-1 probability is below P, for every file (default: '
        "the checkpoint's calibrated threshold of the file's kind, if it has one; 0: never)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="windows per model call")
    p.add_argument(
        "--device", default="auto", help="torch device: auto (cuda when there is one), cpu, cuda:0"
    )
    add_body_arguments(p)
    add_max_frames_argument(p)
    add_take_argument(p, "classify")
    add_archive_arguments(p, "classify")


def format_table(pred, show_timeline: bool = True) -> str:
    """The readable report of one :class:`stmt.inference.Prediction`."""
    n = len(pred.windows)
    head = f"{pred.file}  ({pred.duration_s:.2f} s at {pred.fps:g} fps, {n} window{'s' * (n != 1)})"
    lines = [head]
    lines += [f"  warning: {w}" for w in pred.warnings]
    width = max(len(a) for a, _ in pred.overall)
    lines.append(f"  overall: {unknown_text(pred.overall)}" if pred.unknown else "  overall")
    for i, (label, prob) in enumerate(pred.overall, 1):
        lines.append(f"    {i}. {label:<{width}}  {prob:6.3f}")
    if show_timeline and n > 1:
        width = max(len(top[0][0]) for _, _, top in pred.windows)
        lines.append("  timeline (top-1 per window)")
        for start, end, top in pred.windows:
            label, prob = top[0]
            said = unknown_text(top) if pred.is_unknown(top) else f"{label:<{width}}  {prob:6.3f}"
            lines.append(f"    {start:7.2f} - {end:7.2f} s  {said}")
    return "\n".join(lines)


def unknown_text(ranked) -> str:
    """``unknown (best: LABEL 0.310)``: what the table says for an "unknown" file or window."""
    label, prob = ranked[0]
    return f"unknown (best: {label} {prob:.3f})"


def is_mesh_folder(path: Path) -> bool:
    """True when ``path`` is a folder holding per-frame mesh files (one sequence)."""

    return path.is_dir() and any(
        f.is_file() and f.suffix.lower() in MESH_SUFFIXES for f in path.iterdir()
    )


def expand_inputs(
    paths: list[Path], recursive: bool
) -> tuple[list[tuple[Path, str | None]], list[str]]:
    """The sequences to classify: files as given, folders expanded when ``recursive``.

    Returns ``(inputs, errors)``: each input with its format where it was detected
    already (the ``.npz`` and ``.csv`` files a folder holds), an error a one-line message
    for a folder that cannot be used (no ``--recursive``, or no MoCap file under it).
    """

    inputs: list[tuple[Path, str | None]] = []
    errors: list[str] = []
    for path in paths:
        if not path.is_dir() or is_mesh_folder(path):
            inputs.append((path, None))  # a file (or a missing path: the reader reports it)
            continue
        if not recursive:
            errors.append(
                f"{path}: a folder of files, not a mesh sequence; add --recursive to classify "
                "the MoCap files under it"
            )
            continue
        found: list[tuple[Path, str | None]] = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            root_path = Path(root)
            if root_path != path and is_mesh_folder(root_path):
                found.append((root_path, "mesh-folder"))
                dirs.clear()  # a mesh-sequence folder is one sequence
                continue
            for name in sorted(files):
                f = root_path / name
                if f.suffix.lower() not in MOCAP_SUFFIXES:
                    continue
                fmt = None
                if f.suffix.lower() in (".npz", ".csv", ".mat"):
                    try:
                        fmt = detect_format(f)  # AMASS, mesh or joint file, not another table
                    except InputError:
                        continue
                found.append((f, fmt))
        if not found:
            errors.append(f"{path}: no MoCap files under this folder ({', '.join(MOCAP_SUFFIXES)})")
        inputs.extend(found)
    return inputs, errors


def predictions_document(
    clf, window: float, stride: float, clip_s: float | None, top_k: int, records: list
) -> dict:
    """The ``--out FILE.json`` document (schema in the module docstring)."""
    return {
        "checkpoint": str(clf.source),
        "arch": clf.arch,
        "clip_s": None if clip_s is None else float(clip_s),
        "window_s": float(window),
        "stride_s": float(stride),
        "classes": list(clf.class_names),
        "top_k": int(top_k),
        "files": records,
    }


def predictions_csv(records: list[dict], top_k: int, header_row: bool = True) -> str:
    """The ``--out FILE.csv`` text: one row per file (columns in the module docstring),
    after the header row (``header_row``: shards after the first leave it out)."""

    header = ["file", "label", "prob", "unknown"]
    for i in range(2, top_k + 1):
        header += [f"label_{i}", f"prob_{i}"]
    header += ["duration_s", "windows"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header_row:
        writer.writerow(header)
    for r in records:
        row: list = [r["file"]]
        for i, item in enumerate(r["overall"][:top_k]):
            row += [item["label"], f"{item['prob']:.6f}"]
            if i == 0:
                row.append("true" if r["unknown"] else "false")
        row += [""] * (len(header) - 2 - len(row))
        row += [r["duration_s"], len(r["windows"])]
        writer.writerow(row)
    return buf.getvalue()


class WindowBatches:
    """The windows of files through the model in full batches of ``batch_size`` windows,
    across files (of one topology), the last batch of a run filled up with copies of its
    last window: so a window's probabilities are the same whichever windows share its
    batch, and the predictions are the same with any ``--workers``, ``--batch-size`` split
    or ``--shard`` (on the CPUs checked a window's outputs were bitwise the same in any
    full batch, not in batches of other sizes; one CI machine differed in the fifth
    decimal between processes). A file's windows may span two batches; files come out
    whole and in order. At most ``MAX_WAITING`` windows wait (files of a topology rare
    in the run: theirs are run, in a filled-up batch, when more wait)."""

    MAX_WAITING = 8

    def __init__(self, clf, batch_size: int):
        self.clf, self.batch = clf, batch_size
        self.items: list[Inputs] = []  # the files waiting for windows, in order
        self.logits: list[list] = []  # their clips' logits (None: not run yet)
        # (topology, window length) -> (file, clip) to run
        self.queue: dict[tuple[str, int], list[tuple[int, int]]] = {}
        self.done = 0  # files handed back before self.items[0]

    def add(self, item: Inputs) -> list[tuple[Inputs, np.ndarray]]:
        """Queue ``item``'s windows, run the full batches; the files now complete."""
        number = self.done + len(self.items)
        self.items.append(item)
        self.logits.append([None] * len(item.clips))
        for w, k in enumerate(item.clip_scale):
            queue = self.queue.setdefault((item.template.key, int(k)), [])
            queue.append((number, w))
            if len(queue) >= self.batch:
                self._run(queue)
        while sum(map(len, self.queue.values())) > self.MAX_WAITING * self.batch:
            oldest = next(i for i, p in enumerate(self.logits) if None in p)
            self._run(next(q for q in self.queue.values() if q and q[0][0] == oldest + self.done))
        return self._complete()

    def finish(self) -> list[tuple[Inputs, np.ndarray]]:
        """Run what waits (filled-up batches); the remaining files."""
        for queue in self.queue.values():
            while queue:
                self._run(queue)
        return self._complete()

    def _run(self, queue: list[tuple[int, int]]) -> None:
        rows, queue[: self.batch] = queue[: self.batch], []
        item = self.items[rows[0][0] - self.done]
        clips = [self.items[f - self.done].clips[w] for f, w in rows]
        clips += clips[-1:] * (self.batch - len(clips))  # (batch, T, N, 3)
        scale = np.full(len(clips), item.clip_scale[rows[0][1]])
        batch = dataclasses.replace(item, clips=np.stack(clips), scale=scale, mix=None)
        logits = self.clf.forward([batch], self.batch)[0]  # (batch, C) logits
        for (f, w), p in zip(rows, logits):
            self.logits[f - self.done][w] = p

    def _complete(self) -> list[tuple[Inputs, np.ndarray]]:
        out = []
        while self.items and all(p is not None for p in self.logits[0]):
            item, logits = self.items.pop(0), self.logits.pop(0)
            out.append((item, np.stack(logits)))
            self.done += 1
        return out


def main(args: argparse.Namespace) -> int:
    check_options(args)
    shard = parse_shard(args.shard)
    if args.workers != 0:
        model_threads_yield()  # before torch loads (resolve_device imports it)
    device = resolve_device(args.device)  # before anything loads
    joint_map = joint_map_of(args)
    inputs, errors = expand_inputs(list(args.files), args.recursive)
    part = shard_range(len(inputs), shard)
    inputs, take_errors = take_entries(inputs[part.start : part.stop], args.take)  # FILE#TAKE
    clf = Classifier.from_checkpoint(args.ckpt, device=device)
    if args.unknown_threshold is not None:
        # one threshold for every input kind
        clf.unknown_threshold, clf.unknown_thresholds = args.unknown_threshold, {}
    window, stride, whole_clip_s = windows_of(clf, args)
    for message in errors + take_errors:
        print(f"stmt: error: {message}", file=sys.stderr, flush=True)
    workers = resolve_workers(args.workers, len(inputs))
    records, failed = label_files(clf, inputs, args, joint_map, workers)
    failed += len(errors) + len(take_errors)
    if args.json:
        print(json.dumps(records, indent=2))
    # keep what the file held; only a shard whose part of the list is empty writes it empty
    if args.out is not None and not records and (inputs or failed):
        print(f"stmt: error: {args.out}: not written, no file was labelled", file=sys.stderr)
        return 2
    if args.out is not None:
        top_k = min(args.top_k, len(clf.class_names))
        suffix = args.out.suffix.lower()
        if suffix == ".json":
            doc = predictions_document(clf, window, stride, whole_clip_s, top_k, records)
            atomic_text(args.out, json.dumps(doc, indent=2) + "\n")
        elif suffix == ".jsonl":
            atomic_text(args.out, "".join(json.dumps(r) + "\n" for r in records))
        else:
            first = shard is None or shard[0] == 1
            atomic_text(args.out, predictions_csv(records, top_k, header_row=first))
        n = len(records)
        print(
            f"wrote {n} prediction{'s' * (n != 1)} to {args.out}",
            file=sys.stderr if args.json else sys.stdout,
        )
    return 2 if failed else 0


def check_options(args: argparse.Namespace) -> None:
    """Every option checked before a file is read or the checkpoint loaded (one
    InputError line naming it)."""
    apply_max_frames(args)
    if not 1 <= args.top_k <= 10_000:
        raise InputError(None, f"--top-k must be 1 to 10000, got {args.top_k}")
    if not 1 <= args.batch_size <= 65_536:
        raise InputError(None, f"--batch-size must be 1 to 65536, got {args.batch_size}")
    limits.check_window_stride(args)
    if args.out is not None:
        if args.out.suffix.lower() not in (".csv", ".json", ".jsonl"):
            raise InputError(
                args.out, "--out must end in .csv or .json (or .jsonl, a record a line)"
            )
        check_output(args.out)  # before any file is read and classified
    resolve_workers(args.workers, 0)  # checks the number
    if args.unknown_threshold is not None and not 0.0 <= args.unknown_threshold <= 1.0:
        raise InputError(None, f"--unknown-threshold must be 0 to 1, got {args.unknown_threshold}")


def windows_of(clf, args: argparse.Namespace) -> tuple[float, float, float | None]:
    """``(window, stride, whole-clip limit)`` the files are cut by: the options, or the
    checkpoint's; a warning when the window is not the one it was trained on."""
    if args.stride is not None and args.window is None and args.stride > clf.window_s:
        raise InputError(
            None, f"--stride {args.stride} must not exceed the window {clf.window_s} s (gaps)"
        )
    window = clf.window_s if args.window is None else float(args.window)
    stride = window / 2 if args.stride is None else float(args.stride)
    if abs(window - clf.window_s) > 1e-6:
        print(
            f"stmt: warning: --window {window:g} s is not the {clf.window_s:g} s the checkpoint "
            "was trained on; its labels may be less reliable",
            file=sys.stderr,
        )
    return window, stride, clf.clip_s if args.window is None else None


def label_files(
    clf, inputs: list, args: argparse.Namespace, joint_map, workers: int = 0
) -> tuple[list, int]:
    """Read each input (:meth:`stmt.inference.Classifier.read`, in ``workers`` worker
    processes: :class:`ReadTask`) and label the windows of several files together,
    ``--batch-size`` at a time, in the inputs' order; prints each file's table (or its
    error line) as it is labelled. Returns the JSON records and the count of failures."""
    records: list[dict] = []
    failed = 0
    batches = WindowBatches(clf, max(1, int(args.batch_size)))
    options = {"body": args.body, "body_models": args.body_models, "window": args.window,
               "stride": args.stride, "joint_map": joint_map}  # fmt: skip
    task = ReadTask(clf, options)
    if workers:
        preload(clf, {fmt for _, fmt in inputs}, args.body, args.body_models)
    bar = tqdm(total=len(inputs), desc="classify", unit="file", disable=None, leave=False)
    with bar, Workers(task, workers) as pool:
        for (path, _), read in zip(inputs, pool.map(inputs)):
            bar.update()
            if isinstance(read, Failed):
                failed += 1
                line = read.message if read.kind == "input" else str(InputError(path, read.message))
                _say(bar, f"stmt: error: {line}", sys.stderr)
                continue
            for item, logits in batches.add(task.received(*read)):
                failed += _label(clf, item, logits, args, records, bar)
        for item, logits in batches.finish():
            failed += _label(clf, item, logits, args, records, bar)
    return records, failed


def _label(clf, item: Inputs, logits: np.ndarray, args, records: list, bar) -> int:
    """One file's prediction (its record kept, its table printed); 1 when it failed."""
    try:
        result = clf.postprocess(item, logits, args.top_k)
    except InputError as err:  # NaN/Inf outputs
        _say(bar, f"stmt: error: {err}", sys.stderr)
        return 1
    records.append(result.to_json())
    if not args.json:
        _say(bar, format_table(result) + "\n", sys.stdout)
    return 0


def preload(clf, formats: set, body: str, body_models) -> None:
    """The rest mesh and vertex template of each body the inputs' formats are posed on,
    loaded here before the workers fork, so they start with them (the rig's constants, the
    template) instead of loading them once each. A body that cannot be loaded is left to
    the files to report."""
    loaded = set()
    for fmt in sorted(f for f in formats if f is not None and not f.startswith("mesh")):
        try:
            rest, faces, name = body_topology(body, body_models, fmt)
            if name not in loaded:
                clf.template(faces, rest)
                loaded.add(name)
        except InputError:
            continue


def _say(bar, text: str, stream) -> None:
    """One line (or table) on ``stream``, under the progress bar when there is one."""
    bar.write(text, file=stream)
    stream.flush()


@dataclass
class ReadTask:
    """One input read and made ready for the model (:meth:`Classifier.read`), in a worker
    process: ``(inputs without their template, its key, the template the first time this
    process sends that key)``, or a :class:`~stmt.archive.Failed` with the error's line.
    The templates (a geodesic matrix each) travel once per worker, not once per file;
    :meth:`received` puts them back in this process."""

    clf: Classifier
    options: dict
    sent: set = field(default_factory=set)  # template keys this process sent
    templates: dict = field(default_factory=dict)  # key -> Template, where received

    def __call__(self, entry: tuple[Path, str | None]):
        path, fmt = entry
        try:
            item = self.clf.read(path, fmt=fmt, **self.options)
        except InputError as err:
            return Failed(str(err))
        key = item.template.key
        template = None if key in self.sent else item.template
        self.sent.add(key)
        return dataclasses.replace(item, template=None), key, template

    def received(self, item: Inputs, key: str, template) -> Inputs:
        if template is not None:
            self.templates[key] = template
        return dataclasses.replace(item, template=self.templates[key])
