"""Training a small ssd_mobilenetv2 from scratch on a COCO-layout dataset (the demo model).

SSD's recipe as the zoo's PyTorch code (qfgaohao's pytorch-ssd) has it: every ground-truth
box takes its best prior, then every other prior whose best IoU is >= 0.5 takes its best
ground truth; matched boxes are encoded against the priors with the decoder's variances
(reference-pipeline.md section 4, inverted); the loss is smooth L1 on the positives plus
cross-entropy on the positives and the hardest negatives, three negatives per positive.

Images go through the same st-ssd pre-processing as evaluation and calibration, once, and
are kept in memory; augmentation (horizontal flip, light brightness/contrast jitter) is
drawn from a numpy generator seeded with the run's seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch.nn import functional

from evalkit.datasets.dataset import Dataset
from evalkit.datasets.images import decode_rgb
from evalkit.datasets.preprocess import Preprocessor, get_preprocessor
from evalkit.models.ssd_mobilenetv2 import (
    CENTER_VARIANCE,
    SIZE_VARIANCE,
    SSDMobileNetV2,
    priors_tensor,
)

if TYPE_CHECKING:
    pass

ANCHOR_MATCH_IOU = 0.5
NEG_POS_RATIO = 3
# Images with no object would otherwise get no negatives at all (3 x 0) and teach nothing
# about false positives; a few hardest background priors each keep them useful.
MIN_NEGATIVES = 8
# For monitoring during training: an untrained model puts nearly every prior above the zoo's
# 0.001, which makes NMS minutes slow; at 0.05 AP50 of a trained model hardly changes.
MONITOR_SCORE_THRESHOLD = 0.05
# The st-ssd input range: (0 - 127) / 128 .. (255 - 127) / 128.
_INPUT_LOW, _INPUT_HIGH = -127 / 128, 1.0

# --- targets ------------------------------------------------------------------------------


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre/size boxes to corners."""
    return torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], -1)


