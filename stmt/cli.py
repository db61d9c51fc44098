"""The ``stmt`` command.

Start-up stays light: this module and the ``stmt.commands.*`` modules import
nothing heavy at module level (no torch, open3d, smplx, anny), so
``stmt --help`` and ``stmt <command> --help`` answer at once. Each command
imports what it needs inside its ``main``.

``fit``, ``validate``, ``test`` and ``predict`` are handed to LightningCLI
(:mod:`stmt.engine.cli`); every other command is a module under
:mod:`stmt.commands` with ``add_arguments(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from stmt.errors import InputError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("stmt.commands.inspect", "show what a MoCap file holds once read"),
    "synth": ("stmt.commands.synth", "generate the built-in synthetic action dataset"),
    "prepare": ("stmt.commands.prepare", "pose a dataset once into a training cache"),
    "classify": ("stmt.commands.classify", "label the actions in MoCap files"),
    "view": ("stmt.commands.view", "play a MoCap file with the model's attention"),
}
LIGHTNING_COMMANDS = {
    "fit": "train (or pretrain) a model from a YAML config",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "run a checkpoint over the predict split",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stmt",
        description="Motion-capture action recognition on the body surface (STMT).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, helptext in LIGHTNING_COMMANDS.items():
        sub.add_parser(name, help=helptext + " (LightningCLI; see `stmt %s --help`)" % name)
    for name, (module, helptext) in COMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.set_defaults(_module=module)
        mod = importlib.import_module(module)
        mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in LIGHTNING_COMMANDS:
            from stmt.engine.cli import lightning_main

            return lightning_main(argv)
        parser = _parser()
        if not argv:
            parser.print_help()
            return 0
        args = parser.parse_args(argv)
        return int(importlib.import_module(args._module).main(args) or 0)
    except InputError as err:
        print(f"stmt: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stmt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
