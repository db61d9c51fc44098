"""``stmt fit | validate | test | predict --config datasets/<name>/<file>.yaml``: LightningCLI.

The model is chosen by the config's ``model.class_path`` (subclass mode), so
the same command trains :class:`~stmt.engine.classifier.ClassificationModule` or
pretrains with :class:`~stmt.engine.pretrainer.PretrainingModule`. The data
module is :class:`stmt.data.datamodule.STMTDataModule`; its clip settings
(:class:`stmt.clip.ClipSettings`: class names, frames and points per clip, fps,
window, ...) are read from the instantiated data module and linked into the model
once (never typed twice). ``--ckpt_path last`` resumes an interrupted run
(the configs keep a ``last.ckpt``); DDP is Lightning's
(``--trainer.strategy ddp --trainer.devices N --trainer.num_nodes M``).

Files (:mod:`stmt.fileio`): every config file on the command line is read as a
bounded regular file and its YAML checked for alias blow-up before jsonargparse
reads it (:func:`check_config_files`). The run folders (each checkpoint folder a
fit is given, a logger's log folder) are stmt output folders: one that holds
files stmt and Lightning did not write is refused with one line unless
``--overwrite`` (stmt's own flag, taken out before LightningCLI parses) is given
(:func:`claim_run_folders`).
Checkpoints are saved atomically (a temporary sibling renamed into place), so a
killed run never leaves a truncated ``last.ckpt`` to resume from.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import warnings
import zipfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from jsonargparse import ArgumentError
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from stmt import checkpoint, limits
from stmt.clip import ClipSettings
from stmt.data.datamodule import STMTDataModule
from stmt.engine import reports
from stmt.engine.classifier import pretrained_encoder
from stmt.engine.host_memory import keep_freed_memory
from stmt.engine.predictions import save_predictions
from stmt.errors import InputError
from stmt.fileio import atomic_write, claim_folder, load_yaml, read_text

# what Lightning, jsonargparse and the modules raise for a refused setting; ImportError:
# a setting that needs a package not installed (an XLA accelerator, a logger's client)
REFUSED = (ValueError, TypeError, RuntimeError, ImportError, MisconfigurationException)


class STMTCLI(LightningCLI):
    """LightningCLI with stmt's one link (the data's clip settings into the model), its
    one error path (a bad checkpoint, setting or batch is one line), its output folders,
    and a summary of what each run left behind."""

    def __init__(self, *args, overwrite: bool = False, **kwargs):
        self.overwrite = overwrite
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments(
            "data.clip_settings", "model.init_args.clip", compute_fn=dataclasses.asdict,
            apply_on="instantiate",
        )  # fmt: skip

    # one error path: a bad checkpoint or non-finite data is an InputError (one line)
    def _before(self) -> None:
        path = self.config_init[self.subcommand].get("ckpt_path")
        if self.subcommand != "fit" and str(path) in ("best", "last"):
            check_named_ckpt(self.trainer, str(path), self.subcommand)
        check_ckpt_path(path, self.model, getattr(self.datamodule, "cache", None))
        pretrained = getattr(getattr(self.model, "hparams", None), "pretrained", None)
        if self.subcommand == "fit" and pretrained:  # setup() loads it, after the run's
            pretrained_encoder(self.model.model, pretrained)  # config is written
        claim_run_folders(self.trainer, self.subcommand, self.overwrite)  # inputs first
        if not any(isinstance(cb, FiniteBatches) for cb in self.trainer.callbacks):
            self.trainer.callbacks.append(FiniteBatches(self.datamodule))

    before_fit = before_validate = before_test = before_predict = _before

    # a setting the classes refuse when built (a value out of range, an unknown
    # arch, an accelerator this machine lacks, a second ModelCheckpoint) is one
    # line naming it, as a mistyped key is, not a traceback from Lightning
    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except REFUSED as err:  # (a SettingError from instantiate_trainer passes)
            raise setting_error(err) from err

    def instantiate_trainer(self, **kwargs):
        try:
            return super().instantiate_trainer(**kwargs)
        except REFUSED as err:
            raise setting_error(err, "trainer") from err

    def _parse_ckpt_path(self) -> None:
        """LightningCLI reads a checkpoint's hyper-parameters into the model's config:
        here from the file read the safe way and brought to today's layout first
        (:func:`stmt.checkpoint.read`), so a checkpoint of any stmt format resumes."""
        sub = self.config.get("subcommand")
        if not sub:
            return
        ckpt = check_ckpt_file(self.config[sub].get("ckpt_path"))
        hparams = dict(ckpt["hyper_parameters"]) if ckpt is not None else {}
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        self.config = self.parser.parse_object({sub: {"model": hparams}}, self.config)

    # what each run leaves behind, printed at its end (stmt.engine.reports)
    def after_fit(self) -> None:
        _print_lines(self.trainer, reports.summary_after_fit(self.trainer))

    def after_test(self) -> None:
        _print_lines(self.trainer, reports.summary_after_test(self.trainer, self.model))

    def after_predict(self) -> None:
        paths = save_predictions(self.trainer, self.model, self.datamodule)
        if paths:
            lines = [f"{'predictions:':<28} {reports.shown(p)}" for p in paths]
            _print_lines(self.trainer, lines)


def build_cli(argv: list[str], datamodule_class=None, run: bool = True, overwrite: bool = False):
    """Build the LightningCLI and, with ``run``, execute its subcommand (``argv[0]``).

    ``datamodule_class`` defaults to STMTDataModule (tests pass a stand-in).
    Without ``run``, ``argv`` holds no subcommand and only instantiates. ``overwrite``:
    the run may write into folders that hold files stmt did not write (:func:`claim_run_folders`).
    """
    # stmt hands LightningCLI its own argv explicitly; that is not a mistake here
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    return STMTCLI(
        pl.LightningModule,
        datamodule_class or STMTDataModule,
        subclass_mode_model=True,
        args=argv,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "stmt", "exit_on_error": False},
        overwrite=overwrite,
    )


class SettingError(Exception):
    """A config or command-line setting that a class refused when it was built (one line)."""


def setting_error(err: BaseException, section: str = "") -> Exception:
    """The error to show for ``err`` raised while building the model, data or trainer:
    the innermost cause (jsonargparse wraps the model's own error in a dump of the
    whole config), an InputError as it is, else one :class:`SettingError` line."""

    while err.__cause__ is not None:
        err = err.__cause__
    if isinstance(err, InputError):
        return err
    message = " ".join(str(err).split()) or type(err).__name__
    return SettingError(f"{section}: {message}" if section else message)


LIGHTNING_CKPT_NAMES = ("last", "best", "hpc")  # resolved by Lightning itself


def check_ckpt_file(path) -> dict | None:
    """Read ``--ckpt_path`` the safe way before Lightning does: a missing, truncated,
    malicious or foreign file, or NaN weights are one InputError line (Lightning
    would give a traceback). Returns the checkpoint (None for Lightning's names)."""
    if path is None or str(path) in LIGHTNING_CKPT_NAMES or str(path).startswith("registry"):
        return None

    ckpt = checkpoint.read(path)
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not state:
        raise InputError(path, "not a checkpoint to resume or evaluate: no 'state_dict'")
    checkpoint.check_hparams(ckpt["hyper_parameters"], path)
    checkpoint.check_finite(state, path)
    return ckpt


def check_named_ckpt(trainer, name: str, command: str) -> None:
    """``stmt validate|test|predict --ckpt_path best|last``: Lightning raises a traceback
    for ``best`` (known only inside the fit that made it) and, for ``last`` with none
    saved, warns and evaluates the untrained model (meant for a ``fit`` set to resume).
    Both are one InputError line here; ``last`` is looked for where Lightning looks
    (the ModelCheckpoint folders), when all of them are named."""
    if name == "best":
        raise InputError(
            None,
            f"--ckpt_path best is the best checkpoint of a fit in the same process; "
            f"`stmt {command}` needs its file (or last)",
        )
    callbacks = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
    if not callbacks or any(cb.dirpath is None for cb in callbacks):
        return  # a folder Lightning resolves later: leave "last" to it
    folders = [Path(cb.dirpath) for cb in callbacks]
    last = [
        p
        for cb, folder in zip(callbacks, folders, strict=True)
        if folder.is_dir()
        for p in folder.glob(f"{cb.CHECKPOINT_NAME_LAST}*{cb.FILE_EXTENSION}")
    ]
    if not last:
        where = ", ".join(str(f) for f in folders)
        raise InputError(
            None,
            f"--ckpt_path last: no last checkpoint in {where}, so nothing to {command} "
            "(the model would be untrained); give the .ckpt file",
        )


def check_ckpt_path(path, model, cache=None) -> None:
    """:func:`check_ckpt_file`, then the checkpoint against the data (points, frames,
    classes: what to rerun), then the weights' shapes against the model of the config."""

    ckpt = check_ckpt_file(path)
    if ckpt is None:
        return
    settings = getattr(model, "clip", None)
    if isinstance(settings, ClipSettings):  # an stmt module: its data must fit
        checkpoint.check_fits_data(ckpt.get("hyper_parameters") or {}, settings, path, cache)
    state = ckpt["state_dict"]
    mine = model.state_dict()
    shared = [k for k in mine if k in state]
    if not shared:
        raise InputError(
            path, f"its weights are not those of {type(model).__name__} (no key in common)"
        )
    for key in shared:
        have, want = tuple(getattr(state[key], "shape", ())), tuple(mine[key].shape)
        if have != want:
            raise InputError(
                path,
                f"its weight {key!r} has shape {have}, the model of this config {want}: "
                "a checkpoint of another arch or model_args",
            )


class FiniteBatches(pl.Callback):
    """Stop at the first batch whose vertices hold NaN or Inf, or a training loss
    that is not finite, with one InputError line (never ``loss=nan``, exit 0)."""

    def __init__(self, datamodule=None):
        self.source = getattr(datamodule, "cache", None)

    def _check(self, batch, stage: str, batch_idx: int) -> None:
        x = batch.get("vertices") if isinstance(batch, dict) else None
        finite = not (isinstance(x, torch.Tensor) and x.is_floating_point()) or bool(
            torch.isfinite(x).all()
        )
        if not finite:
            raise InputError(
                self.source,
                f"{stage} batch {batch_idx} holds NaN or Inf vertices; the cache is damaged: "
                "check it with `stmt prepare ... --verify` and rebuild it",
            )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._check(batch, "training", batch_idx)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._check(batch, "validation", batch_idx)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._check(batch, "test", batch_idx)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._check(batch, "predict", batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
            raise InputError(
                self.source,
                f"the training loss is {float(loss)} at batch {batch_idx}; stopped "
                "(lower the learning rate, or check the data with `stmt prepare ... --verify`)",
            )


def _print_lines(trainer, lines: list[str]) -> None:
    if lines and trainer.is_global_zero:
        print("\n".join(lines), flush=True)


# --------------------------------------------------------------------------- files
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def check_config_files(argv: list[str]) -> None:
    """Every config file named on the command line (``--config F``, ``-c F``,
    ``--config=F``, or any option's value that names an existing .yaml/.yml/.json),
    read as jsonargparse will read it, but bounded first: a regular file (a FIFO, a
    device or a folder is one InputError line, not a hang or an endless read) of at
    most :data:`stmt.limits.MAX_CONFIG_BYTES`, UTF-8, and YAML whose aliases do not
    expand past :data:`stmt.limits.MAX_YAML_NODES` values. A value that names no
    existing path is left to jsonargparse (it may be inline YAML)."""

    values = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            values.append((argv[i + 1], True))
        elif arg.startswith("--") and "=" in arg:
            key, value = arg.split("=", 1)
            values.append((value, key == "--config"))
        elif i and not arg.startswith("-") and argv[i - 1] not in ("--config", "-c"):
            values.append((arg, False))
    for value, is_config in values:
        if not os.path.lexists(value):
            continue
        if not is_config and not value.lower().endswith(CONFIG_SUFFIXES):
            continue
        text = read_text(value, "a YAML or JSON config file", limits.MAX_CONFIG_BYTES)
        load_yaml(text, value, "a YAML config")  # JSON is YAML


RUN_NAMES = re.compile(
    r"(version_\d+|checkpoints|lightning_logs|metrics\.csv|hparams\.yaml|config\.yaml"
    r"|training_curves\.png|confusion_matrix\.(csv|png)|predictions\.(csv|json)"
    r"|events\.out\.tfevents\..*)"
)


def is_stmt_checkpoint(path: Path) -> bool:
    """True for a torch zip file whose pickled part names an stmt module (read from its
    ``data.pkl`` member, not loaded)."""

    try:
        with zipfile.ZipFile(path) as z:
            member = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
            if member is None or z.getinfo(member).file_size > 64 * 1024**2:
                return False
            return b"stmt.engine." in z.read(member)
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def adopt_run(path: Path, entries: set[str]) -> set[str]:
    """The entries of a run folder that stmt and Lightning write (:func:`stmt.fileio.check_folder`):
    logs, reports, version folders, and stmt checkpoints (told by their content)."""
    own = {n for n in entries if RUN_NAMES.fullmatch(n)}
    return own | {n for n in entries - own if n.endswith(".ckpt") and is_stmt_checkpoint(path / n)}


def claim_run_folders(trainer, command: str, overwrite: bool) -> None:
    """The run folders this run writes into (each ModelCheckpoint folder a ``fit`` is
    given, a logger's log folder) as stmt output folders: one holding files neither stmt
    nor Lightning wrote is refused with one line unless ``overwrite``. Without a logger
    the reports go to ``default_root_dir``, the user's working folder (the current one
    by default), which is not claimed: each file there is written atomically. ``fit``
    saves checkpoints atomically from here on."""
    folders = []
    if command == "fit":
        folders += [cb.dirpath for cb in trainer.checkpoint_callbacks
                    if isinstance(cb, ModelCheckpoint) and cb.dirpath]  # fmt: skip
        _atomic_checkpoints(trainer)
    if trainer.loggers and trainer.log_dir:
        folders.append(trainer.log_dir)
    if not trainer.is_global_zero:
        return
    for folder in dict.fromkeys(str(f) for f in folders if "://" not in str(f)):
        claim_folder(folder, f"stmt {command}", overwrite, adopt_run)


def _atomic_checkpoints(trainer) -> None:
    """Save checkpoints to a temporary sibling renamed into place (local paths), where the
    strategy uses Lightning's plain torch checkpoint IO."""
    strategy = trainer.strategy
    if type(strategy.checkpoint_io) is not TorchCheckpointIO:
        return  # a user's or a strategy's own IO: theirs to keep

    class AtomicCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
            if storage_options is not None or "://" in str(path):
                return super().save_checkpoint(checkpoint, path, storage_options)
            with atomic_write(path) as f:
                torch.save(checkpoint, f)

    strategy.checkpoint_io = AtomicCheckpointIO()


def _one_line(message: str) -> str:
    """jsonargparse's nested error as one line: 'model.lr: Expected a <class 'float'>. Got value: abc'."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    keyed = [i for i, line in enumerate(lines) if line.startswith('Parser key "')]
    if not keyed:
        return " ".join(lines[:2])
    keys = [line.split('"')[1] for line in (lines[i] for i in keyed)]
    last = keyed[-1]
    detail = lines[last].split(":", 1)[1].strip() or (
        lines[last + 1] if last + 1 < len(lines) else ""
    )
    union = "Does not validate against any of the Union subtypes"
    if any(line.lstrip("- ").startswith(union) for line in lines[last:]):
        # say why the class did not fit (the first listed error), not that no subtype did
        # (nor, for --model=NAME, that NAME is not a config file either)
        detail = _first_union_error(lines[last + 1 :]) or detail
    return f"{'.'.join(keys)}: {detail}"


def _first_union_error(lines: list[str]) -> str:
    """The first of jsonargparse's 'Errors:' items, its continuation lines joined; ''
    when there is none but the optional type's 'Expected a <class 'NoneType'>'."""
    items: list[list[str]] = []
    for line in lines[lines.index("Errors:") + 1 :] if "Errors:" in lines else []:
        if line.startswith(("Given value", "Subtypes:")):
            break
        if line.startswith("- "):
            items.append([line[2:]])
        elif items:
            items[-1].append(line)
    texts = [" ".join(item) for item in items]
    return next((t for t in texts if not t.startswith("Expected a <class 'NoneType'>")), "")


def lightning_main(argv: list[str], datamodule_class=None) -> int:
    """Run ``stmt fit|validate|test|predict ...``; returns the exit status.

    A config error (unknown key, wrong type, missing file) is one line on
    stderr and status 2; an InputError from the data module (e.g. a missing
    cache) propagates to :mod:`stmt.cli`, which does the same.
    """
    keep_freed_memory()  # CPU training steps reuse freed pages (stmt.engine.host_memory)
    argv = list(argv)
    overwrite = "--overwrite" in argv[1:]
    argv = [argv[0], *(a for a in argv[1:] if a != "--overwrite")]
    check_config_files(argv)
    try:
        build_cli(argv, datamodule_class=datamodule_class, overwrite=overwrite)
    except ArgumentError as err:
        print(f"stmt: error: {_one_line(str(err))} (see `stmt {argv[0]} --help`)", file=sys.stderr)
        return 2
    except SettingError as err:
        print(f"stmt: error: {err} (see `stmt {argv[0]} --help`)", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help, --print_config
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    return 0
