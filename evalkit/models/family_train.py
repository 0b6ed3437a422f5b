"""Training of the tiny family networks (:mod:`evalkit.models.families`) on the synthetic
shapes: one loss for every family, taken on the decoded boxes and scores.

Assignment: a ground truth's positives are, for free-form heads (ultralytics, yolox,
blazeface), chosen as ATSS does (Zhang et al., 2020): among the locations centred inside it,
the ``TOP_K`` whose prior box (centre, size) overlaps it most, kept when the overlap reaches
the mean plus the standard deviation of those ``TOP_K`` (so the level whose priors fit the
object's size wins); for YOLOv2 grids (yolov2, yoloxn), the cell holding its centre with
the anchor closest in shape, on every grid. A location claimed twice keeps the ground truth
it overlaps more. Loss: binary cross-entropy of every score against 1 (a positive's class)
or 0, plus, on positives, L1 of the corners (x5) and 1 - GIoU (x2); both divided by the
number of positives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from evalkit.datasets.dataset import Dataset
from evalkit.datasets.images import decode_rgb
from evalkit.datasets.preprocess import get_preprocessor
from evalkit.models.families import INPUT_SIZE, FamilyNet

TOP_K = 9


@dataclass(frozen=True)
class FamilyData:
    images: torch.Tensor  # the family's input tensors, (N, ...) float32
    boxes: tuple[torch.Tensor, ...]  # corners normalised to the model input
    labels: tuple[torch.Tensor, ...]  # dataset class index

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_family_data(dataset: Dataset, net: FamilyNet) -> FamilyData:
    """Every image through the family's own pre-processing, once; boxes normalised to the
    model input (through the letterbox where there is one)."""
    pre = replace(get_preprocessor(net.preprocessor), size=(INPUT_SIZE, INPUT_SIZE))
    tensors, boxes, labels = [], [], []
    for index, record in enumerate(dataset.images):
        tensors.append(torch.from_numpy(pre.apply(decode_rgb(dataset.image_path(index)))[0]))
        ann = dataset.annotations_of(index)
        keep = ~ann.iscrowd
        x, y, w, h = ann.boxes_xywh_px[keep].T
        sx, sy = pre.box_scale(record.width, record.height)
        corners = np.stack([x / sx, y / sy, (x + w) / sx, (y + h) / sy], 1).reshape(-1, 4)
        boxes.append(torch.from_numpy(corners.astype(np.float32)))
        labels.append(torch.from_numpy(ann.category_index[keep].astype(np.int64)))
    return FamilyData(torch.stack(tensors), tuple(boxes), tuple(labels))


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of corner boxes (A, 4) x (B, 4)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def assign(
    priors: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
    boxes: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(location, ground truth) pairs of one image under the rules of this module."""
    centres, sizes, grids = priors
    if boxes.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    prior_boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1)
    overlap = _iou(prior_boxes, boxes)  # (L, G)
    inside = (
        (centres[:, None, 0] > boxes[None, :, 0])
        & (centres[:, None, 0] < boxes[None, :, 2])
        & (centres[:, None, 1] > boxes[None, :, 1])
        & (centres[:, None, 1] < boxes[None, :, 3])
    )
    chosen = torch.zeros_like(overlap, dtype=torch.bool)
    if grids is None:
        score = torch.where(inside, overlap, torch.full_like(overlap, -1.0))
        top = score.topk(min(TOP_K, score.shape[0]), dim=0).indices  # (k, G)
        for g in range(boxes.shape[0]):
            rows = top[:, g][score[top[:, g], g] > 0]
            if rows.numel() > 1:
                values = overlap[rows, g]
                rows = rows[values >= values.mean() + values.std()]
            if rows.numel() == 0:  # tiny box between centres: its nearest prior
                centre = (boxes[g, :2] + boxes[g, 2:]) / 2
                rows = ((centres - centre) ** 2).sum(1).argmin().reshape(1)
            chosen[rows, g] = True
    else:
        # Anchors compared by shape only (centred), in the cell holding the centre.
        wh = boxes[:, 2:] - boxes[:, :2]
        inter = torch.minimum(sizes[:, None], wh[None]).prod(-1)
        shape_iou = inter / (sizes.prod(-1)[:, None] + wh.prod(-1)[None] - inter)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        cell_of = torch.floor(centre[None] * grids[:, None, None]).clamp(
            max=grids[:, None, None] - 1
        )
        own = torch.floor(centres * grids[:, None])
        in_cell = (own[:, None] == cell_of).all(-1)  # (L, G)
        for g in range(boxes.shape[0]):
            for level in torch.unique(grids):
                rows = torch.nonzero(in_cell[:, g] & (grids == level)).flatten()
                if rows.numel():
                    chosen[rows[shape_iou[rows, g].argmax()], g] = True
    # A location claimed twice keeps the ground truth it overlaps more.
    claimed = torch.where(chosen, overlap + 1.0, torch.zeros_like(overlap))
    best = claimed.argmax(1)
    locations = torch.nonzero(claimed.max(1).values > 0).flatten()
    return locations, best[locations]


