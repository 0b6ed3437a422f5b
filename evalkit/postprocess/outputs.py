"""The output forms detectors come in (names, shapes, box coder constants), and
:func:`detect_decoder`, which tells them apart from a model's output specs and says why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from evalkit.errors import InputError
from evalkit.models.priors import ZOO_PRIOR_SPECS

# The zoo form, in the network's return order: class logits (N, 3000, NC+1), background in
# column 0, then offsets (N, 3000, 4) as (tx, ty, tw, th) against priors (cx, cy, w, h).
# The zoo's export names only its first output, ``output``; the offsets keep a number the
# exporter picks, so st-ssd takes "the other output" as the offsets. The torch runner
# names them ST_SSD_OFFSETS (the export helper's ZOO_OUTPUT_NAMES must keep "output").
ST_SSD_SCORES = "output"
ST_SSD_OFFSETS = "offsets"
ST_SSD_OUTPUT_NAMES = (ST_SSD_SCORES, ST_SSD_OFFSETS)
ST_SSD_CENTER_VARIANCE = 0.1
ST_SSD_SIZE_VARIANCE = 0.2
ST_SSD_NUM_PRIORS = sum(s.feature_map_size**2 * s.priors_per_location for s in ZOO_PRIOR_SPECS)

# The deployed form (models/export.py DEPLOYED_OUTPUT_NAMES): softmax scores with the
# background column (N, 3000, NC+1) and clipped corners x1, y1, x2, y2 (N, 3000, 4).
DECODED_SCORES = "scores"
DECODED_BOXES = "boxes"
DECODED_OUTPUT_NAMES = (DECODED_SCORES, DECODED_BOXES)

# TF-OD SSD (TFLite_Detection_PostProcess inputs): encodings (ty, tx, th, tw), sigmoid scores.
TFOD_BOX_ENCODINGS = "box_encodings"
TFOD_CLASS_SCORES = "class_scores"
TFOD_NUM_ANCHORS = 1917  # SSD MobileNet 300x300: 19x19x3 + (10x10 + 5x5 + 3x3 + 2x2 + 1) x 6
TFOD_SCALES = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w scale factors of TF-OD's box coder


Spec = Sequence[int | str | None]
_BOX_NAMES = (DECODED_BOXES, TFOD_BOX_ENCODINGS, ST_SSD_OFFSETS)
_SCORE_NAMES = (DECODED_SCORES, TFOD_CLASS_SCORES, ST_SSD_SCORES)


def _describe(specs: Mapping[str, Spec]) -> str:
    return ", ".join(f"{name} {tuple(shape)}" for name, shape in specs.items()) or "none"


def box_and_score_outputs(specs: Mapping[str, Spec]) -> tuple[str, str, int | str | None]:
    """(boxes name, scores name, box count) of a two-output detector, or an InputError."""
    if len(specs) != 2 or any(len(shape) != 3 for shape in specs.values()):
        raise InputError(
            "expected two rank-3 outputs, boxes (N, B, 4) and scores (N, B, C); "
            f"got {_describe(specs)}"
        )
    four = [name for name, shape in specs.items() if shape[2] == 4]
    if len(four) == 2:  # 4 score columns too: only conventional names can decide
        four = [n for n in four if n in _BOX_NAMES] or [n for n in four if n not in _SCORE_NAMES]
    if len(four) != 1:
        raise InputError(f"cannot tell which output holds the boxes (N, B, 4): {_describe(specs)}")
    boxes = four[0]
    scores = next(name for name in specs if name != boxes)
    count_boxes, count_scores = specs[boxes][1], specs[scores][1]
    if (
        isinstance(count_boxes, int)
        and isinstance(count_scores, int)
        and count_boxes != count_scores
    ):
        raise InputError(f"outputs disagree on the box count B: {_describe(specs)}")
    return boxes, scores, count_boxes if isinstance(count_boxes, int) else count_scores


def final_detection_outputs(specs: Mapping[str, Spec]) -> tuple[str, str, str, str] | None:
    """(boxes, classes, scores, count) output names of TFLite_Detection_PostProcess-style
    final detections, in the op's output order, or None when the outputs are not that."""
    if len(specs) != 4:
        return None
    ranks = {name: len(shape) for name, shape in specs.items()}
    boxes = [n for n, r in ranks.items() if r == 3 and specs[n][2] == 4]
    pairs = [n for n, r in ranks.items() if r == 2]
    count = [n for n, r in ranks.items() if r == 1]
    if len(boxes) != 1 or len(pairs) != 2 or len(count) != 1:
        return None
    per_image = specs[boxes[0]][1]
    if any(specs[n][1] != per_image for n in pairs):
        return None
    return boxes[0], pairs[0], pairs[1], count[0]


# The zoo's other families (reference-pipeline.md section 10), by output shapes.
YOLO_STRIDES = (8, 16, 32)
BLAZEFACE_OUTPUTS = ((512, 16), (512, 1), (384, 16), (384, 1))


