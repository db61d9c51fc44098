"""Open3D viewer for stmt: play a MoCap file coloured by the model's attention.

``viz.scene`` (what to show; no Open3D), ``viz.overlay`` (colours and text,
PIL), ``viz.viewer`` (the Open3D player and headless rendering). Open3D is
imported only when a window is opened. Command line: ``stmt view``.
"""

from __future__ import annotations

__all__ = ["Player", "Scene", "load_scene", "render_frames", "scene_from_sequence", "write_video"]


def __getattr__(name: str):
    if name in ("Scene", "load_scene", "scene_from_sequence"):
        from viz import scene

        return getattr(scene, name)
    if name in ("Player", "render_frames", "write_video"):
        from viz import viewer

        return getattr(viewer, name)
    raise AttributeError(f"module 'viz' has no attribute {name!r}")