def _giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    union = area_a + area_b - inter
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(-1)
    return inter / union.clamp(min=1e-9) - (hull - union) / hull.clamp(min=1e-9)


def family_loss(
    net: FamilyNet,
    images: torch.Tensor,
    boxes: list[torch.Tensor],
    labels: list[torch.Tensor],
    priors: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
) -> tuple[torch.Tensor, float, float]:
    decoded = net.decode(net(images))
    scores = decoded.scores.clamp(1e-6, 1 - 1e-6)
    target = torch.zeros_like(scores)
    box_pred, box_true = [], []
    for n in range(images.shape[0]):
        locations, gts = assign(priors, boxes[n])
        target[n, locations, labels[n][gts]] = 1.0
        box_pred.append(decoded.boxes[n, locations])
        box_true.append(boxes[n][gts])
    positives = max(int(target.sum().item()), 1)
    classification = torch.nn.functional.binary_cross_entropy(scores, target, reduction="sum")
    pred, true = torch.cat(box_pred), torch.cat(box_true)
    regression = (pred - true).abs().sum() * 5 + (1 - _giou(pred, true)).sum() * 2
    loss = (classification + regression) / positives
    return loss, classification.item() / positives, regression.item() / positives


@dataclass(frozen=True)
class FamilyTrainSettings:
    epochs: int = 32
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    seed: int = 0
    threads: int = 2
    flip_probability: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batches(
    data: FamilyData, settings: FamilyTrainSettings, rng: np.random.Generator, nhwc: bool
) -> Iterator[tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]]:
    order = rng.permutation(len(data))
    size = settings.batch_size
    for start in range(0, len(order) - size + 1, size):
        chosen = order[start : start + size]
        images = data.images[torch.from_numpy(chosen)].clone()
        boxes, labels = [], []
        flips = rng.random(size) < settings.flip_probability
        for k, index in enumerate(chosen.tolist()):
            b = data.boxes[index]
            if flips[k]:
                images[k] = images[k].flip(1 if nhwc else 2)  # the width axis
                b = torch.stack([1 - b[:, 2], b[:, 1], 1 - b[:, 0], b[:, 3]], 1)
            boxes.append(b)
            labels.append(data.labels[index])
        yield images, boxes, labels


def train_family(
    net: FamilyNet,
    data: FamilyData,
    settings: FamilyTrainSettings = FamilyTrainSettings(),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train in place; returns what happened, per epoch."""
    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]  # BatchNorm and biases
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=settings.lr)
    steps_per_epoch = len(data) // settings.batch_size
    total = steps_per_epoch * settings.epochs
    priors = net.priors()
    history, step, t0 = [], 0, time.perf_counter()
    net.train()
    for epoch in range(1, settings.epochs + 1):
        sums = np.zeros(2)
        for images, boxes, labels in _batches(data, settings, rng, net.layout == "NHWC"):
            warm = min(1.0, (step + 1) / settings.warmup_steps)
            cosine = 0.5 * (1 + np.cos(np.pi * step / total))
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * warm * cosine
            loss, cls, reg = family_loss(net, images, boxes, labels, priors)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            optimizer.step()
            sums += (cls, reg)
            step += 1
        mean = sums / max(steps_per_epoch, 1)
        entry = {
            "epoch": epoch,
            "seconds": round(time.perf_counter() - t0, 1),
            "classification": float(mean[0]),
            "regression": float(mean[1]),
        }
        history.append(entry)
        log(f"[{net.family}] epoch {epoch}: cls {mean[0]:.3f} reg {mean[1]:.3f} "
            f"({entry['seconds']} s)")  # fmt: skip
    net.eval()
    return {"settings": settings.to_dict(), "steps": step, "history": history,
            "training_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
