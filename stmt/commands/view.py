"""``stmt view FILE [--ckpt CKPT] [--render OUT]``: play a MoCap file, coloured by attention.

Interactive (needs a display): space play/pause, left/right step, A attention
on/off, S screenshot, Q quit. The current window's top-3 labels are printed to
the terminal (Open3D's legacy window cannot draw text).

``--render OUT`` renders without a window: OUT ending in ``.gif`` or ``.mp4``
(needs imageio-ffmpeg) is an animation, ``.png`` one still (the frame at
``--at`` seconds, default the middle), any other name a folder of PNG frames.
Labels, colour legend and window timeline are drawn on each image. When
``DISPLAY`` is unset the command re-runs itself under ``xvfb-run -a``.

Without ``--ckpt`` the motion plays plainly (no labels, no attention).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from stmt.commands.inspect import add_body_arguments

_UNDER_XVFB = "STMT_VIEW_UNDER_XVFB"


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT, e.g. 640x480, got {text!r}"
        ) from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"size too small: {text!r}")
    return w, h


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="AMASS .npz, BVH, ASF/AMC, mesh .npz or mesh folder")
    p.add_argument(
        "--ckpt", type=Path, default=None, help="checkpoint for labels and attention colours"
    )
    p.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="OUT",
        help="write OUT (.gif, .mp4, .png still, or a folder of PNG frames) instead of a window",
    )
    p.add_argument(
        "--size", type=_size, default=(640, 480), metavar="WxH", help="image size (default 640x480)"
    )
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frames per second of the render (default: min(file fps, 15))",
    )
    p.add_argument(
        "--at",
        type=float,
        default=None,
        metavar="S",
        help="time of the still for a .png render (default: the middle)",
    )
    p.add_argument("--no-attention", action="store_true", help="plain colours even with --ckpt")
    p.add_argument("--window", type=float, default=None, metavar="S", help="window length (s)")
    p.add_argument("--stride", type=float, default=None, metavar="S", help="window stride (s)")
    p.add_argument("--device", default="cpu", help="torch device for the model")
    add_body_arguments(p)


def _argv(args: argparse.Namespace) -> list[str]:
    """The command line that reproduces ``args`` (for the re-run under Xvfb)."""
    argv = [
        "view",
        str(args.file),
        "--size",
        f"{args.size[0]}x{args.size[1]}",
        "--body",
        args.body,
        "--device",
        args.device,
    ]
    for name in ("ckpt", "render", "fps", "at", "window", "stride", "body_models"):
        value = getattr(args, name)
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    if args.no_attention:
        argv.append("--no-attention")
    return argv


def _rerun_under_xvfb(args: argparse.Namespace) -> int:
    from stmt.errors import InputError

    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        raise InputError(
            None,
            "no display (DISPLAY is unset) and xvfb-run is not installed; "
            "install it (apt-get install xvfb) or set DISPLAY",
        )
    env = dict(os.environ, **{_UNDER_XVFB: "1"})
    if not env.get("XDG_RUNTIME_DIR"):
        import tempfile

        env["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="stmt-xdg-")
    cmd = [xvfb, "-a", "-s", "-screen 0 1280x1024x24", sys.executable, "-m", "stmt", *_argv(args)]
    return subprocess.call(cmd, env=env)


def main(args: argparse.Namespace) -> int:
    from stmt.errors import InputError

    if not os.environ.get("DISPLAY"):
        if args.render is None:
            raise InputError(
                None, "no display (DISPLAY is unset): use --render OUT, or run under xvfb-run"
            )
        if os.environ.get(_UNDER_XVFB):
            raise InputError(None, "xvfb-run started but DISPLAY is still unset")
        return _rerun_under_xvfb(args)

    from viz.scene import load_scene
    from viz.viewer import Player, import_open3d, render_frames, write_video

    import_open3d()  # fail early, before reading and classifying
    scene = load_scene(
        args.file,
        args.ckpt,
        body=args.body,
        body_models=args.body_models,
        window=args.window,
        stride=args.stride,
        device=args.device,
    )
    width, height = args.size
    if args.render is None:
        Player(
            scene, width, height, visible=True, key_callbacks=True, attention=not args.no_attention
        ).run()
        return 0
    fps = float(min(scene.fps, 15.0) if args.fps is None else args.fps)
    frames = None
    if args.render.suffix.lower() == ".png":
        at = scene.duration / 2 if args.at is None else args.at
        frames = [min(max(int(at * scene.fps), 0), scene.num_frames - 1)]
    images = render_frames(
        scene, fps=fps, width=width, height=height, attention=not args.no_attention, frames=frames
    )
    out = write_video(images, args.render, fps)
    print(f"wrote {out} ({len(images)} frame{'s' if len(images) != 1 else ''}, {width}x{height})")
    return 0
