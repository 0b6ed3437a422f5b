"""Drawing one synthetic scene: shapes over a cluttered background, with exact boxes.

Each shape's box is the tight bound of the pixels it covered when drawn, before later shapes
hid any of it, clipped to the image; ``owner`` records which object is on top at each pixel
so occlusion is measured, not guessed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

SHAPES = ("circle", "square", "triangle", "star", "cross")
HEAVY_OCCLUSION = 0.5  # at or above: COCO "heavily_occluded", VOC <difficult>1
_MAX_OCCLUSION = 0.8  # a placement that would hide more of an earlier shape is retried
_MIN_INSIDE = 0.5  # share of a shape's pixels that must land inside the image
_MIN_PIXELS = 24  # smallest visible shape worth annotating
_TRIES = 30  # placements tried before a shape is dropped from a crowded image

UInt8Array = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class SyntheticObject:
    """One drawn shape: its class, tight box, drawn area and how much later shapes hid."""

    category_index: int
    box_xywh_px: tuple[int, int, int, int]
    area_px: int
    occlusion: float
    truncated: bool

    @property
    def heavily_occluded(self) -> bool:
        """True when later shapes cover at least HEAVY_OCCLUSION of this one (VOC difficult)."""
        return self.occlusion >= HEAVY_OCCLUSION


@dataclass(frozen=True)
class Scene:
    """One rendered image before JPEG encoding; ``owner`` is 0 or 1 + the topmost object."""

    image_bgr: UInt8Array
    owner: npt.NDArray[np.int16]
    objects: tuple[SyntheticObject, ...]


def _background(rng: np.random.Generator, width: int, height: int) -> UInt8Array:
    """A gradient, stripe, blotchy-noise or flat background with non-object clutter."""
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    angle = rng.uniform(0, math.pi)
    along = xs * np.float32(math.cos(angle)) + ys * np.float32(math.sin(angle))
    kind = int(rng.integers(4))
    t: npt.NDArray[Any]  # where each pixel lies between the two colours, 0..255
    if kind == 0:
        t = (along - along.min()) * np.float32(255 / max(float(along.max() - along.min()), 1))
    elif kind == 1:
        phase = along / np.float32(rng.uniform(6, 40))
        hard = rng.random() < 0.5
        t = (np.floor(phase) % 2 if hard else 0.5 + 0.5 * np.sin(2 * np.pi * phase)) * 255
    elif kind == 2:
        cells = rng.integers(0, 256, (int(rng.integers(3, 12)), int(rng.integers(3, 12))))
        t = cv2.resize(cells.astype(np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
    else:
        t = np.zeros((height, width), np.uint8)
    ramp = np.linspace(0, 1, 256, dtype=np.float32)[:, None]
    lut = np.round(c0 + ramp * (c1 - c0)).astype(np.uint8)[:, None, :]
    # A colour lookup (cv2.LUT) is ~10x faster than blending float images per pixel.
    shade = cv2.cvtColor(cv2.convertScaleAbs(t), cv2.COLOR_GRAY2BGR)
    image = np.asarray(cv2.LUT(shade, lut), dtype=np.uint8)
    for _ in range(int(rng.integers(0, 10))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, x1 = (int(v) for v in rng.integers(0, width, 2))
        y0, y1 = (int(v) for v in rng.integers(0, height, 2))
        clutter = int(rng.integers(3))
        if clutter == 0:
            cv2.line(image, (x0, y0), (x1, y1), colour, int(rng.integers(1, 3)), cv2.LINE_AA)
        elif clutter == 1:
            cv2.circle(image, (x0, y0), int(rng.integers(1, 3)), colour, -1, cv2.LINE_AA)
        else:
            axes = (int(rng.integers(5, 40)), int(rng.integers(5, 40)))
            start = int(rng.integers(0, 360))
            end = start + int(rng.integers(40, 200))  # open arcs, never a closed shape
            cv2.ellipse(image, (x0, y0), axes, start / 2, start, end, colour, 1, cv2.LINE_AA)
    return image


def _shape_mask(rng: np.random.Generator, shape: str, diameter: float) -> npt.NDArray[np.bool_]:
    """The pixels of one randomly rotated shape, cropped to their tight bounds."""
    r = diameter / 2
    side = math.ceil(diameter) + 4
    mask = np.zeros((side, side), np.uint8)
    centre = side / 2
    if shape == "circle":
        c16 = round(centre * 16)
        cv2.circle(mask, (c16, c16), round(r * 16), 1, -1, cv2.LINE_8, 4)
    else:
        if shape == "cross":
            a = r * rng.uniform(0.22, 0.36)  # half the arm width
            quarter = np.array([[a, r], [a, a], [r, a]])
            turn = np.array([[0.0, -1.0], [1.0, 0.0]])  # row @ turn: (x, y) -> (y, -x)
            xy = np.concatenate([quarter @ np.linalg.matrix_power(turn, k) for k in range(4)])
        else:
            if shape == "square":
                angles, radii = np.arange(4) * (np.pi / 2), np.full(4, r)
            elif shape == "triangle":
                angles = np.arange(3) * (2 * np.pi / 3) + rng.uniform(-0.15, 0.15, 3)
                radii = r * rng.uniform(0.85, 1.0, 3)
            else:  # star: five points, inner radius 38-50 % of the outer one
                angles = np.arange(10) * (np.pi / 5)
                radii = np.tile([r, r * rng.uniform(0.38, 0.5)], 5)
            xy = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        theta = rng.uniform(0, 2 * np.pi)
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        points = np.round((xy @ rot.T + centre) * 16).astype(np.int32)
        cv2.fillPoly(mask, [points.reshape(-1, 1, 2)], 1, cv2.LINE_8, 4)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(bool)


def _contrasting_colour(rng: np.random.Generator, under: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A random colour far enough from the mean colour it is painted over to stand out."""
    colours = rng.uniform(0, 255, (8, 3))
    distance = np.linalg.norm(colours - under, axis=1)
    far = np.flatnonzero(distance >= 90)
    return colours[far[0] if far.size else int(distance.argmax())]


