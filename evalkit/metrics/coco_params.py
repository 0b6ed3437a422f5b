"""COCOeval's parameters for boxes (pycocotools' ``Params``), any value, and the summary
statistics they name.

With the defaults the summary is pycocotools' own 12 numbers, named and ordered as it
prints them. With other parameters it is the same kind of numbers for the parameters given:
AP over all IoU thresholds, AP at each threshold, AP per area range, AR per maxDets and per
area range, each named by its parameters (``AP30``, ``AP_tiny``, ``AR50``...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from evalkit.metrics.interpolation import COCO_IOU_THRESHOLDS, COCO_RECALL_THRESHOLDS
from evalkit.types import ImageId


@dataclass(frozen=True)
class AreaRange:
    """One of COCOeval's area ranges: its label (``areaRngLbl``) and inclusive bounds."""

    label: str
    low: float
    high: float


DEFAULT_AREA_RANGES = (
    AreaRange("all", 0.0**2, 1e5**2),
    AreaRange("small", 0.0**2, 32.0**2),
    AreaRange("medium", 32.0**2, 96.0**2),
    AreaRange("large", 96.0**2, 1e5**2),
)
# pycocotools' short stat names for its own area labels.
_SHORT_AREA = {"small": "s", "medium": "m", "large": "l"}


@dataclass(frozen=True)
class Stat:
    """One summary number: AP or AR, over all IoU thresholds (``iou`` None) or at one, for
    one area range and maxDets, as pycocotools' ``_summarize`` computes it."""

    name: str
    is_ap: bool
    iou: float | None
    area: str
    max_dets: int

    def describe(self, thresholds: Sequence[float]) -> str:
        """The line pycocotools prints for it (without the value)."""
        kind = "Average Precision  (AP)" if self.is_ap else "Average Recall     (AR)"
        iou = (
            f"{self.iou:0.2f}"
            if self.iou is not None
            else f"{thresholds[0]:0.2f}:{thresholds[-1]:0.2f}"
        )
        return f"{kind} @[ IoU={iou:<9} | area={self.area:>6s} | maxDets={self.max_dets:>3d} ]"


