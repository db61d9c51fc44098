"""The stmt checkpoint format, written and read in one place.

A checkpoint is the dict a Lightning ``Trainer`` saves for
:class:`~stmt.engine.classifier.ClassificationModule` or
:class:`~stmt.engine.pretrainer.PretrainingModule`, holding only tensors and plain
data, so that ``torch.load(path, weights_only=True)`` reads it:

- ``hyper_parameters``: the module's constructor arguments, each once, as plain
  data (:func:`hyper_parameters`): ``arch``, ``model_args`` (the overrides of
  the arch's defaults), ``clip`` (the :class:`~stmt.clip.ClipSettings`: class
  names, frames and points per clip, fps, ``window_s``, ``clip_s``,
  ``fixed_window``; how inference cuts a file, see :mod:`stmt.clip`),
  optionally ``calibration`` (``stmt calibrate``: the softmax temperature and the
  "unknown" threshold; :mod:`stmt.engine.calibration`), optionally ``scales``
  (an ensemble whose members were trained on windows of several lengths:
  ``[{"window_s": s, "members": n}, ...]``, the first the clip settings' own
  ``window_s``, members in that order; :func:`window_scales`), the optimiser settings,
  and ``_class_path`` (which module wrote it; LightningCLI's ``--ckpt_path`` reads
  it). :func:`model_args` completes ``model_args`` with the sizes, so
  ``build_model(arch, **model_args(hp))`` rebuilds the bare model. Checkpoints
  written before ``stmt_format`` 3 keep the clip settings as separate keys
  (``num_classes``, ``num_frames``, ``num_points``, ``class_names``, ``fps``,
  ``window_s``, optionally ``clip_s`` and ``fixed_window``), and before 2 repeat
  the sizes inside ``model_args``: :func:`read` brings both to today's layout
  (:func:`upgrade`), so they load the same.
- ``state_dict``: ``model.*`` (the model; a pretraining checkpoint holds
  ``model.encoder.*`` and ``model.decoder*``) and ``geodesic``, the (N, N)
  geodesic matrix of the training template (the template's other half, its
  vertex ids, is recomputed deterministically from the rest mesh).
- ``stmt_format``: 3 (absent before 2).

Errors a user can cause (a pretraining checkpoint where a classifier is needed,
a checkpoint that does not fit the cache, a class list that does not fit the
head) are :class:`~stmt.errors.InputError` with one line that says what to do.
Nothing here imports Lightning.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stmt import limits
from stmt.clip import ClipSettings
from stmt.errors import InputError
from stmt.fileio import input_file

FORMAT_VERSION = 3
REQUIRED_HPARAMS = ("arch", "class_names", "num_frames", "num_points", "fps", "window_s")
# the clip settings as checkpoints before stmt_format 3 kept them, each a top-level key
CLIP_KEYS = tuple(f.name for f in dataclasses.fields(ClipSettings))
# the sizes every builder takes (from the clip settings)
SIZES = ("num_classes", "num_frames", "num_points")
PRETRAINERS = ("STMTPretrainer", "PretrainingModule")  # the class's names, old and new
FINETUNE_HINT = (
    "fine-tune it first: set model.init_args.pretrained to this file in a fit config "
    "(see datasets/synthetic/finetune.yaml) and run `stmt fit`"
)


# --------------------------------------------------------------------------- writing
def plain(value: Any) -> Any:
    """Plain Python data (dict, list, tuple, str, int, float, bool, None), recursively.

    Checkpoints must load with ``torch.load(weights_only=True)``, which accepts
    only such types; jsonargparse may hand over Namespaces and Paths, and the clip
    settings are a dataclass.
    """
    if isinstance(value, ClipSettings):
        return value.as_dict()
    if isinstance(value, (Mapping, argparse.Namespace)):  # jsonargparse Namespaces too
        items = value.items() if isinstance(value, Mapping) else vars(value).items()
        return {str(k): plain(v) for k, v in items}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"hyper-parameter of type {type(value).__name__} is not plain data: {value!r}")


def hyper_parameters(module_class: type, **values: Any) -> dict[str, Any]:
    """The ``hyper_parameters`` a module saves: its constructor arguments as plain data.

    ``model_args`` keeps only the user's overrides (the sizes come from ``clip``).
    """
    values = dict(values)
    overrides = {k: v for k, v in dict(values.get("model_args") or {}).items() if k not in SIZES}
    values["model_args"] = overrides
    return plain(
        {"_class_path": f"{module_class.__module__}.{module_class.__qualname__}", **values}
    )


def mark(checkpoint: dict[str, Any]) -> None:
    """Stamp a checkpoint being saved with the format version (``on_save_checkpoint``)."""
    checkpoint["stmt_format"] = FORMAT_VERSION


# --------------------------------------------------------------------------- reading
def read(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); checks only that it is a dict
    with ``hyper_parameters``. Raises :class:`InputError` naming the file if it is
    missing, not a torch file, or holds pickled code or other non-plain objects."""
    import torch

    path = input_file(path, "a checkpoint file (.ckpt)")  # not a FIFO, device or folder
    if path.stat().st_size > limits.MAX_CHECKPOINT_BYTES:
        raise InputError(path, f"is larger than the {limits.MAX_CHECKPOINT_BYTES >> 30} GB a "
                         "checkpoint may be")  # fmt: skip
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        raise InputError(path, f"cannot read the checkpoint ({e.strerror})") from None
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch zip, legacy pickle
        raise InputError(path, "not a PyTorch checkpoint (neither a torch zip file nor a pickle)")
    if head.startswith(b"PK\x03\x04"):
        _check_torch_zip(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights only" in str(err).lower() or "weights_only" in str(err).lower():
            raise InputError(
                path,
                "refused to load: the checkpoint holds Python objects other than tensors "
                "and plain data, which could run code (loaded with weights_only=True)",
            ) from None
        raise InputError(path, f"not a PyTorch checkpoint ({first})") from None
    except Exception as err:  # noqa: BLE001 - torch.load raises many types on a non-torch file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(path, f"not a PyTorch checkpoint ({first[:200]})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("hyper_parameters"), dict):
        raise InputError(path, "not an stmt checkpoint: no 'hyper_parameters' dict")
    ckpt["hyper_parameters"] = upgrade(ckpt["hyper_parameters"], path)
    return ckpt


def _check_torch_zip(path: Path) -> None:
    """InputError for a zip archive that is not torch's layout (a folder with
    ``data.pkl``): a MoCap ``.npz`` given as the checkpoint is told so in plain words."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch.load says what is wrong with it
    if any(n.endswith("/data.pkl") for n in names):
        return
    what = (
        "a NumPy .npz archive"
        if names and all(n.endswith(".npy") for n in names)
        else "a zip archive"
    )
    raise InputError(
        path, f"{what}, not a PyTorch checkpoint (a MoCap file goes before --ckpt, not after it)"
    )


def upgrade(hp: dict[str, Any], path: str | Path | None = None) -> dict[str, Any]:
    """Hyper-parameters in today's layout: the clip settings of a checkpoint from before
    ``stmt_format`` 3 (top-level keys, module docstring) folded into ``clip``; a
    ``num_classes`` that disagrees with the class list is an InputError. Today's
    layout (or hyper-parameters without clip settings) comes back as it is."""
    if "clip" in hp or not any(k in hp for k in CLIP_KEYS):
        return hp
    out = {k: v for k, v in hp.items() if k not in (*CLIP_KEYS, "num_classes")}
    names = hp.get("class_names")
    sized = "num_classes" in hp and isinstance(names, (list, tuple)) and names
    if sized and (not isinstance(hp["num_classes"], int) or hp["num_classes"] != len(names)):
        raise InputError(
            path,
            f"the class list has {len(names)} names but num_classes is {hp['num_classes']}: "
            "the class list does not fit the head",
        )
    out["clip"] = {k: hp[k] for k in CLIP_KEYS if k in hp}
    return out


def clip_settings(hp: dict[str, Any], path: str | Path | None = None) -> ClipSettings:
    """The :class:`~stmt.clip.ClipSettings` of (upgraded) hyper-parameters, checked
    (:func:`check_hparams`)."""
    check_hparams(hp, path)
    return ClipSettings(**hp["clip"])


def is_pretraining(ckpt: dict[str, Any]) -> bool:
    """True for a pretraining checkpoint (an encoder without a classification head)."""
    hp = ckpt.get("hyper_parameters") or {}
    if str(hp.get("_class_path", "")).endswith(PRETRAINERS):
        return True
    state = ckpt.get("state_dict") or {}
    return any(str(k).startswith("model.encoder.") for k in state)


def model_args(hp: dict[str, Any]) -> dict[str, Any]:
    """``build_model(hp["arch"], **model_args(hp))`` arguments: the overrides plus the sizes
    (of the clip settings: classes, frames, points).

    Old checkpoints repeat the sizes inside ``model_args``; a copy that disagrees
    with the clip settings is an error (ValueError)."""
    args = dict(hp.get("model_args") or {})
    clip = hp.get("clip") or {}
    sizes = {"num_frames": clip.get("num_frames"), "num_points": clip.get("num_points")}
    if "class_names" in clip:
        sizes["num_classes"] = len(clip["class_names"])
    for key, value in sizes.items():
        if value is None:
            continue
        if key in args and int(args[key]) != int(value):
            raise ValueError(f"model_args {key}={args[key]} disagrees with {key}={value}")
        args[key] = int(value)
    return args


def model_weights(ckpt: dict[str, Any], prefix: str = "model.") -> dict[str, Any]:
    """The state dict under ``prefix`` with the prefix removed."""
    state = ckpt.get("state_dict") or {}
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def head_outputs(weights: dict[str, Any]) -> int | None:
    """Number of outputs of the classification head (its last layer's bias), if any."""
    layers = []
    for key, value in weights.items():
        m = re.fullmatch(r"(?:members\.\d+\.)?head\.(\d+)\.bias", key)  # an ensemble's too
        if m and getattr(value, "ndim", 0) == 1:
            layers.append((int(m.group(1)), int(value.shape[0])))
    return max(layers)[1] if layers else None


def check_classifier(ckpt: dict[str, Any], path: str | Path) -> None:
    """Check that ``ckpt`` is a trained classifier whose class list fits its head."""
    path = Path(path)
    if is_pretraining(ckpt):
        raise InputError(
            path, f"this is a pretraining checkpoint (no classification head); {FINETUNE_HINT}"
        )
    hp = ckpt["hyper_parameters"]
    clip = hp.get("clip") if isinstance(hp.get("clip"), dict) else {}
    missing = [k for k in REQUIRED_HPARAMS if k not in hp and k not in clip]
    if missing:
        raise InputError(path, f"not an stmt checkpoint: hyper_parameters lacks {missing}")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise InputError(path, "not an stmt checkpoint: no 'state_dict'")
    names = clip["class_names"]
    if not (isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names)):
        raise InputError(path, "not an stmt checkpoint: class_names is not a list of strings")
    outputs = head_outputs(model_weights(ckpt))
    if outputs is not None and outputs != len(names):
        raise InputError(
            path,
            f"the class list has {len(names)} names but the head has {outputs} outputs: "
            "the class list does not fit the head",
        )


MAX_PARAMETERS = 1_000_000_000  # 4 GB of float32 weights


def check_hparams(hp: dict[str, Any], path: str | Path | None) -> None:
    """Refuse (upgraded) hyper-parameters no trained stmt model has, with one line naming
    the field: sizes that are not whole numbers in range, a NaN or non-positive window or
    fps, clip settings that are not a dict of them."""
    clip = hp.get("clip", {})
    if not isinstance(clip, dict) or not set(clip) <= set(CLIP_KEYS):
        raise InputError(path, f"bad checkpoint: clip is {clip!r}; expected the clip settings")
    ranges = {"num_frames": (1, 10_000), "num_points": (1, 100_000)}
    for key, (lo, hi) in ranges.items():
        if key not in clip:
            continue
        value = clip[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or value != int(value)
            or not lo <= value <= hi
        ):
            raise InputError(
                path, f"bad checkpoint: {key} is {value!r}; expected a whole number {lo} to {hi}"
            )
    for key, hi in (
        ("window_s", limits.MAX_WINDOW_S),
        ("clip_s", limits.MAX_WINDOW_S),
        ("fps", limits.MAX_FPS),
    ):
        if key not in clip or (key == "clip_s" and clip[key] is None):  # clip_s: optional
            continue
        value = clip[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (ok and math.isfinite(value) and 0 < value <= hi):
            raise InputError(
                path, f"bad checkpoint: {key} is {value!r}; expected a positive number up to {hi:g}"
            )
    if not isinstance(clip.get("fixed_window", False), bool):
        raise InputError(
            path,
            f"bad checkpoint: fixed_window is {clip['fixed_window']!r}; expected true or false",
        )
    names = clip.get("class_names", [])
    if not (isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)):
        raise InputError(path, "bad checkpoint: class_names is not a list of strings")
    for key, value in (hp.get("model_args") or {}).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(path, f"bad checkpoint: model_args {key} is {value!r}")
    check_calibration(hp.get("calibration"), path)
    window_scales(hp, path)


def window_scales(hp: dict[str, Any], path: str | Path | None = None) -> list[tuple[float, int]]:
    """``[(window_s, members), ...]`` of (upgraded) hyper-parameters: the window length
    each group of an ensemble's members was trained on, the first the clip settings'
    own (one group of all members without ``scales``). InputError when ``scales`` does
    not fit the clip settings and the member count."""
    clip = hp.get("clip") or {}
    members = (hp.get("model_args") or {}).get("members", 1)
    scales = hp.get("scales")
    if scales is None:
        return [(float(clip.get("window_s", 0.0)), members)]
    bad = f"bad checkpoint: scales is {scales!r}; expected"
    if not isinstance(scales, (list, tuple)) or not all(
        isinstance(g, dict) and set(g) == {"window_s", "members"} for g in scales
    ):
        raise InputError(path, f"{bad} a list of {{'window_s': seconds, 'members': count}}")
    out = [(g["window_s"], g["members"]) for g in scales]
    for w, n in out:
        if (
            isinstance(w, bool)
            or not isinstance(w, (int, float))
            or not (math.isfinite(w) and 0 < w <= limits.MAX_WINDOW_S)
        ):
            raise InputError(path, f"{bad} window lengths up to {limits.MAX_WINDOW_S:g} s")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(path, f"{bad} a whole number >= 1 of members in each")
    if not out or out[0][0] != clip.get("window_s") or sum(n for _, n in out) != members:
        raise InputError(path, f"{bad} the clip's window_s first and {members} members in all")
    return [(float(w), int(n)) for w, n in out]


def check_calibration(calibration: Any, path: str | Path) -> None:
    """Refuse a ``calibration`` entry inference cannot use: a temperature that is not a
    positive number, a threshold outside [0, 1]."""
    if calibration is None:
        return
    if not isinstance(calibration, dict):
        raise InputError(path, f"bad checkpoint: calibration is {calibration!r}; expected a dict")
    t = calibration.get("temperature", 1.0)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t > 0):
        raise InputError(path, f"bad checkpoint: calibration temperature is {t!r}")
    u = calibration.get("unknown_threshold")
    if u is not None and not _is_probability(u):
        raise InputError(path, f"bad checkpoint: calibration unknown_threshold is {u!r}")
    by_kind = calibration.get("unknown_thresholds", {})
    if not isinstance(by_kind, dict) or not all(
        isinstance(k, str) and _is_probability(v) for k, v in by_kind.items()
    ):
        raise InputError(path, f"bad checkpoint: calibration unknown_thresholds is {by_kind!r}")


