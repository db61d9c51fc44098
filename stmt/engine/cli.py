"""``stmt fit | validate | test | predict --config datasets/<name>/<file>.yaml``: LightningCLI.

The model is chosen by the config's ``model.class_path`` (subclass mode), so
the same command trains :class:`~stmt.engine.classifier.STMTClassifier` or
pretrains with :class:`~stmt.engine.pretrainer.STMTPretrainer`. The data
module is :class:`stmt.data.datamodule.STMTDataModule`; the dataset's
``num_classes``, ``num_frames``, ``num_points``, ``class_names``, ``fps`` and
``window_s`` are read from the instantiated data module and linked into the
model (never typed twice). ``--ckpt_path last`` resumes an interrupted run
(the configs keep a ``last.ckpt``); DDP is Lightning's
(``--trainer.strategy ddp --trainer.devices N --trainer.num_nodes M``).
"""

from __future__ import annotations

import sys

# Data-module attributes linked into the model's init args of the same name.
LINKED = ("num_classes", "num_frames", "num_points", "class_names", "fps", "window_s")


def build_cli(argv: list[str], datamodule_class=None, run: bool = True):
    """Build the LightningCLI and, with ``run``, execute its subcommand (``argv[0]``).

    ``datamodule_class`` defaults to STMTDataModule (tests pass a stand-in).
    Without ``run``, ``argv`` holds no subcommand and only instantiates.
    """
    import warnings

    import pytorch_lightning as pl
    from pytorch_lightning.cli import LightningCLI

    # stmt hands LightningCLI its own argv explicitly; that is not a mistake here
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")

    if datamodule_class is None:
        from stmt.data.datamodule import STMTDataModule as datamodule_class

    class STMTCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            for name in LINKED:
                parser.link_arguments(
                    f"data.{name}", f"model.init_args.{name}", apply_on="instantiate"
                )

    return STMTCLI(
        pl.LightningModule,
        datamodule_class,
        subclass_mode_model=True,
        args=argv,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "stmt", "exit_on_error": False},
    )


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
    return f"{'.'.join(keys)}: {detail}"


def lightning_main(argv: list[str]) -> int:
    """Run ``stmt fit|validate|test|predict ...``; returns the exit status.

    A config error (unknown key, wrong type, missing file) is one line on
    stderr and status 2; an InputError from the data module (e.g. a missing
    cache) propagates to :mod:`stmt.cli`, which does the same.
    """
    from jsonargparse import ArgumentError

    try:
        build_cli(list(argv))
    except ArgumentError as err:
        print(f"stmt: error: {_one_line(str(err))} (see `stmt {argv[0]} --help`)", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help, --print_config
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    return 0