@dataclass(frozen=True)
class CocoParams:
    """pycocotools ``Params(iouType='bbox')``: every field any value, as COCOeval takes it.

    ``image_ids`` and ``category_ids`` (None: all of the ground truth's) are ``imgIds`` and
    ``catIds``; ``use_cats=False`` is class-agnostic evaluation (``useCats = 0``), where the
    categories of an image are taken in ascending id order, as pycocotools' default
    ``catIds`` lists them.
    """

    iou_thresholds: tuple[float, ...] = tuple(COCO_IOU_THRESHOLDS.tolist())
    recall_thresholds: tuple[float, ...] = tuple(COCO_RECALL_THRESHOLDS.tolist())
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_ranges: tuple[AreaRange, ...] = DEFAULT_AREA_RANGES
    use_cats: bool = True
    image_ids: tuple[ImageId, ...] | None = None
    category_ids: tuple[int | str, ...] | None = None
    stats: tuple[Stat, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = []
        if not self.iou_thresholds:
            problems.append("at least one IoU threshold")
        if not all(0.0 <= t <= 1.0 for t in self.iou_thresholds):
            problems.append(f"IoU thresholds in [0, 1], got {list(self.iou_thresholds)}")
        if len(set(self.iou_thresholds)) != len(self.iou_thresholds):
            problems.append(f"distinct IoU thresholds, got {list(self.iou_thresholds)}")
        if not self.recall_thresholds or not all(0.0 <= r <= 1.0 for r in self.recall_thresholds):
            problems.append(f"recall thresholds in [0, 1], got {list(self.recall_thresholds)}")
        if not self.max_dets or not all(
            isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in self.max_dets
        ):
            problems.append(f"maxDets as positive integers, got {list(self.max_dets)}")
        elif len(set(self.max_dets)) != len(self.max_dets):
            problems.append(f"distinct maxDets, got {list(self.max_dets)}")
        labels = [a.label for a in self.area_ranges]
        if not self.area_ranges or len(set(labels)) != len(labels):
            problems.append(f"area ranges with distinct labels, got {labels}")
        if not all(0.0 <= a.low <= a.high for a in self.area_ranges):
            problems.append("area ranges with 0 <= low <= high")
        if self.image_ids is not None and not self.image_ids:
            problems.append("at least one image id when image ids are given")
        if self.category_ids is not None and not self.category_ids:
            problems.append("at least one category when categories are given")
        if problems:
            raise ValueError("COCO parameters: expected " + "; ".join(problems))
        # COCOeval.evaluate() sorts maxDets (the M axis follows), whatever order was given.
        object.__setattr__(self, "max_dets", tuple(sorted(self.max_dets)))
        object.__setattr__(self, "stats", self._stats())

    @classmethod
    def torchmetrics(cls) -> CocoParams:
        """The thresholds torchmetrics' ``MeanAveragePrecision`` hands COCOeval: computed
        with ``torch.linspace`` in float32 (0.550000011920929 for 0.55, ...), so its numbers
        differ from pycocotools' own in the last digits, or more where an IoU or a recall
        lands between the two spellings of a threshold. Needs torch, as torchmetrics does."""
        import torch  # the values are torch's own float32 linspace, nothing else reproduces it

        return cls(
            iou_thresholds=tuple(
                torch.linspace(0.5, 0.95, round((0.95 - 0.5) / 0.05) + 1).tolist()
            ),
            recall_thresholds=tuple(torch.linspace(0.0, 1.00, round(1.00 / 0.01) + 1).tolist()),
        )

    @property
    def is_default(self) -> bool:
        return self == CocoParams()

    @property
    def all_area(self) -> int:
        """The area range the headline numbers use: the one labelled ``all``, else the first."""
        labels = [a.label for a in self.area_ranges]
        return labels.index("all") if "all" in labels else 0

    def describe(self) -> dict[str, object]:
        """The parameters as JSON values, for a result's settings."""
        return {
            "iou_thresholds": list(self.iou_thresholds),
            "recall_thresholds": "101 points 0:0.01:1"
            if self.recall_thresholds == CocoParams.recall_thresholds
            else list(self.recall_thresholds),
            "max_dets": list(self.max_dets),
            "area_ranges": {a.label: [a.low, a.high] for a in self.area_ranges},
            "class_agnostic": not self.use_cats,
            "image_ids": None if self.image_ids is None else list(self.image_ids),
            "categories": None if self.category_ids is None else list(self.category_ids),
        }

    def _stats(self) -> tuple[Stat, ...]:
        """pycocotools' 12 with its defaults; else the same kinds for these parameters."""
        all_label = self.area_ranges[self.all_area].label
        top = self.max_dets[-1]
        ious: Sequence[float] = self.iou_thresholds
        ten = np.float32(COCO_IOU_THRESHOLDS)
        if len(ious) == len(ten) and bool((np.asarray(ious, np.float32) == ten).all()):
            ious = (0.5, 0.75)  # of the ten (float64 or torchmetrics' float32), these two
        others = [a.label for a in self.area_ranges if a.label != all_label]

        def area_name(kind: str, label: str) -> str:
            short = _SHORT_AREA.get(label)
            return f"{kind}{short}" if short else f"{kind}_{label}"

        return (
            Stat("AP", True, None, all_label, top),
            *(Stat(f"AP{100 * t:g}", True, t, all_label, top) for t in ious),
            *(Stat(area_name("AP", label), True, None, label, top) for label in others),
            *(Stat(f"AR{m}", False, None, all_label, m) for m in self.max_dets),
            *(Stat(area_name("AR", label), False, None, label, top) for label in others),
        )


def summarize(params: CocoParams, precision: np.ndarray, recall: np.ndarray) -> tuple[float, ...]:
    """pycocotools' ``_summarize`` for each of ``params.stats``: the mean of the entries
    above -1 (-1 when there are none)."""
    labels = [a.label for a in params.area_ranges]
    thresholds = np.asarray(params.iou_thresholds)
    out = []
    for stat in params.stats:
        a, m = labels.index(stat.area), params.max_dets.index(stat.max_dets)
        values = precision if stat.is_ap else recall
        if stat.iou is not None:
            values = values[np.where(stat.iou == thresholds)[0]]
        values = values[..., a, m]
        valid = values[values > -1]
        out.append(-1.0 if valid.size == 0 else float(np.mean(valid)))
    return tuple(out)
