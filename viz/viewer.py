"""Open3D player for a :class:`viz.scene.Scene`: interactive window or headless render.

Uses Open3D's legacy ``Visualizer`` (``OffscreenRenderer`` needs EGL/Vulkan,
which a plain Xvfb machine lacks). Without a display of your own, run under
Xvfb; ``stmt view --render`` re-executes itself under ``xvfb-run -a`` when
``DISPLAY`` is unset.

The legacy visualiser draws no text. So:

- **renders** (GIF/MP4/PNG) get the current window's top-3 labels, the colour
  legend and the window timeline drawn onto each captured frame with PIL
  (:func:`viz.overlay.draw_overlay`); screenshots taken with S get the same;
- the **interactive window** shows the mesh only; the labels of the current
  window are printed to the terminal whenever the window changes, and the
  timeline once at start.

Keys (interactive): space play/pause, left/right step one frame (pauses),
A attention colours on/off, S screenshot (PNG in the current folder), Q quit.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from stmt.errors import InputError
from stmt.fileio import atomic_path, atomic_write, new_folder
from viz.overlay import draw_overlay
from viz.scene import Scene

BACKGROUND = (1.0, 1.0, 1.0)
CAMERAS = {"front": (0.0, 10.0), "side": (90.0, 10.0)}  # azimuth, elevation (degrees)


def camera_direction(facing: np.ndarray, azimuth: float, elevation: float) -> np.ndarray:
    """(3,) unit vector from the body towards the camera: ``azimuth`` degrees from the
    body's front (``facing``, (2,) horizontal) towards its right, ``elevation`` degrees
    above the horizon. (0, 0) looks the body in the face; (90, 0) at its right side."""
    f = np.array([facing[0], facing[1], 0.0], dtype=np.float64)
    f /= max(np.linalg.norm(f), 1e-12)
    right = np.cross(f, [0.0, 0.0, 1.0])  # (3,)
    az, el = np.radians(azimuth), np.radians(elevation)
    horizontal = np.cos(az) * f + np.sin(az) * right
    return np.cos(el) * horizontal + np.sin(el) * np.array([0.0, 0.0, 1.0])


# GLFW key codes
KEY_SPACE, KEY_RIGHT, KEY_LEFT = 32, 262, 263


def import_open3d():
    """open3d, or an :class:`InputError` saying how to get it."""
    _load_triton_first()
    try:
        import open3d as o3d
    except ImportError as err:
        raise InputError(
            None,
            f"stmt view needs open3d ({err}); install it with pip install 'stmt[viz]' "
            "and the system libraries libgl1 libegl1 libgomp1 libusb-1.0-0",
        ) from None
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    return o3d


def _load_triton_first() -> None:
    """Import Triton, where installed, before Open3D makes an OpenGL context.

    Mesa's OpenGL (the software llvmpipe under Xvfb, and radeonsi) loads its own LLVM;
    Triton loaded after it in the same process crashes on the clash (a segmentation
    fault, seen importing anny, whose roma import pulls Triton in through torch). In the
    other order both work. ``stmt view`` itself loads nothing after rendering, but a
    session that views and then trains or poses does (and so did the test suite, run in
    another order).
    """
    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
        with contextlib.suppress(ImportError):  # a broken triton is not the viewer's concern
            import triton  # noqa: F401


def _floor_grid(o3d, vertices: np.ndarray, step: float = 0.5):
    """A grey grid on the floor (z = lowest point) under the whole motion."""
    lo = vertices.reshape(-1, 3).min(axis=0) - 0.5  # (3,)
    hi = vertices.reshape(-1, 3).max(axis=0) + 0.5
    z = lo[2] + 0.5
    xs = np.arange(np.floor(lo[0] / step) * step, hi[0] + step, step)
    ys = np.arange(np.floor(lo[1] / step) * step, hi[1] + step, step)
    pts, lines = [], []
    for x in xs:
        pts += [[x, ys[0], z], [x, ys[-1], z]]
        lines.append([len(pts) - 2, len(pts) - 1])
    for y in ys:
        pts += [[xs[0], y, z], [xs[-1], y, z]]
        lines.append([len(pts) - 2, len(pts) - 1])
    grid = o3d.geometry.LineSet(
        o3d.utility.Vector3dVector(np.asarray(pts, dtype=np.float64)),
        o3d.utility.Vector2iVector(np.asarray(lines, dtype=np.int32)),
    )
    grid.paint_uniform_color([0.75, 0.75, 0.75])
    return grid


class Player:
    """Owns the Open3D geometry of a scene and the playback state."""

    def __init__(
        self,
        scene: Scene,
        width: int = 640,
        height: int = 480,
        visible: bool = False,
        key_callbacks: bool = False,
        attention: bool = True,
        camera: tuple[float, float] = CAMERAS["front"],
    ):
        self.o3d = import_open3d()
        self.scene = scene
        self.width, self.height = int(width), int(height)
        self.frame = 0
        self.playing = True
        self.attention = attention and scene.has_attention
        o3d = self.o3d
        vis_cls = (
            o3d.visualization.VisualizerWithKeyCallback
            if key_callbacks
            else o3d.visualization.Visualizer
        )
        self.vis = vis_cls()
        title = f"stmt view - {scene.source.name}"
        if not self.vis.create_window(
            window_name=title, width=self.width, height=self.height, visible=visible
        ):
            raise InputError(
                None,
                "Open3D could not open a window (is DISPLAY set? try `xvfb-run -a stmt view ...`)",
            )
        v0 = scene.vertices[0].astype(np.float64)
        if scene.faces is not None:
            self.geom = o3d.geometry.TriangleMesh(
                o3d.utility.Vector3dVector(v0),
                o3d.utility.Vector3iVector(scene.faces.astype(np.int32)),
            )
            self.geom.compute_vertex_normals()
        else:
            self.geom = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(v0))
        self._set_colors()
        # the view box is the body's (first geometry), so the zoom frames the body, not
        # the whole floor it walks over. Open3D places its lights around that box, seen
        # from the camera: so the body stays in it and the world (the floor) moves
        # under it instead of the camera following the body, which left a body that
        # walked towards a front camera past the lights, lit from behind (black).
        self.vis.add_geometry(self.geom)
        self.grid = _floor_grid(o3d, scene.vertices)
        self._grid_points = np.asarray(self.grid.points).copy()  # (G, 3) world
        self.vis.add_geometry(self.grid, reset_bounding_box=False)
        opt = self.vis.get_render_option()
        opt.background_color = np.asarray(BACKGROUND)
        opt.point_size = 4.0
        opt.mesh_show_back_face = True
        ctr = self.vis.get_view_control()
        lo, hi = scene.vertices.min(axis=1), scene.vertices.max(axis=1)  # (T, 3) each
        self._centres = (lo + hi) / 2  # (T, 3) per-frame box centre
        self._centres[:, 2] = (lo[:, 2].min() + hi[:, 2].max()) / 2  # fixed height: jumps show
        self._ctr = ctr
        ctr.set_up([0.0, 0.0, 1.0])
        self._front = camera_direction(scene.facing, *camera)  # (3,) body -> camera
        ctr.set_front(self._front)
        ctr.set_zoom(0.9)
        ctr.set_lookat(self._centres[0].astype(np.float64))

    # ----------------------------------------------------------------- state
    def _set_colors(self) -> None:
        colors = self.scene.colors(self.frame, self.attention).astype(np.float64)
        if isinstance(self.geom, self.o3d.geometry.TriangleMesh):
            self.geom.vertex_colors = self.o3d.utility.Vector3dVector(colors)
        else:
            self.geom.colors = self.o3d.utility.Vector3dVector(colors)

    def show(self, frame: int) -> None:
        """Pose the geometry at ``frame`` (clamped) and recolour it."""
        self.frame = int(np.clip(frame, 0, self.scene.num_frames - 1))
        shift = (self._centres[self.frame] - self._centres[0]).astype(np.float64)  # (3,)
        v = self.scene.vertices[self.frame].astype(np.float64) - shift
        if isinstance(self.geom, self.o3d.geometry.TriangleMesh):
            self.geom.vertices = self.o3d.utility.Vector3dVector(v)
            self.geom.compute_vertex_normals()
        else:
            self.geom.points = self.o3d.utility.Vector3dVector(v)
        self._set_colors()
        self.vis.update_geometry(self.geom)
        self.grid.points = self.o3d.utility.Vector3dVector(self._grid_points - shift)
        self.vis.update_geometry(self.grid)

    def toggle_attention(self) -> None:
        self.attention = (not self.attention) and self.scene.has_attention
        self.show(self.frame)

    def step(self, delta: int) -> None:
        self.playing = False
        self.show((self.frame + delta) % self.scene.num_frames)

    def capture(self, overlay: bool = True, check: bool = False) -> np.ndarray:
        """(H, W, 3) uint8 image of the current frame, with labels drawn when ``overlay``;
        with ``check``, :func:`check_shaded` on the body's pixels first."""
        self.vis.poll_events()
        self.vis.update_renderer()
        img = np.asarray(self.vis.capture_screen_float_buffer(do_render=True))  # (H, W, 3) float
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        if check:
            check_shaded(img, self.frame / self.scene.fps)
        if not overlay:
            return img
        s = self.scene
        return draw_overlay(
            img,
            top=s.top(self.frame),
            time_s=self.frame / s.fps,
            legend=self.attention,
            timeline=s.timeline(),
            duration_s=s.duration,
            label_index=s.label_index,
        )

    def close(self) -> None:
        self.vis.destroy_window()

    # ----------------------------------------------------------------- interactive
    def run(self) -> None:
        """Play in a window until Q or the window is closed (see the module docstring)."""
        vis = self.vis
        s = self.scene
        if s.timeline():
            print(f"{s.source}: window timeline (top-1)")
            for a, b, label in s.timeline():
                print(f"  {a:7.2f} - {b:7.2f} s  {label}")
        print("keys: space play/pause, left/right step, A attention, S screenshot, Q quit")
        state = {"last": time.perf_counter(), "window": None}

        def report() -> None:
            if s.window_of_frame is None:
                return
            w = int(s.window_of_frame[self.frame])
            if w != state["window"]:
                state["window"] = w
                top = "  ".join(f"{a} {p:.2f}" for a, p in s.top(self.frame))
                print(f"t = {self.frame / s.fps:6.2f} s  {top}", flush=True)

        def on_tick(_vis) -> bool:
            now = time.perf_counter()
            if not self.playing:
                state["last"] = now
                return False
            advance = int((now - state["last"]) * s.fps)
            if advance < 1:
                return False
            state["last"] += advance / s.fps
            self.show((self.frame + advance) % s.num_frames)
            report()
            return True

        def key(fn):
            def callback(_vis) -> bool:
                fn()
                report()
                return True

            return callback

        def screenshot() -> None:
            path = Path(f"stmt_view_{s.source.stem}_{self.frame:05d}.png")
            save_png(self.capture(), path)
            print(f"saved {path}", flush=True)

        def toggle_play() -> None:
            self.playing = not self.playing

        vis.register_key_callback(KEY_SPACE, key(toggle_play))
        vis.register_key_callback(KEY_RIGHT, key(lambda: self.step(1)))
        vis.register_key_callback(KEY_LEFT, key(lambda: self.step(-1)))
        vis.register_key_callback(ord("A"), key(self.toggle_attention))
        vis.register_key_callback(ord("S"), key(screenshot))
        vis.register_key_callback(ord("Q"), key(vis.close))
        vis.register_animation_callback(on_tick)
        report()
        vis.run()
        self.close()