def box_iou(a_xyxy: torch.Tensor, b_xyxy: torch.Tensor) -> torch.Tensor:
    """(A, B) IoU of corner boxes, no +1 (normalised coordinates)."""
    top_left = torch.maximum(a_xyxy[:, None, :2], b_xyxy[None, :, :2])
    bottom_right = torch.minimum(a_xyxy[:, None, 2:], b_xyxy[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a = (a_xyxy[:, 2:] - a_xyxy[:, :2]).prod(-1)
    area_b = (b_xyxy[:, 2:] - b_xyxy[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-12)


def assign_priors(
    gt_boxes_xyxy: torch.Tensor,
    gt_labels: torch.Tensor,
    priors_xyxy: torch.Tensor,
    anchor_match_iou: float = ANCHOR_MATCH_IOU,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each prior's matched box (P, 4) and label (P,), 0 = background.

    pytorch-ssd's ``assign_priors``: a prior takes the ground truth it overlaps most; each
    ground truth then claims its own best prior whatever the IoU (so no object goes
    unmatched; when two claim the same prior the later one wins); priors left below
    ``anchor_match_iou`` are background.
    """
    num_priors = priors_xyxy.shape[0]
    if gt_boxes_xyxy.shape[0] == 0:
        return priors_xyxy.new_zeros((num_priors, 4)), torch.zeros(num_priors, dtype=torch.long)
    ious = box_iou(gt_boxes_xyxy, priors_xyxy)
    best_iou, best_gt = ious.max(0)
    best_prior = ious.argmax(1)
    for gt_index, prior_index in enumerate(best_prior.tolist()):
        best_gt[prior_index] = gt_index
    # 2 is above any IoU: forced matches survive the threshold below.
    best_iou = best_iou.index_fill(0, best_prior, 2.0)
    labels = gt_labels[best_gt].clone()
    labels[best_iou < anchor_match_iou] = 0
    return gt_boxes_xyxy[best_gt], labels


def encode_boxes(boxes_xyxy: torch.Tensor, priors_cxcywh: torch.Tensor) -> torch.Tensor:
    """Corners to the offsets the st-ssd decoder inverts (variances 0.1 centre, 0.2 size)."""
    centres = (boxes_xyxy[..., :2] + boxes_xyxy[..., 2:]) / 2
    # Zero-size boxes (background rows) would give log(0); their offsets are never used.
    sizes = (boxes_xyxy[..., 2:] - boxes_xyxy[..., :2]).clamp(min=1e-6)
    return torch.cat(
        [
            (centres - priors_cxcywh[..., :2]) / (priors_cxcywh[..., 2:] * CENTER_VARIANCE),
            torch.log(sizes / priors_cxcywh[..., 2:]) / SIZE_VARIANCE,
        ],
        dim=-1,
    )


def build_targets(
    gt_boxes_xyxy: torch.Tensor,
    gt_labels: torch.Tensor,
    priors_cxcywh: torch.Tensor,
    anchor_match_iou: float = ANCHOR_MATCH_IOU,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's (P,) labels and (P, 4) encoded offsets against ``priors_cxcywh``."""
    boxes, labels = assign_priors(
        gt_boxes_xyxy, gt_labels, cxcywh_to_xyxy(priors_cxcywh), anchor_match_iou
    )
    return labels, encode_boxes(boxes, priors_cxcywh)


# --- loss ---------------------------------------------------------------------------------


def hard_negatives(
    logits: torch.Tensor,
    labels: torch.Tensor,
    neg_pos_ratio: int = NEG_POS_RATIO,
    min_negatives: int = MIN_NEGATIVES,
) -> torch.Tensor:
    """(N, P) mask of the background priors with the highest background loss, per image."""
    with torch.no_grad():
        background_loss = -functional.log_softmax(logits, dim=2)[:, :, 0]
        positive = labels > 0
        num_neg = (positive.sum(1, keepdim=True) * neg_pos_ratio).clamp(min=min_negatives)
        background_loss[positive] = -math.inf
        order = background_loss.argsort(1, descending=True)
        rank = order.argsort(1)
        return (rank < num_neg) & ~positive


def multibox_loss(
    logits: torch.Tensor,
    offsets: torch.Tensor,
    labels: torch.Tensor,
    target_offsets: torch.Tensor,
    neg_pos_ratio: int = NEG_POS_RATIO,
    min_negatives: int = MIN_NEGATIVES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(classification, regression) losses, each summed and divided by the positives."""
    positive = labels > 0
    chosen = positive | hard_negatives(logits, labels, neg_pos_ratio, min_negatives)
    classification = functional.cross_entropy(logits[chosen], labels[chosen], reduction="sum")
    regression = functional.smooth_l1_loss(
        offsets[positive], target_offsets[positive], reduction="sum"
    )
    count = positive.sum().clamp(min=1)
    return classification / count, regression / count


# --- data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainData:
    """Pre-processed images and their boxes; label k >= 1 is dataset class k - 1."""

    images: torch.Tensor  # (N, 3, H, W) float32, the pre-processor's output
    boxes_xyxy_norm: tuple[torch.Tensor, ...]
    labels: tuple[torch.Tensor, ...]
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_train_data(dataset: Dataset, preprocessor: str | Preprocessor = "st-ssd") -> TrainData:
    """Decode and pre-process every image of ``dataset`` once; boxes normalised to the image."""
    pre = get_preprocessor(preprocessor) if isinstance(preprocessor, str) else preprocessor
    if pre.dtype != "float32" or pre.layout != "NCHW":
        raise ValueError(f"training needs a float32 NCHW pre-processor, got {pre.settings()}")
    _, channels, height, width = pre.batch_shape
    images = torch.empty((len(dataset), channels, height, width), dtype=torch.float32)
    boxes: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    for index, record in enumerate(dataset.images):
        images[index] = torch.from_numpy(pre.apply(decode_rgb(dataset.image_path(index)))[0])
        annotations = dataset.annotations_of(index)
        keep = ~annotations.iscrowd
        x, y, w, h = annotations.boxes_xywh_px[keep].T.astype(np.float32)
        scale = np.array([record.width, record.height] * 2, np.float32)
        # Normalised corners survive the resize to the model input unchanged.
        corners = np.stack([x, y, x + w, y + h], axis=1).reshape(-1, 4) / scale
        boxes.append(torch.from_numpy(corners.astype(np.float32)))
        labels.append(torch.from_numpy(annotations.category_index[keep].astype(np.int64) + 1))
    return TrainData(images, tuple(boxes), tuple(labels), tuple(dataset.classes))


@dataclass(frozen=True)
class Augment:
    """Light, label-safe augmentation; jitter is in normalised input units (1/128 grey)."""

    flip_probability: float = 0.5
    brightness: float = 0.1
    contrast: float = 0.1


@dataclass(frozen=True)
class Batch:
    """Model inputs and per-prior targets of one training step."""

    images: torch.Tensor
    labels: torch.Tensor
    offsets: torch.Tensor


def batches(
    data: TrainData,
    batch_size: int,
    rng: np.random.Generator,
    augment: Augment = Augment(),
    priors_cxcywh: torch.Tensor | None = None,
) -> Iterator[Batch]:
    """One epoch of shuffled batches (the last partial one dropped, so BatchNorm sees full ones)."""
    priors = priors_tensor() if priors_cxcywh is None else priors_cxcywh
    order = rng.permutation(len(data))
    for start in range(0, len(order) - batch_size + 1, batch_size):
        chosen = order[start : start + batch_size]
        images = data.images[torch.from_numpy(chosen)].clone()
        flips = rng.random(batch_size) < augment.flip_probability
        gains = 1 + rng.uniform(-augment.contrast, augment.contrast, batch_size)
        shifts = rng.uniform(-augment.brightness, augment.brightness, batch_size)
        labels, offsets = [], []
        for k, index in enumerate(chosen.tolist()):
            boxes = data.boxes_xyxy_norm[index]
            if flips[k]:
                images[k] = images[k].flip(-1)
                boxes = torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], 1)
            target_labels, target_offsets = build_targets(boxes, data.labels[index], priors)
            labels.append(target_labels)
            offsets.append(target_offsets)
        scale = torch.from_numpy(gains.astype(np.float32)).view(-1, 1, 1, 1)
        shift = torch.from_numpy(shifts.astype(np.float32)).view(-1, 1, 1, 1)
        images = (images * scale + shift).clamp(_INPUT_LOW, _INPUT_HIGH)
        yield Batch(images, torch.stack(labels), torch.stack(offsets))


# --- loop ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSettings:
    """Everything that shapes a training run, recorded with the checkpoint."""

    epochs: int = 24
    batch_size: int = 16
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 3e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD only
    warmup_steps: int = 100
    schedule: Literal["cosine"] = "cosine"
    seed: int = 0
    threads: int = 2
    eval_every: int = 3  # epochs between validations
    target_ap50: float | None = None  # stop at the first validation reaching it
    time_limit_s: float | None = None  # stop after the epoch that passes it
    augment: Augment = Augment()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EpochLog:
    """Mean losses of one epoch, and the validation AP50 when one ran after it."""

    epoch: int
    steps: int
    seconds: float
    lr: float
    classification: float
    regression: float
    val_ap50: float | None


@dataclass(frozen=True)
class TrainResult:
    """What a training run did: per-epoch logs, total time and why it stopped."""

    history: tuple[EpochLog, ...]
    seconds: float  # wall time, validations included
    validation_seconds: float
    steps: int
    stopped: str


def learning_rate(settings: TrainSettings, step: int, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to zero over the remaining steps."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, total_steps - settings.warmup_steps)
    return settings.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _optimizer(model: SSDMobileNetV2, settings: TrainSettings) -> torch.optim.Optimizer:
    """AdamW or SGD; BatchNorm and bias parameters get no weight decay."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    plain = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum)
    return torch.optim.AdamW(groups, lr=settings.lr)


def train(
    model: SSDMobileNetV2,
    data: TrainData,
    settings: TrainSettings,
    *,
    validate: Callable[[SSDMobileNetV2], float] | None = None,
    checkpoint: Path | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train ``model`` in place; ``validate`` returns AP50 and runs every ``eval_every`` epochs."""
    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    priors = priors_tensor()
    optimizer = _optimizer(model, settings)
    total_steps = settings.epochs * (len(data) // settings.batch_size)
    history: list[EpochLog] = []
    step, start, stopped = 0, time.perf_counter(), "all epochs done"
    validation_s = 0.0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        sums, count, lr = np.zeros(2), 0, settings.lr
        for batch in batches(data, settings.batch_size, rng, settings.augment, priors):
            lr = learning_rate(settings, step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits, offsets = model(batch.images)
            classification, regression = multibox_loss(logits, offsets, batch.labels, batch.offsets)
            optimizer.zero_grad(set_to_none=True)
            (classification + regression).backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            sums += (classification.item(), regression.item())
            count, step = count + 1, step + 1
        ap50 = None
        last = epoch == settings.epochs
        elapsed = time.perf_counter() - start
        over_time = settings.time_limit_s is not None and elapsed >= settings.time_limit_s
        if validate is not None and (epoch % settings.eval_every == 0 or last or over_time):
            t0 = time.perf_counter()
            ap50 = validate(model)
            validation_s += time.perf_counter() - t0
            model.train()  # runners switch the module to eval mode
        means = sums / max(count, 1)
        entry = EpochLog(epoch, step, elapsed, lr, float(means[0]), float(means[1]), ap50)
        history.append(entry)
        shown = "" if ap50 is None else f" val AP50 {ap50:.4f}"
        log(
            f"epoch {epoch:3d} step {step:5d} {elapsed:7.1f}s lr {lr:.2e} "
            f"cls {entry.classification:.4f} reg {entry.regression:.4f}{shown}"
        )
        if checkpoint is not None:
            save_state(model, checkpoint)
        if ap50 is not None and settings.target_ap50 is not None and ap50 >= settings.target_ap50:
            stopped = f"validation AP50 {ap50:.4f} reached the target {settings.target_ap50}"
            break
        if over_time:
            stopped = f"time limit {settings.time_limit_s}s passed after epoch {epoch}"
            break
    model.eval()
    seconds = time.perf_counter() - start
    return TrainResult(tuple(history), seconds, validation_s, step, stopped)


def save_state(model: SSDMobileNetV2, path: Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write the state_dict (floating tensors cast to ``dtype``), renamed into place."""
    state = {
        k: v.detach().to(dtype) if v.is_floating_point() else v.detach()
        for k, v in model.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    partial.replace(path)
    return path


# --- evaluation ---------------------------------------------------------------------------
