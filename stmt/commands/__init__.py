"""One module per ``stmt`` sub-command: ``add_arguments(parser)`` and ``main(args)``.

Module level stays free of heavy imports (the list in ``pyproject.toml``)."""