def render_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    class_indices: Sequence[int],
    classes: Sequence[str],
    object_size: tuple[float, float] = (0.08, 0.7),
) -> Scene:
    """Draw one image with a shape per entry of ``class_indices``, in order (later on top).

    ``object_size`` bounds the shape diameter as a fraction of the shorter image side (drawn
    log-uniformly). A shape that finds no placement in _TRIES tries (it would hide an earlier
    one by more than _MAX_OCCLUSION, or fall mostly outside the image) is left out.
    """
    image = _background(rng, width, height)
    owner = np.zeros((height, width), np.int16)
    kept: list[tuple[int, tuple[int, int, int, int], bool]] = []
    inside_px = np.zeros(0, np.int64)
    visible_px = np.zeros(0, np.int64)
    log_lo, log_hi = math.log(object_size[0]), math.log(object_size[1])
    for cls in class_indices:
        for _ in range(_TRIES):
            diameter = max(3.0, min(width, height) * math.exp(rng.uniform(log_lo, log_hi)))
            mask = _shape_mask(rng, classes[cls], diameter)
            mh, mw = mask.shape
            ox = int(rng.integers(-(mw // 2), width - mw // 2))
            oy = int(rng.integers(-(mh // 2), height - mh // 2))
            x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + mw, width), min(oy + mh, height)
            sub = mask[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            inside, total = int(sub.sum()), int(mask.sum())
            if inside < max(_MIN_PIXELS, _MIN_INSIDE * total):
                continue
            hidden = np.bincount(owner[y0:y1, x0:x1][sub], minlength=len(kept) + 1)[1:]
            if np.any(visible_px - hidden < (1 - _MAX_OCCLUSION) * inside_px):
                continue
            break
        else:
            continue
        region = image[y0:y1, x0:x1]
        ys, xs = np.nonzero(sub)
        base = _contrasting_colour(rng, region[ys, xs].mean(axis=0))
        tilt = rng.uniform(0, 2 * np.pi)
        ramp = (xs * math.cos(tilt) + ys * math.sin(tilt)) / max(mw, mh)
        shade = 1 + rng.uniform(-0.5, 0.5) * ramp[:, None]
        region[ys, xs] = np.clip(base * shade, 0, 255).astype(np.uint8)
        owner[y0:y1, x0:x1][sub] = len(kept) + 1
        rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
        left, top = x0 + int(cols[0]), y0 + int(rows[0])
        box = (left, top, int(cols[-1] - cols[0]) + 1, int(rows[-1] - rows[0]) + 1)
        kept.append((cls, box, inside < total))
        inside_px = np.append(inside_px, inside)
        visible_px = np.append(visible_px - hidden, inside)
    amplitude = int(rng.integers(0, 7))  # sensor-like noise, saturating at 0 and 255
    if amplitude:
        noise = rng.integers(0, 2 * amplitude + 1, image.shape, dtype=np.uint8)
        shifted = cv2.subtract(cv2.add(image, noise), np.full_like(image, amplitude))
        image = np.asarray(shifted, dtype=np.uint8)
    occlusion = [
        round(1 - float(v) / float(n), 4) for v, n in zip(visible_px, inside_px, strict=True)
    ]
    objects = tuple(
        SyntheticObject(cls, box, int(inside_px[k]), occlusion[k], truncated)
        for k, (cls, box, truncated) in enumerate(kept)
    )
    return Scene(image_bgr=image, owner=owner, objects=objects)