def _grid_count(input_size: tuple[int, int]) -> int:
    width, height = input_size
    return sum((width // s) * (height // s) for s in YOLO_STRIDES)


def family_decoder(
    specs: Mapping[str, Spec], input_size: tuple[int, int] | None
) -> tuple[str, str] | None:
    """(decoder, why) when the outputs have the form of one of the zoo's YOLO or BlazeFace
    families; an InputError listing the candidates when the form fits two; None when it is
    none of them. ``input_size`` (width, height) gives the prediction count F."""
    shapes = [tuple(shape) for shape in specs.values()]
    seen = _describe(specs)
    if len(shapes) == 4 and all(len(s) == 3 for s in shapes):
        tails = sorted(((s[1], s[2]) for s in shapes), reverse=True)
        if tuple(tails) == BLAZEFACE_OUTPUTS:
            return "blazeface", (
                f"blazeface: outputs {seen} are BlazeFace front's boxes and scores over "
                "MediaPipe's 512 + 384 anchors"
            )
        return None
    # A YOLOv2 grid holds A*(5+K) channels, K >= 1: fewer than 6 is no such head.
    if shapes and all(len(s) == 4 and isinstance(s[3], int) and s[3] >= 6 for s in shapes):
        channels = {s[3] for s in shapes}
        if len(shapes) == 1:
            return "yolov2", (
                f"yolov2: one grid output {seen} (N, H, W, A*(5+K)): a YOLOv2 head "
                "(yolov2t, st_yololcv1); its anchors come from the configuration"
            )
        if len(channels) == 1:
            return "yoloxn", (
                f"yoloxn: {len(shapes)} grid outputs {seen} with the same A*(5+K) channels: "
                "one YOLOv2 head per level (st_yoloxn); anchors and strides come from the "
                "configuration"
            )
        return None
    if len(shapes) != 1 or len(shapes[0]) != 3 or input_size is None:
        return None
    _, a, b = shapes[0]
    count = _grid_count(input_size)
    if count not in (a, b):
        return None
    raise InputError(
        f"ambiguous output {seen}: {count} predictions = strides {list(YOLO_STRIDES)} of a "
        f"{input_size[0]}x{input_size[1]} input, the form of two families: ultralytics "
        "(yolov8n, yolo11n, yolo26n; the zoo's files are (N, 4+K, F): cx, cy, w, h, class "
        "scores, no objectness) and yolox (st_yolodv2*; the zoo's files are (N, F, 5+K): "
        "offsets, log sizes, objectness, class scores); each is also exported transposed, so "
        "the shape cannot tell them apart. Pass decoder: ultralytics or decoder: yolox"
    )


def detect_decoder(
    output_specs: Mapping[str, Spec], input_size: tuple[int, int] | None = None
) -> tuple[str, str]:
    """(decoder name, why) from output names and shapes (and the model's input size, for
    the YOLO families); ambiguity lists the candidates."""
    family = family_decoder(output_specs, input_size)
    if family is not None:
        return family
    final = final_detection_outputs(output_specs)
    if final is not None:
        shown = ", ".join(f"{n} {tuple(output_specs[n])}" for n in final)
        return "final-detections", (
            f"final-detections: outputs {shown} are boxes, classes, scores and count in "
            "TFLite_Detection_PostProcess's order: the model's own detections, no second NMS"
        )
    try:
        boxes, scores, count = box_and_score_outputs(output_specs)
    except InputError as exc:
        raise InputError(f"no decoder fits: {exc}; pass a decoder explicitly") from exc
    seen = f"{boxes} {tuple(output_specs[boxes])} and {scores} {tuple(output_specs[scores])}"
    # Strength 2: names and box count both fit; 1: the shapes fit but the names say nothing.
    candidates: list[tuple[int, str, str]] = []
    if (boxes, scores) == (TFOD_BOX_ENCODINGS, TFOD_CLASS_SCORES):
        candidates.append((2, "tfod-ssd", "TF-OD SSD output names (anchor encodings, sigmoid)"))
    elif count == TFOD_NUM_ANCHORS:
        candidates.append((1, "tfod-ssd", f"{count} boxes = TF-OD SSD300 anchors"))
    if count == ST_SSD_NUM_PRIORS:
        named = scores == ST_SSD_SCORES
        why = f"{count} boxes = the zoo's SSD priors" + (
            f"; {ST_SSD_SCORES!r} is the zoo export's name for its raw class logits"
            if named
            else ""
        )
        candidates.append((2 if named else 1, "st-ssd", why))
    named = (boxes, scores) == (DECODED_BOXES, DECODED_SCORES)
    why = "scores and x1, y1, x2, y2 corners already computed in the model"
    candidates.append(
        (2, "decoded", f"the deployed export's names; {why}") if named else (1, "decoded", why)
    )
    best = max(strength for strength, _, _ in candidates)
    top = [(name, why) for strength, name, why in candidates if strength == best]
    if len(top) > 1:
        listed = "; ".join(f"{name}: {why}" for name, why in top)
        raise InputError(
            f"ambiguous outputs {seen}: raw and decoded forms cannot be told apart from "
            f"these names and shapes; candidates: {listed}. Pass a decoder explicitly"
        )
    name, why = top[0]
    if name == "decoded" and best == 1:
        why += f" (no known raw form has {count} boxes, so the outputs are taken as decoded)"
    return name, f"{name}: outputs {seen}: {why}"
