"""Open3D viewer for stmt: play a MoCap file coloured by the model's attention.

``viz.scene`` (what to show; no Open3D), ``viz.overlay`` (colours and text,
PIL), ``viz.viewer`` (the Open3D player and headless rendering). Open3D is
imported only when a window is opened. Command line: ``stmt view``.
"""

from __future__ import annotations

from viz.scene import Scene, load_scene, scene_from_sequence
from viz.viewer import Player, render_frames, write_video

__all__ = ["Player", "Scene", "load_scene", "render_frames", "scene_from_sequence", "write_video"]
