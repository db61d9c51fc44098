"""The viewer: scene maths without Open3D, and real renders under Xvfb.

Render tests start one Xvfb server for this module (skipped only when Xvfb or
a working open3d is genuinely missing; CI installs both) and keep images
small (320x240) and few.
"""

from __future__ import annotations

import itertools
import os
import select
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stmt.errors import InputError
from stmt.inference import Classifier
from stmt.sequence import MeshSequence
from viz.overlay import PLAIN_COLOR, colormap, draw_overlay
from viz.scene import Scene, nearest_point, scene_from_sequence, vertex_patches

CLASSES = ["walk", "jump", "sit"]
ARGS = {"num_classes": 3, "num_frames": 8, "num_points": 64, "centers1": 16, "centers2": 8}
W, H = 320, 240


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    from stmt.model.stmt import build_model

    torch.manual_seed(1)
    model = build_model("stmt_tiny", **ARGS)
    hp = {"arch": "stmt_tiny", "model_args": ARGS, "num_classes": 3, "num_frames": 8, "num_points": 64,
              "class_names": CLASSES, "fps": 30.0, "window_s": 1.0}  # fmt: skip
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"hyper_parameters": hp, "state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STMT_CACHE_DIR", str(tmp_path_factory.mktemp("stmt-cache")))
        yield


def capsule_sequence(seconds: float = 2.0, fps: float = 10.0, faces: bool = True) -> MeshSequence:
    import trimesh

    mesh = trimesh.creation.capsule(height=1.2, radius=0.25, count=[12, 12])
    rest = np.asarray(mesh.vertices, dtype=np.float32) + np.float32([0, 0, 0.85])
    t = np.arange(round(seconds * fps), dtype=np.float32)[:, None] / fps  # (T, 1)
    lean = 0.3 * np.sin(2 * t)[:, :, None] * (rest[None, :, 2:3] - 0.25)  # (T, V, 1)
    verts = np.repeat(rest[None], len(t), 0)  # (T, V, 3)
    verts[..., 0] += 0.4 * t + lean[..., 0]
    return MeshSequence(vertices=verts, faces=np.asarray(mesh.faces) if faces else None, fps=fps,
                        body="mesh", source=Path("capsule.npz"), format="mesh-npz", rest_vertices=rest)  # fmt: skip


@pytest.fixture(scope="module")
def scenes(ckpt, cache_env):
    seq = capsule_sequence()
    clf = Classifier.from_checkpoint(ckpt)
    return {
        "model": scene_from_sequence(seq, classifier=clf),
        "plain": scene_from_sequence(seq),
        "points": scene_from_sequence(capsule_sequence(faces=False), classifier=clf),
    }


def _open3d_works() -> bool:
    try:
        import open3d  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def display():
    """A private Xvfb server for this module's renders (DISPLAY set while it runs)."""
    if shutil.which("Xvfb") is None or not _open3d_works():
        pytest.skip("Xvfb or open3d (with its system libraries) is not installed")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write_fd)
    number = b""
    while not number.endswith(b"\n"):
        ready, _, _ = select.select([read_fd], [], [], 20)
        chunk = os.read(read_fd, 16) if ready else b""
        if not chunk:
            proc.kill()
            pytest.fail("Xvfb did not start")
        number += chunk
    os.close(read_fd)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISPLAY", f":{number.decode().strip()}")
        if not os.environ.get("XDG_RUNTIME_DIR"):
            mp.setenv("XDG_RUNTIME_DIR", str(Path(os.environ.get("TMPDIR", "/tmp"))))
        yield
    proc.terminate()
    proc.wait(timeout=10)


