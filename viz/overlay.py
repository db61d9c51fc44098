"""Colours and the text drawn over rendered frames (PIL; no Open3D).

Open3D's legacy visualiser cannot draw text, so labels, the attention colour
bar, the window timeline and its class legend are drawn onto the captured
image here.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# viridis at 5 stops: low attention dark blue -> high attention yellow
_VIRIDIS = np.array(
    [
        [0.267, 0.005, 0.329],
        [0.229, 0.322, 0.546],
        [0.128, 0.567, 0.551],
        [0.369, 0.789, 0.383],
        [0.993, 0.906, 0.144],
    ],
    dtype=np.float32,
)
PLAIN_COLOR = np.array([0.78, 0.72, 0.66], dtype=np.float32)  # skin-grey, no attention


def colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (any shape S) to RGB floats (S, 3) along viridis."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32)), 0.0, 1.0)
    x = v * (len(_VIRIDIS) - 1)
    lo = np.clip(np.floor(x).astype(np.int64), 0, len(_VIRIDIS) - 2)
    w = (x - lo)[..., None]
    return (_VIRIDIS[lo] * (1 - w) + _VIRIDIS[lo + 1] * w).astype(np.float32)


def label_color(index: int) -> tuple[int, int, int]:
    """The colour of class ``index``: a different one for every index (hues a golden
    angle apart, three lightness levels in turn), dark enough to read on white."""
    hue = (0.61 + index * 0.6180339887) % 1.0
    value = (0.80, 0.62, 0.95)[index % 3]
    r, g, b = colorsys.hsv_to_rgb(hue, 0.78, value)
    return round(255 * r), round(255 * g), round(255 * b)


def merge_segments(timeline: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Neighbouring timeline segments with the same label as one segment."""
    merged: list[list] = []
    for start, end, label in timeline:
        if merged and merged[-1][2] == label and abs(merged[-1][1] - start) < 1e-6:
            merged[-1][1] = end
        else:
            merged.append([start, end, label])
    return [(a, b, label) for a, b, label in merged]


def legend_layout(
    labels: list[str], text_width, x0: float, x1: float, swatch: int, gap: int
) -> list[tuple[float, int, str]]:
    """Place legend entries ``[swatch] label`` left to right, wrapping to a new row when
    one would pass ``x1``: ``[(x, row, label)]``. Entries never overlap."""
    out, x, row = [], x0, 0
    for label in labels:
        w = swatch + gap // 2 + text_width(label)
        if x > x0 and x + w > x1:
            x, row = x0, row + 1
        out.append((x, row, label))
        x += w + gap
    return out


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def draw_overlay(
    image: np.ndarray,
    *,
    top: list[tuple[str, float]] | None = None,
    time_s: float | None = None,
    legend: bool = False,
    timeline: list[tuple[float, float, str]] | None = None,
    duration_s: float | None = None,
    label_index: dict[str, int] | None = None,
) -> np.ndarray:
    """Draw labels, legend and timeline onto an (H, W, 3) uint8 frame; returns a copy.

    Args:
        top: the current window's top labels ``[(label, prob), ...]`` (top-left box).
        time_s: the current time, written above the labels and marked on the timeline.
        legend: draw the attention colour bar (right edge, "high" on top).
        timeline: ``[(start_s, end_s, label)]`` segments along the bottom edge, one
            colour per class (:func:`label_color`), with the current time as a black
            marker and a legend of the labels (swatch and name) above it.
        duration_s: the timeline's full length.
        label_index: class name -> class index (the colour; keeps colours stable across
            frames and files). Labels it lacks get the next free indices.
    """
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    h, w = image.shape[:2]
    size = max(10, h // 24)
    font = _font(size)
    pad = max(4, size // 3)

    lines = []
    if time_s is not None:
        lines.append((f"t = {time_s:5.2f} s", (60, 60, 60)))
    for label, prob in top or []:
        lines.append((f"{label}  {100 * prob:4.1f}%", (0, 0, 0)))
    if lines:
        y = pad
        for i, (text, color) in enumerate(lines):
            box = draw.textbbox((pad, y), text, font=font)
            draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(255, 255, 255))
            draw.text(
                (pad, y), text, fill=color if i or time_s is None else (60, 60, 60), font=font
            )
            y = box[3] + pad // 2

    bar_h = max(8, h // 20)
    bottom = h - pad
    if timeline and duration_s:
        top_y = bottom - bar_h
        x0, x1 = pad, w - pad
        draw.rectangle((x0, top_y, x1, bottom), fill=(230, 230, 230))
        index = dict(label_index or {})
        segments = merge_segments(timeline)
        for _, _, label in segments:
            index.setdefault(label, len(index))
        for start, end, label in segments:
            a = x0 + (x1 - x0) * start / duration_s
            b = x0 + (x1 - x0) * end / duration_s
            draw.rectangle((a, top_y, max(a + 1, b), bottom), fill=label_color(index[label]))
        if time_s is not None:
            x = x0 + (x1 - x0) * min(max(time_s / duration_s, 0.0), 1.0)
            draw.rectangle((x - 1, top_y - 3, x + 1, bottom + 2), fill=(0, 0, 0))
        # the class legend above the bar: one swatch and name per label, in order of appearance
        names = list(dict.fromkeys(label for _, _, label in segments))
        swatch, row_h = size, size + pad // 2 + 2
        entries = legend_layout(
            names, lambda t: draw.textlength(t, font=font), x0, x1, swatch, pad * 2
        )
        rows = 1 + max(r for _, r, _ in entries)
        y_first = top_y - 4 - rows * row_h
        for x, r, label in entries:
            y = y_first + r * row_h
            draw.rectangle((x, y, x + swatch, y + swatch), fill=label_color(index[label]))
            draw.text((x + swatch + pad // 2, y), label, fill=(0, 0, 0), font=font)
        bottom = y_first - 4

    if legend:
        lw = max(8, w // 40)
        x1 = w - pad
        x0 = x1 - lw
        y0 = pad + size + 4
        y1 = max(y0 + 20, min(bottom, y0 + h // 2))
        ramp = colormap(np.linspace(1.0, 0.0, y1 - y0))  # (H_bar, 3) high at the top
        bar = (np.repeat(ramp[:, None, :], lw, axis=1) * 255).astype(np.uint8)
        img.paste(Image.fromarray(bar), (x0, y0))
        draw.rectangle((x0 - 1, y0 - 1, x1, y1), outline=(0, 0, 0))
        for text, y in (("high", y0 - size - 2), ("low", y1 + 2)):
            tw = draw.textlength(text, font=font)
            draw.text((x1 - tw, y), text, fill=(0, 0, 0), font=font)
        title = "attention"
        tw = draw.textlength(title, font=font)
        draw.text((x0 - tw - 4, (y0 + y1 - size) // 2), title, fill=(0, 0, 0), font=font)
    return np.asarray(img)
