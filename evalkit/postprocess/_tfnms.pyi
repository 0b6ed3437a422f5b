from typing import Any

Buffer = Any

def select(
    boxes: Buffer,
    scores: Buffer,
    num_boxes: int,
    num_classes: int,
    score_threshold: float,
    iou_threshold: float,
    max_per_class: int,
    max_total: int,
    clip: bool,
    /,
) -> tuple[bytes, bytes, bytes, bytes]: ...
