"""The ``stmt`` command.

Start-up stays light: this module and the ``stmt.commands.*`` modules import
nothing heavy at module level (no torch, open3d, smplx, anny: the list in
``pyproject.toml``, held by ruff's TID253), so ``stmt --help`` and
``stmt <command> --help`` answer at once; a command imports a heavy module where
it uses it.

``fit``, ``validate``, ``test`` and ``predict`` are handed to LightningCLI
(:mod:`stmt.engine.cli`); every other command is a module under
:mod:`stmt.commands` with ``add_arguments(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from stmt import __version__
from stmt.errors import InputError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("stmt.commands.inspect", "show what a MoCap file holds once read"),
    "synth": ("stmt.commands.synth", "generate the built-in synthetic action dataset"),
    "prepare": ("stmt.commands.prepare", "pose a dataset once into a training cache"),
    "calibrate": (
        "stmt.commands.calibrate",
        'fit a trained checkpoint\'s temperature and "unknown" rule on held-out clips',
    ),
    "classify": ("stmt.commands.classify", "label the actions in MoCap files"),
    "view": ("stmt.commands.view", "play a MoCap file with the model's attention"),
}
LIGHTNING_COMMANDS = {
    "fit": "train (or pretrain) a model from a YAML config",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "run a checkpoint over the predict split",
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stmt",
        description="Motion-capture action recognition on the body surface (STMT).",
        epilog="Run `stmt COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, helptext in LIGHTNING_COMMANDS.items():
        sub.add_parser(name, help=f"{helptext} (LightningCLI)")
    for name, (_, helptext) in COMMANDS.items():
        sub.add_parser(name, help=helptext)
    parser.add_argument("--version", action="version", version=f"stmt {__version__}")
    return parser


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help, unless the help already names its
    default or there is none worth showing (None, False, a required option)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or action.required
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def _run_command(name: str, argv: list[str]) -> int:
    """Import only the one command's module, parse its options, run it."""
    module_name, helptext = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"stmt {name}", description=helptext, formatter_class=DefaultsHelpFormatter
    )
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    return int(module.main(args) or 0)


def _bytes_names() -> None:
    """Print any file name the OS allows: a name that is not UTF-8 (held as surrogate
    escapes, PEP 383) goes out as its original bytes instead of a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _bytes_names()
    try:
        if argv and argv[0] in LIGHTNING_COMMANDS:
            from stmt.engine.cli import lightning_main

            return lightning_main(argv)
        if argv and argv[0] in COMMANDS:
            return _run_command(argv[0], argv[1:])
        parser = _top_parser()
        if not argv:
            parser.print_help()
            return 0
        parser.parse_args(argv)  # --help, --version, or an unknown command (exit 2)
        return 0
    except InputError as err:
        print(f"stmt: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`stmt classify ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141  # as a shell reports a process ended by SIGPIPE
    except OSError as err:  # the system refused a read or write (no such folder, disk full)
        print(f"stmt: error: {InputError(err.filename, str(err.strerror or err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stmt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
