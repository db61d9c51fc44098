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
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from stmt import limits
from stmt.commands.options import add_body_arguments, joint_map_of
from stmt.errors import InputError
from stmt.fileio import check_folder, check_output
from stmt.inference import resolve_device
from viz.scene import load_scene
from viz.viewer import CAMERAS, Player, adopt_frames, import_open3d, render_frames, write_video

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
    if w > MAX_SIDE or h > MAX_SIDE:
        raise argparse.ArgumentTypeError(
            f"size too large: {text!r} (at most {MAX_SIDE}x{MAX_SIDE})"
        )
    return w, h


def _camera(text: str) -> tuple[float, float]:
    """``front``, ``side`` or ``AZ,EL`` (degrees) -> (azimuth, elevation)."""
    if text.strip().lower() in CAMERAS:
        return CAMERAS[text.strip().lower()]
    try:
        az, el = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected front, side or AZ,EL in degrees (e.g. 30,15), got {text!r}"
        ) from None
    if not (math.isfinite(az) and math.isfinite(el)) or not -89.0 <= el <= 89.0:
        raise argparse.ArgumentTypeError(
            f"AZ,EL must be finite with the elevation in [-89, 89] degrees, got {text!r}"
        )
    return az, el


MAX_SIDE = 4096  # pixels on a side of a render
MAX_RENDER_BYTES = 2 * 1024**3  # the rendered frames are held in memory before writing
RENDER_SUFFIXES = (".gif", ".mp4", ".png")


def check_options(args: argparse.Namespace) -> None:
    """Every number and path of ``stmt view`` checked before anything is read or
    rendered: one InputError line naming the option."""
    if args.fps is not None:
        args.fps = limits.check_fps(None, args.fps, "--fps")
    if args.at is not None:
        args.at = limits.positive_number("at", args.at, low_inclusive=True)
    limits.check_window_stride(args)
    if args.render is not None:
        out = args.render
        if out.suffix and out.suffix.lower() not in RENDER_SUFFIXES:
            raise InputError(
                out, f"unknown render format {out.suffix!r}; use .gif, .mp4, .png or a folder name"
            )
        if out.suffix:
            check_output(out)
        else:  # a folder of PNG frames: stmt's, new or empty (or --overwrite)
            check_folder(out, "stmt view --render", args.overwrite, adopt_frames)
    if args.ckpt is not None:
        resolve_device(args.device)


def check_render_size(args: argparse.Namespace, num_frames: int, width: int, height: int) -> None:
    """Refuse a render whose frames would not fit :data:`MAX_RENDER_BYTES` in memory."""
    size = num_frames * width * height * 3
    if size > MAX_RENDER_BYTES:
        raise InputError(
            None,
            f"rendering {num_frames} frames of {width}x{height} needs {size / 1024**3:.1f} GB "
            f"(more than {MAX_RENDER_BYTES / 1024**3:.0f} GB); use a lower --fps or --size",
        )


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
        help="time of the still for a .png render (default: the middle); past the end of "
        "the sequence is an error",
    )
    p.add_argument(
        "--camera",
        type=_camera,
        default="front",
        metavar="front|side|AZ,EL",
        help="where the camera stands, relative to the way the body faces in the first frame: "
        "front (default; looks it in the face), side (its right), or AZ,EL degrees "
        "(azimuth from the front towards its right, elevation above the horizon)",
    )
    p.add_argument("--no-attention", action="store_true", help="plain colours even with --ckpt")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="--render into an existing folder that holds files stmt did not write (only "
        "frame_NNNNN.png files are written there; the others are kept)",
    )
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
        "--camera",
        f"{args.camera[0]:g},{args.camera[1]:g}",
    ]
    for name in ("ckpt", "render", "fps", "at", "window", "stride", "body_models", "joint_map"):
        value = getattr(args, name)
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    for flag in ("no_attention", "overwrite"):
        if getattr(args, flag):
            argv.append(f"--{flag.replace('_', '-')}")
    return argv


def _rerun_under_xvfb(args: argparse.Namespace) -> int:
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        raise InputError(
            None,
            "no display (DISPLAY is unset) and xvfb-run is not installed; "
            "install it (apt-get install xvfb) or set DISPLAY",
        )
    env = dict(os.environ, **{_UNDER_XVFB: "1"})
    made = None
    if not env.get("XDG_RUNTIME_DIR"):
        made = env["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="stmt-xdg-")
    cmd = [xvfb, "-a", "-s", "-screen 0 1280x1024x24", sys.executable, "-m", "stmt", *_argv(args)]
    try:
        return subprocess.call(cmd, env=env)
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def main(args: argparse.Namespace) -> int:
    check_options(args)
    if not os.environ.get("DISPLAY"):
        if args.render is None:
            raise InputError(
                None, "no display (DISPLAY is unset): use --render OUT, or run under xvfb-run"
            )
        if os.environ.get(_UNDER_XVFB):
            raise InputError(None, "xvfb-run started but DISPLAY is still unset")
        return _rerun_under_xvfb(args)

    import_open3d()  # fail early, before reading and classifying
    scene = load_scene(
        args.file,
        args.ckpt,
        body=args.body,
        body_models=args.body_models,
        joint_map=joint_map_of(args),
        window=args.window,
        stride=args.stride,
        device=args.device,
    )
    width, height = args.size
    if args.render is None:
        Player(
            scene,
            width,
            height,
            visible=True,
            key_callbacks=True,
            attention=not args.no_attention,
            camera=args.camera,
        ).run()
        return 0
    fps = float(min(scene.fps, 15.0) if args.fps is None else args.fps)
    frames = None
    if args.at is not None and args.render.suffix.lower() != ".png":
        print(
            f"stmt: warning: --at is the time of a .png still; {args.render} renders the whole "
            "sequence, so --at is ignored",
            file=sys.stderr,
        )
    if args.render.suffix.lower() == ".png":
        at = scene.duration / 2 if args.at is None else args.at
        if at > scene.duration:
            raise InputError(
                args.file, f"--at {at:g} s is past the end of the sequence ({scene.duration:.2f} s)"
            )
        frames = [min(max(int(at * scene.fps), 0), scene.num_frames - 1)]
    check_render_size(args, 1 if frames else math.ceil(scene.duration * fps) + 1, width, height)
    images = render_frames(
        scene,
        fps=fps,
        width=width,
        height=height,
        attention=not args.no_attention,
        frames=frames,
        camera=args.camera,
    )
    out = write_video(images, args.render, fps, overwrite=args.overwrite)
    print(f"wrote {out} ({len(images)} frame{'s' if len(images) != 1 else ''}, {width}x{height})")
    return 0
