"""``stmt classify FILE [FILE ...] --ckpt CKPT``: label the actions in MoCap files.

Each file is read (any format ``stmt inspect`` reads), cut into windows of
``--window`` seconds every ``--stride`` seconds that cover the whole sequence
(the last window is aligned to the end; a file shorter than a window is one
window), and each window is labelled by the checkpoint. The overall label is
the mean of the window probabilities. See :mod:`stmt.predict` for the details.

Output: a table per file (overall top-k, then a timeline of per-window top-1
labels when there is more than one window). With ``--json`` stdout holds only
one JSON document, a list with one object per file that was read::

    [
      {
        "file": "walk.npz",            # the path as given
        "duration_s": 10.0,            # seconds the sequence covers
        "fps": 120.0,                  # the file's own frame rate
        "overall": [                   # top-k of the mean window probabilities,
          {"label": "walk", "prob": 0.81},      # sorted by falling prob
          ...
        ],
        "windows": [                   # in time order; their union is [0, duration_s]
          {"start": 0.0, "end": 2.0,   # seconds
           "top_k": [{"label": "walk", "prob": 0.93}, ...]},
          ...
        ]
      },
      ...
    ]

Probabilities are softmax outputs (floats in [0, 1]); a top-k list sums to at
most 1. Several files are read one after another and their windows go
through the model ``--batch-size`` at a time, across files.

Errors: a file that cannot be read prints ``stmt: error: <file>: <why>`` on
stderr and is left out of the output; the other files still complete. The
exit status is 0 when every file was labelled, 2 when any file failed (or the
checkpoint could not be loaded).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stmt.commands.inspect import add_body_arguments, add_files_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_files_argument(p)
    p.add_argument("--ckpt", type=Path, required=True, help="trained stmt checkpoint (.ckpt)")
    p.add_argument("--top-k", type=int, default=5, help="labels to show per window and overall")
    p.add_argument(
        "--window",
        type=float,
        default=None,
        metavar="S",
        help="window length in seconds (default: the checkpoint's training window)",
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
    p.add_argument("--batch-size", type=int, default=16, help="windows per model call")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    add_body_arguments(p)


def format_table(pred, show_timeline: bool = True) -> str:
    """The readable report of one :class:`stmt.predict.Prediction`."""
    n = len(pred.windows)
    head = f"{pred.file}  ({pred.duration_s:.2f} s at {pred.fps:g} fps, {n} window{'s' * (n != 1)})"
    lines = [head]
    width = max(len(a) for a, _ in pred.overall)
    lines.append("  overall")
    for i, (label, prob) in enumerate(pred.overall, 1):
        lines.append(f"    {i}. {label:<{width}}  {prob:6.3f}")
    if show_timeline and n > 1:
        width = max(len(top[0][0]) for _, _, top in pred.windows)
        lines.append("  timeline (top-1 per window)")
        for start, end, top in pred.windows:
            label, prob = top[0]
            lines.append(f"    {start:7.2f} - {end:7.2f} s  {label:<{width}}  {prob:6.3f}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from stmt.errors import InputError
    from stmt.predict import Classifier

    if args.top_k < 1:
        raise InputError(None, f"--top-k must be at least 1, got {args.top_k}")
    for name in ("window", "stride"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise InputError(None, f"--{name} must be positive, got {value}")
    if args.window is not None and args.stride is not None and args.stride > args.window:
        raise InputError(
            None, f"--stride {args.stride} must not exceed --window {args.window} (gaps)"
        )
    clf = Classifier.from_checkpoint(args.ckpt, device=args.device)
    if args.stride is not None and args.window is None and args.stride > clf.window_s:
        raise InputError(
            None, f"--stride {args.stride} must not exceed the window {clf.window_s} s (gaps)"
        )
    batch = max(1, int(args.batch_size))

    records: list[dict] = []
    failed = 0
    pending: list[tuple] = []  # (sequence, spans, geodesic, clips) waiting for the model
    pending_windows = 0

    def flush() -> None:
        nonlocal pending_windows
        if not pending:
            return
        import numpy as np

        # one geodesic per model call: group consecutive files of one topology
        groups: list[list[tuple]] = []
        for item in pending:
            if groups and groups[-1][0][2] is item[2]:
                groups[-1].append(item)
            else:
                groups.append([item])
        for group in groups:
            clips = np.concatenate([it[3] for it in group], axis=0)  # (sum W, T, N, 3)
            probs = clf.probabilities(clips, group[0][2], batch)
            at = 0
            for seq, spans, _geo, c in group:
                pred = clf.prediction(seq, spans, probs[at : at + len(c)], args.top_k)
                at += len(c)
                emit(pred)
        pending.clear()
        pending_windows = 0

    def emit(pred) -> None:
        if args.json:
            records.append(pred.to_json())
        else:
            print(format_table(pred), flush=True)
            print()

    for path in args.files:
        try:
            seq, tpl = clf.read(path, body=args.body, body_models=args.body_models,
                                only_windows=True, window=args.window, stride=args.stride)
            clips, spans, tpl = clf.clips(seq, args.window, args.stride)
        except InputError as err:
            failed += 1
            print(f"stmt: error: {err}", file=sys.stderr, flush=True)
            continue
        pending.append((seq, spans, tpl.geodesic, clips))
        pending_windows += len(clips)
        if pending_windows >= batch:
            flush()
    flush()
    if args.json:
        print(json.dumps(records, indent=2))
    return 2 if failed else 0
