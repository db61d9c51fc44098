"""One module per ``stmt`` sub-command: ``add_arguments(parser)`` and ``main(args)``.

Keep module level free of heavy imports (torch, smplx, anny, open3d)."""