# --------------------------------------------------------------------------- no Open3D
def test_nearest_point_and_vertex_patches():
    rng = np.random.default_rng(0)
    rest = rng.normal(size=(500, 3)).astype(np.float32)
    ids = rng.choice(500, 40, replace=False)
    brute = np.argmin(((rest[:, None] - rest[ids][None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(nearest_point(rest, rest[ids], chunk=64), brute)
    patch_of_point = np.arange(40) % 5
    vp = vertex_patches(rest, ids, patch_of_point)
    np.testing.assert_array_equal(vp, patch_of_point[brute])
    np.testing.assert_array_equal(vp[ids], patch_of_point)  # template vertices keep their patch


def test_timeline_follows_nearest_window_centre():
    from stmt.inference import Prediction

    windows = [(0.0, 2.0, [("a", 0.9)]), (1.0, 3.0, [("b", 0.8)]), (2.0, 4.0, [("c", 0.7)])]
    pred = Prediction(file=Path("x"), windows=windows, overall=[("a", 0.5)], duration_s=4.0)
    scene = Scene(np.zeros((40, 3, 3), np.float32), None, 10.0, Path("x"), prediction=pred)
    assert scene.timeline() == [(0.0, 1.5, "a"), (1.5, 2.5, "b"), (2.5, 4.0, "c")]
    # a calibrated checkpoint's "unknown" window: in the timeline and the labels shown
    pred.unknown_threshold = 0.75
    assert scene.timeline() == [(0.0, 1.5, "a"), (1.5, 2.5, "b"), (2.5, 4.0, "unknown")]
    scene.window_of_frame = np.array([0] * 15 + [1] * 10 + [2] * 15)
    assert scene.top(0) == [("a", 0.9)] and scene.top(39) == [("unknown (best: c)", 0.7)]


def test_scene_colours_and_labels(scenes):
    model, plain = scenes["model"], scenes["plain"]
    assert model.has_attention and not plain.has_attention
    c = model.colors(5)
    assert c.shape == (model.vertices.shape[1], 3) and c.min() >= 0 and c.max() <= 1
    # attention colours are a spread of the colour map, not the plain colour
    assert len(np.unique(c.round(4), axis=0)) > 1
    assert not np.allclose(c, PLAIN_COLOR)
    np.testing.assert_allclose(
        model.colors(5, attention=False), np.broadcast_to(PLAIN_COLOR, c.shape)
    )
    np.testing.assert_allclose(plain.colors(5), np.broadcast_to(PLAIN_COLOR, c.shape))
    # every patch gets its own colour; vertices of a patch share it
    rel = model.relevance[5]
    scaled = (rel - rel.min()) / (rel.max() - rel.min())
    np.testing.assert_allclose(c, colormap(scaled[model.vertex_patch]), atol=1e-6)
    assert set(np.unique(model.vertex_patch)) == set(range(8))

    top = model.top(0)
    assert len(top) == 3 and {a for a, _ in top} == set(CLASSES)
    assert plain.top(0) is None and plain.timeline() is None
    tl = model.timeline()
    assert tl[0][0] == 0.0 and tl[-1][1] == pytest.approx(model.duration)
    assert all(label in CLASSES for _, _, label in tl)


def test_overlay_draws_in_its_regions():
    img = np.full((H, W, 3), 255, np.uint8)
    out = draw_overlay(img, top=[("walk", 0.7), ("run", 0.2), ("sit", 0.1)], time_s=0.5)
    box = out[: H // 3, : W // 2]
    assert (box < 128).any(), "no dark text pixels in the label box"
    assert (out[H // 3 :] == 255).all(), "labels alone must not draw elsewhere"
    legend = draw_overlay(img, legend=True)
    assert (legend[:, -W // 6 :] != 255).any() and (legend[:, : W // 2] == 255).all()
    tl = draw_overlay(img, timeline=[(0, 1, "walk"), (1, 2, "run")], duration_s=2.0, time_s=1.0)
    assert (tl[-H // 8 :] != 255).any() and (tl[H // 6 : H // 2] == 255).all()


# --------------------------------------------------------------------------- Open3D renders
def test_rendered_frame_is_not_blank(display, scenes):
    from viz.viewer import render_frames

    frames = render_frames(scenes["model"], width=W, height=H, frames=[0, 10], overlay=False)
    assert len(frames) == 2 and frames[0].shape == (H, W, 3) and frames[0].dtype == np.uint8
    for f in frames:
        assert f.std() > 10, "blank frame"
        assert (f.min(axis=2) < 200).mean() > 0.02, "too few non-background pixels"
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() > 0.5, (
        "the body did not move"
    )


def test_attention_colouring_differs_from_plain(display, scenes):
    from viz.viewer import render_frames

    att = render_frames(scenes["model"], width=W, height=H, frames=[8], overlay=False)[0].astype(
        int
    )
    plain = render_frames(
        scenes["model"], width=W, height=H, frames=[8], overlay=False, attention=False
    )[0]
    diff = np.abs(att - plain.astype(int)).sum(axis=2)  # (H, W)
    assert (diff > 60).mean() > 0.02, "attention colours look like the plain colours"
    # plain body pixels are skin-grey (r > b); attention pixels include viridis blues/greens
    body = plain.min(axis=2) < 230
    assert (att[body][:, 2] > att[body][:, 0]).mean() > 0.2


def test_label_is_drawn(display, scenes):
    from viz.viewer import render_frames

    with_label = render_frames(scenes["model"], width=W, height=H, frames=[3])[0].astype(int)
    without = render_frames(scenes["model"], width=W, height=H, frames=[3], overlay=False)[
        0
    ].astype(int)
    label_box = (slice(0, H // 3), slice(0, W // 2))
    assert np.abs(with_label[label_box] - without[label_box]).sum(axis=2).max() > 200
    timeline_strip = (slice(H - H // 8, H), slice(0, W))
    assert np.abs(with_label[timeline_strip] - without[timeline_strip]).mean() > 5
    plain = render_frames(scenes["plain"], width=W, height=H, frames=[3], attention=False)[
        0
    ].astype(int)
    plain_raw = render_frames(scenes["plain"], width=W, height=H, frames=[3], overlay=False)[
        0
    ].astype(int)
    # without a model only the time is written: the label lines stay empty
    lines = (slice(H // 12, H // 3), slice(0, W // 2))
    assert np.abs(plain[lines] - plain_raw[lines]).max() == 0


def test_point_cloud_renders(display, scenes):
    from viz.viewer import render_frames

    f = render_frames(scenes["points"], width=W, height=H, frames=[0], overlay=False)[0]
    assert f.std() > 5 and (f.min(axis=2) < 200).mean() > 0.005


def test_player_keys(display, scenes):
    from viz.viewer import Player

    p = Player(scenes["model"], W, H, visible=False)
    try:
        before = np.asarray(p.geom.vertex_colors).copy()
        p.step(1)
        assert p.frame == 1 and not p.playing
        p.step(-2)
        assert p.frame == scenes["model"].num_frames - 1  # wraps around
        p.toggle_attention()
        assert not p.attention
        np.testing.assert_allclose(np.asarray(p.geom.vertex_colors)[0], PLAIN_COLOR, atol=1e-6)
        p.toggle_attention()
        assert p.attention
        np.testing.assert_allclose(
            np.asarray(p.geom.vertex_colors), scenes["model"].colors(p.frame), atol=1e-6
        )
        p.step(-(p.frame))
        np.testing.assert_allclose(np.asarray(p.geom.vertex_colors), before, atol=1e-6)
    finally:
        p.close()


def test_write_outputs(display, scenes, tmp_path):
    import imageio.v3 as iio

    from viz.viewer import render_frames, write_video

    frames = render_frames(scenes["model"], fps=5, width=W, height=H, max_frames=3)
    assert len(frames) == 3
    gif = write_video(frames, tmp_path / "a.gif", 5)
    assert iio.imread(gif, index=None).shape == (3, H, W, 3)
    png = write_video(frames, tmp_path / "still.png", 5)
    assert iio.imread(png).shape[:2] == (H, W)
    folder = write_video(frames, tmp_path / "frames", 5)
    assert sorted(p.name for p in folder.iterdir()) == [
        ".stmt-output.json",  # the names stmt wrote there (stmt.fileio)
        "frame_00000.png",
        "frame_00001.png",
        "frame_00002.png",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], (
        "temporary files left behind"
    )
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        pass
    else:
        mp4 = write_video(frames, tmp_path / "a.mp4", 5)
        assert iio.imread(mp4, index=None).shape[0] == 3
    with pytest.MonkeyPatch.context() as mp:  # as if imageio-ffmpeg were not installed
        mp.setitem(sys.modules, "imageio_ffmpeg", None)
        with pytest.raises(InputError, match=r"imageio-ffmpeg.*\.gif"):
            write_video(frames, tmp_path / "b.mp4", 5)
    assert not (tmp_path / "b.mp4").exists()
    with pytest.raises(InputError, match="unknown render format"):
        write_video(frames, tmp_path / "a.avi", 5)


# --------------------------------------------------------------------------- the command
def _mesh_npz(path: Path) -> Path:
    seq = capsule_sequence(1.0, 10.0)
    np.savez(path, vertices=seq.vertices, faces=seq.faces, fps=np.float32(10.0))
    return path


def test_view_render_reruns_itself_under_xvfb(ckpt, tmp_path, cache_env):
    if shutil.which("xvfb-run") is None or not _open3d_works():
        pytest.skip("xvfb-run or open3d is not installed")
    src = _mesh_npz(tmp_path / "clip.npz")
    out = tmp_path / "clip.gif"
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    proc = subprocess.run(
        [sys.executable, "-m", "stmt", "view", str(src), "--ckpt", str(ckpt), "--render", str(out),
         "--size", f"{W}x{H}", "--fps", "4"],
        env=env, check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out} (4 frames, {W}x{H})" in proc.stdout
    import imageio.v3 as iio

    frames = iio.imread(out, index=None)
    assert frames.shape == (4, H, W, 3) and frames[0].std() > 10


def test_view_without_display_or_render_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from stmt.cli import main

    monkeypatch.delenv("DISPLAY", raising=False)
    code = main(["view", str(_mesh_npz(tmp_path / "c.npz"))])
    assert code == 2
    assert "no display" in capsys.readouterr().err


# --------------------------------------------------------------------------- colours, legend, camera
def test_every_class_has_its_own_colour_readable_on_white():
    from viz.overlay import label_color

    colours = [label_color(i) for i in range(120)]  # BABEL-120
    assert len(set(colours)) == 120
    assert all(sum(c) < 3 * 235 for c in colours)  # none close to the white background
    # neighbours in the class list differ clearly (index mod 10 made jump and hop alike)
    for a, b in itertools.pairwise(colours):
        assert sum(abs(x - y) for x, y in zip(a, b)) > 60


def test_timeline_legend_shows_each_label_in_its_class_colour():
    from viz.overlay import label_color

    img = np.full((240, 320, 3), 255, np.uint8)
    timeline = [(0.0, 1.0, "walk"), (1.0, 2.0, "hop"), (2.0, 3.0, "walk")]
    index = {"jump": 6, "hop": 17, "walk": 0}
    out = draw_overlay(img, timeline=timeline, duration_s=3.0, label_index=index)
    bar_top = 240 - max(4, 10 // 3) - max(8, 240 // 20)
    above = out[: bar_top - 2]  # the legend rows sit above the bar
    for name in ("walk", "hop"):
        swatch = (above == label_color(index[name])).all(axis=-1)
        assert swatch.sum() >= 0.8 * 10 * 10, f"no legend swatch in the colour of {name}"
        bar = (out[bar_top:] == label_color(index[name])).all(axis=-1)
        assert bar.sum() > 100, f"no timeline segment in the colour of {name}"
    assert not (above == label_color(index["jump"])).all(axis=-1).any()  # not in the timeline


def test_legend_entries_never_overlap():
    from viz.overlay import legend_layout

    names = [f"class {'x' * (i % 7)}{i}" for i in range(30)]
    width = lambda t: 7 * len(t)
    entries = legend_layout(names, width, 4, 316, swatch=10, gap=8)
    boxes = [(x, r, x + 10 + 4 + width(n)) for x, r, n in entries]
    for (xa, ra, ea), (xb, rb, eb) in itertools.combinations(boxes, 2):
        assert ra != rb or ea <= xb or eb <= xa, "legend entries overlap"
    assert all(e <= 316 for _, _, e in boxes)
    assert max(r for _, r, _ in entries) > 0  # it wrapped


def test_body_facing_from_joints_and_from_the_mesh():
    from viz.scene import body_facing

    seq = capsule_sequence(0.5, 10.0)
    hips = np.zeros((seq.num_frames, 2, 3), np.float32)
    hips[:, 0, 0], hips[:, 1, 0] = -0.1, 0.1  # left hip at -x, right at +x: faces +y
    seq.joints, seq.joint_names = hips, ["left_hip", "right_hip"]
    np.testing.assert_allclose(body_facing(seq), [0.0, 1.0], atol=1e-6)
    seq.joint_names = ["RightUpLeg", "LeftUpLeg"]  # anny's names, sides swapped: faces -y
    np.testing.assert_allclose(body_facing(seq), [0.0, -1.0], atol=1e-6)
    # no joints: wide along x, feet (the lowest points) reaching out towards -y
    rng = np.random.default_rng(0)
    body = rng.uniform([-0.25, -0.1, 0.1], [0.25, 0.1, 1.7], (2000, 3))
    feet = rng.uniform([-0.15, -0.2, 0.0], [0.15, 0.0, 0.05], (200, 3))
    mesh = MeshSequence(np.concatenate([body, feet])[None].astype(np.float32), None, 30.0, "mesh",
                        Path("m.npz"))  # fmt: skip
    np.testing.assert_allclose(body_facing(mesh), [0.0, -1.0], atol=0.05)  # random points


def test_camera_direction():
    from viz.viewer import camera_direction

    np.testing.assert_allclose(camera_direction(np.array([0.0, 1.0]), 0, 0), [0, 1, 0], atol=1e-9)
    np.testing.assert_allclose(camera_direction(np.array([0.0, 1.0]), 90, 0), [1, 0, 0], atol=1e-9)
    np.testing.assert_allclose(camera_direction(np.array([1.0, 0.0]), 0, 90), [0, 0, 1], atol=1e-9)


def _front_marked_scene(facing: tuple[float, float]) -> Scene:
    """A capsule whose front half (towards ``facing``) has the top attention colour
    (yellow) and its back half the lowest (dark purple)."""
    seq = capsule_sequence(0.5, 10.0)
    v = seq.vertices
    front = (v[0, :, :2] - v[0, :, :2].mean(0)) @ np.asarray(facing) > 0.05  # (V,)
    return Scene(v, seq.faces, 10.0, Path("c.npz"), relevance=np.tile([[0.0, 1.0]], (len(v), 1)),
                 vertex_patch=front.astype(np.int64), facing=np.asarray(facing))  # fmt: skip


def _yellow_purple(img: np.ndarray) -> tuple[int, int]:
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return int(((g > b + 60) & (r > b + 60)).sum()), int(((b > g + 25) & (r > g + 25)).sum())


def test_front_camera_sees_the_front_of_the_body(display):
    from viz.viewer import render_frames

    for facing in ((0.0, 1.0), (-0.6, -0.8)):
        scene = _front_marked_scene(facing)
        front = render_frames(scene, width=W, height=H, frames=[0], overlay=False)[0]
        back = render_frames(
            scene, width=W, height=H, frames=[0], overlay=False, camera=(180.0, 10.0)
        )[0]
        side = render_frames(
            scene, width=W, height=H, frames=[0], overlay=False, camera=(90.0, 10.0)
        )[0]
        fy, fp = _yellow_purple(front)
        by, bp = _yellow_purple(back)
        sy, sp = _yellow_purple(side)
        assert fy > 500 and fy > 10 * fp, (facing, fy, fp)  # the front: yellow
        assert bp > 500 and bp > 10 * by, (facing, by, bp)  # from behind: purple
        assert sy > 200 and sp > 200, (facing, sy, sp)  # from the side: both halves


def test_view_camera_option_and_at(display, tmp_path, capsys, cache_env):
    from stmt.cli import main

    src = _mesh_npz(tmp_path / "c.npz")
    still = tmp_path / "s.png"
    code = main(["view", str(src), "--render", str(still), "--size", f"{W}x{H}", "--at", "9"])
    err = capsys.readouterr().err
    assert code == 2 and "--at 9 s is past the end of the sequence (1.00 s)" in err
    assert not still.exists()
    gif = tmp_path / "a.gif"
    code = main(["view", str(src), "--render", str(gif), "--size", f"{W}x{H}", "--fps", "2",
                 "--at", "0.5", "--camera", "side"])  # fmt: skip
    assert code == 0 and gif.exists()
    assert "--at is ignored" in capsys.readouterr().err
    for bad in ("top", "30", "10,95", "nan,0"):
        with pytest.raises(SystemExit) as exit_:
            main(["view", str(src), "--render", str(still), "--camera", bad])
        assert exit_.value.code == 2
        assert "--camera" in capsys.readouterr().err


def test_triton_loads_after_a_render(display):
    """Mesa's OpenGL brings its own LLVM; Triton imported after a render crashed the process
    (segmentation fault; the suite in another file order hit it through anny -> roma ->
    torch -> triton). The viewer loads Triton first; a fresh process renders, then imports."""
    import importlib.util

    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import numpy as np, trimesh\n"
        "from pathlib import Path\n"
        "from stmt.sequence import MeshSequence\n"
        "from viz.scene import scene_from_sequence\n"
        "from viz.viewer import render_frames\n"
        "m = trimesh.creation.icosphere(2)\n"
        "v = np.repeat(np.asarray(m.vertices, np.float32)[None], 3, 0)\n"
        "seq = MeshSequence(vertices=v, faces=np.asarray(m.faces), fps=10.0, body='mesh',\n"
        "                   source=Path('s.npz'), format='mesh-npz', rest_vertices=v[0])\n"
        "frames = render_frames(scene_from_sequence(seq), width=64, height=48, frames=[0],\n"
        "                       overlay=False)\n"
        "assert frames[0].std() > 1, 'blank frame'\n"
        "import triton.language\n"
        "print('rendered, then loaded triton')\n"
    )
    repo = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        [sys.executable, "-c", code, repo], check=False, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "rendered, then loaded triton" in proc.stdout