# --------------------------------------------------------------------------- rendering
FLAT_LUMA_SPREAD = 0.02  # a lit body's pixels differ by more than this (of full scale)
DARK_LUMA = 0.06  # darker than this is unlit


def body_mask(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of a render (before the overlay) that are neither the
    white background nor the grey floor grid (light neutral greys, antialiased into the
    white): the body's, lit or not."""
    rgb = image.astype(np.float64) / 255.0  # (H, W, 3)
    neutral = rgb.max(axis=2) - rgb.min(axis=2) < 0.04
    return ~(neutral & (rgb.mean(axis=2) > 0.6))


def check_shaded(image: np.ndarray, time_s: float = 0.0) -> None:
    """Refuse a render (H, W, 3) uint8 whose body (:func:`body_mask`) is one flat colour:
    an unlit silhouette, mostly black, or no shading at all. One InputError naming the
    time; a body out of view (fewer than 20 pixels) is not judged."""
    mask = body_mask(image)
    if mask.sum() < 20:
        return
    luma = (image[mask].astype(np.float64) / 255.0) @ np.array([0.299, 0.587, 0.114])  # (K,)
    dark = float((luma < DARK_LUMA).mean())
    spread = float(np.percentile(luma, 90) - np.percentile(luma, 10))
    if dark > 0.5 or spread < FLAT_LUMA_SPREAD:
        what = f"{dark:.0%} of it black" if dark > 0.5 else "one flat colour"
        raise InputError(
            None,
            f"the render at {time_s:.2f} s shows the body unlit ({what}); nothing was written "
            "(try another --camera, and report it)",
        )


def render_frames(
    scene: Scene,
    fps: float | None = None,
    width: int = 640,
    height: int = 480,
    attention: bool = True,
    overlay: bool = True,
    max_frames: int | None = None,
    frames: list[int] | None = None,
    camera: tuple[float, float] = CAMERAS["front"],
) -> list[np.ndarray]:
    """Render the scene headlessly (needs a display, e.g. Xvfb) at ``fps`` frames per second.

    Returns a list of (H, W, 3) uint8 images. ``frames`` picks sequence frames explicitly;
    ``camera`` is (azimuth, elevation) in degrees from the body's front
    (:func:`camera_direction`).
    """
    if frames is None:
        fps = float(min(scene.fps, 15.0) if fps is None else fps)
        count = max(1, int(np.floor(scene.duration * fps + 1e-9)))
        frames = [
            min(int(np.floor(k / fps * scene.fps)), scene.num_frames - 1) for k in range(count)
        ]
    if max_frames is not None:
        frames = frames[:max_frames]
    player = Player(scene, width, height, visible=False, attention=attention, camera=camera)
    try:
        out = []
        for f in frames:
            player.show(f)
            out.append(player.capture(overlay=overlay, check=True))
        return out
    finally:
        player.close()


def save_png(image: np.ndarray, path: Path) -> None:
    """Write one PNG atomically (:func:`stmt.fileio.atomic_write`)."""
    with atomic_write(path) as f:
        Image.fromarray(image).save(f, format="PNG", optimize=True)


FRAME_NAME = re.compile(r"frame_\d{5}\.png")


def adopt_frames(path: Path, entries: set[str]) -> set[str]:
    """The frames an earlier ``stmt view --render FOLDER`` wrote in a folder without a
    marker (:func:`stmt.fileio.check_folder`): a folder of ``frame_NNNNN.png`` only."""
    return entries if entries and all(FRAME_NAME.fullmatch(n) for n in entries) else set()


def write_video(
    images: list[np.ndarray], out: str | Path, fps: float, overwrite: bool = False
) -> Path:
    """Write frames to ``out``: .gif, .mp4, .png (the middle frame) or a folder of PNGs
    (any other name; ``frame_00000.png`` ...), each file atomically. A folder is an
    output folder of :mod:`stmt.fileio` (one holding other files needs ``overwrite``;
    they are kept, and frames of an earlier, longer render there are removed)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".png":
        save_png(images[len(images) // 2], out)
        return out
    if suffix in (".gif", ".mp4"):
        if suffix == ".mp4":
            try:
                import imageio_ffmpeg  # noqa: F401
            except ImportError:
                raise InputError(
                    out,
                    "writing MP4 needs imageio-ffmpeg (pip install imageio-ffmpeg); or write a .gif",
                ) from None
        import imageio.v2 as imageio
        import imageio.v3 as iio

        with atomic_path(out) as tmp:
            if suffix == ".gif":
                iio.imwrite(tmp, np.stack(images), duration=1000.0 / fps, loop=0)
            else:
                with imageio.get_writer(
                    tmp, fps=fps, codec="libx264", quality=7, macro_block_size=8
                ) as w:
                    for im in images:
                        w.append_data(im)
        return out
    if suffix:
        raise InputError(
            out, f"unknown render format {suffix!r}; use .gif, .mp4, .png or a folder name"
        )
    names = [f"frame_{i:05d}.png" for i in range(len(images))]
    with new_folder(out, "stmt view --render", overwrite, adopt_frames) as folder:
        folder.own(*names)
        for name, im in zip(names, images):
            save_png(im, folder.path / name)
        for name in sorted(folder.owned - set(names)):
            if FRAME_NAME.fullmatch(name):
                folder.remove(name)  # a longer render's frames: not this one's
    return out