def _is_probability(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and 0.0 <= v <= 1.0


def _check_size(arch: str, args: dict[str, Any], path: Path) -> None:
    """Count the parameters the model would have on the meta device (no memory) and
    refuse more than :data:`MAX_PARAMETERS`."""
    import torch

    from stmt.model.stmt import build_model

    try:
        with torch.device("meta"):
            model = build_model(arch, **args)
    except (KeyError, ValueError, TypeError) as err:
        raise InputError(path, f"cannot build model {arch!r}: {err}") from None
    except Exception:  # noqa: BLE001 - a model that cannot be built on meta is checked when built
        return
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        raise InputError(
            path,
            f"bad checkpoint: its hyper-parameters build a model of {count:,} parameters "
            f"(more than {MAX_PARAMETERS:,})",
        )


def check_finite(weights: dict[str, Any], path: str | Path) -> None:
    """Refuse weights holding NaN or Inf (a model that would label everything 'nan')."""
    import torch

    for key, value in weights.items():
        floating = isinstance(value, torch.Tensor) and value.is_floating_point()
        if floating and not bool(torch.isfinite(value).all()):
            raise InputError(path, f"bad checkpoint: weight {key!r} holds NaN or Inf")


def ensemble(paths: list[Path]) -> dict[str, Any]:
    """One checkpoint of the classifiers at ``paths`` (seeds of one recipe, or ensembles
    of them): an :class:`~stmt.model.stmt.Ensemble` of all their members, whose logits
    are the mean of theirs. They must share the arch, its arguments and the clip
    settings (class list, frames, points, fps) but for the window length: members
    trained on windows of other lengths make ``scales`` (inference cuts a file once per
    length and mixes the lengths' outputs, :func:`stmt.clip.scale_mix`), the first
    path's length first. The result has no calibration (``stmt calibrate`` fits one
    for the whole) and keeps the first one's record (Lightning's version, data
    settings), not the members' training state."""
    ckpts = [read(path) for path in paths]
    groups: dict[float, list[dict[str, Any]]] = {}  # window_s -> members' weights
    first = None
    for path, ckpt in zip(paths, ckpts):
        check_classifier(ckpt, path)
        hp = ckpt["hyper_parameters"]
        try:
            args = model_args(hp)
        except ValueError as err:
            raise InputError(path, str(err)) from None
        count = args.pop("members", 1)
        kind = (hp["arch"], args, dict(hp["clip"], window_s=None))
        first = first or kind
        if kind != first:
            raise InputError(
                path, f"does not fit {paths[0]}: ensemble members need the same arch, "
                "model arguments and clip settings (class list, frames, points, fps)",
            )  # fmt: skip
        weights = model_weights(ckpt)
        members = [weights] if count == 1 else [
            {k.split(".", 2)[2]: v for k, v in weights.items() if k.startswith(f"members.{i}.")}
            for i in range(count)
        ]  # fmt: skip
        at = 0
        for window, n in window_scales(hp, path):
            groups.setdefault(window, []).extend(members[at : at + n])
            at += n
    hp = dict(ckpts[0]["hyper_parameters"], calibration=None)
    members = [m for group in groups.values() for m in group]
    hp["model_args"] = {**(hp.get("model_args") or {}), "members": len(members)}
    hp["clip"] = dict(hp["clip"], window_s=next(iter(groups)))
    hp.pop("scales", None)
    if len(groups) > 1:
        hp["scales"] = [{"window_s": w, "members": len(g)} for w, g in groups.items()]
    training_state = ("state_dict", "optimizer_states", "lr_schedulers", "callbacks", "loops")
    out = {k: v for k, v in ckpts[0].items() if k not in training_state}
    out["hyper_parameters"] = hp
    out["state_dict"] = {  # the module's own buffers (the template's geodesics) once
        k: v for k, v in ckpts[0]["state_dict"].items() if not k.startswith("model.")
    }
    out["state_dict"] |= {
        f"model.members.{i}.{k}": v for i, m in enumerate(members) for k, v in m.items()
    }
    out["ensemble_of"] = [Path(p).name for p in paths]
    mark(out)
    return out


def load_model(path: str | Path):
    """Rebuild the bare trained model of a classifier checkpoint (no Lightning import).

    Returns ``(model in eval mode, hyper_parameters, clip settings)``.
    """
    from stmt.model.stmt import build_model

    path = Path(path)
    ckpt = read(path)
    check_classifier(ckpt, path)
    hp = ckpt["hyper_parameters"]
    clip = clip_settings(hp, path)
    try:
        _check_size(str(hp["arch"]), model_args(hp), path)
    except ValueError as err:
        raise InputError(path, f"cannot build model {hp['arch']!r}: {err}") from None
    try:
        model = build_model(str(hp["arch"]), **model_args(hp))
    except (KeyError, ValueError, TypeError) as err:
        raise InputError(path, f"cannot build model {hp['arch']!r}: {err}") from None
    weights = model_weights(ckpt)
    if not weights:
        raise InputError(path, "not an stmt checkpoint: state_dict has no 'model.*' weights")
    check_finite(weights, path)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise InputError(path, f"weights do not fit arch {hp['arch']!r}: {first}") from None
    return model.eval(), hp, clip


def encoder_weights(path: str | Path) -> dict[str, Any]:
    """The ``model.encoder.*`` weights of a pretraining checkpoint, prefix removed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            path, "pretrained checkpoint not found (expected a pretraining .ckpt file)"
        )
    ckpt = read(path)
    encoder = model_weights(ckpt, "model.encoder.")
    if not encoder:
        raise InputError(path, "no 'model.encoder.*' weights: not a pretraining checkpoint")
    return encoder


# --------------------------------------------------------------------------- checkpoint vs data
def check_fits_data(
    saved: dict[str, Any], current: ClipSettings, path: str | Path | None, cache: Any = None
) -> None:
    """Check a checkpoint's hyper-parameters against the clip settings of the data.

    ``saved`` are the checkpoint's hyper-parameters (either layout), ``current`` the
    settings the data module linked into the model. Raises InputError saying how to
    make them agree."""
    saved = upgrade(saved, path)
    clip = saved.get("clip") or {}
    where = f"the cache {cache}" if cache is not None else "the data"
    if len(window_scales(saved, path)) > 1:
        raise InputError(
            path,
            "its members were trained on windows of several lengths, and validate, test and "
            "predict cut one; `stmt calibrate` reports its numbers, `stmt classify` uses it",
        )
    n_ck, n_data = clip.get("num_points"), current.num_points
    if n_ck is not None and int(n_ck) != n_data:
        raise InputError(
            path,
            f"{where} has N={n_data}, the checkpoint N={n_ck}: "
            f"rerun `stmt prepare` with --num-points {n_ck}",
        )
    t_ck, t_data = clip.get("num_frames"), current.num_frames
    if t_ck is not None and int(t_ck) != t_data:
        raise InputError(
            path,
            f"the data module cuts clips of T={t_data} frames, the checkpoint T={t_ck}: "
            f"set data.num_frames to {t_ck}",
        )
    c_ck, c_data = list(clip.get("class_names") or []), list(current.class_names)
    if c_ck and c_data and c_ck != c_data:
        if len(c_ck) != len(c_data):
            detail = f"{len(c_data)} classes, the checkpoint {len(c_ck)}"
        else:
            i = next(i for i, (a, b) in enumerate(zip(c_ck, c_data)) if a != b)
            detail = f"class {i} {c_data[i]!r}, the checkpoint {c_ck[i]!r}"
        raise InputError(
            path,
            f"{where} has {detail}: the class list does not fit the head; "
            "prepare the cache with the checkpoint's labels",
        )
