"""Whether a run scored the card's own evaluation set, so that "measured - published" means
something. The run decides from its dataset fingerprint: the format the card's figures are
on, the split, the class count, the image count where the card gives it, and no image left
out. Otherwise the published figure is context, with the reason, and no delta."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evalkit.references import DatasetReference


@dataclass(frozen=True)
class CardComparison:
    """The verdict: compared (a delta is meaningful) or context only, and why."""

    comparable: bool
    why: str


def card_comparison(
    reference: DatasetReference,
    dataset: Mapping[str, Any],
    *,
    context_only: bool,
    limited: bool,
    skipped: int,
) -> CardComparison:
    """Compare ``dataset`` (a ``fingerprint.dataset`` record) with the card's set."""
    card = reference.dataset
    name = f"{card.name} {card.split}"
    if context_only:
        return CardComparison(False, "the configuration marks the reference context_only")
    reasons = []
    # A card's dataset key is the run's dataset.format (coco, coco_person, voc) unless the
    # card names the format (the demo's shapes are a COCO-format set).
    if dataset["format"] != (card.format or reference.key):
        reasons.append(f"the card's figures are on {card.name}, this run is {dataset['format']}")
    if dataset["split"] != card.split:
        reasons.append(f"this run's split is {dataset['split']!r}, the card's {card.split!r}")
    if len(dataset["classes"]) != card.classes:
        reasons.append(f"{len(dataset['classes'])} classes here, {card.classes} on the card")
    if card.images is not None and dataset["num_images"] != card.images:
        reasons.append(f"{dataset['num_images']} images scored, {card.images} on the card")
    if limited:
        reasons.append("dataset.limit scored only the first images")
    if skipped:
        reasons.append(f"{skipped} image(s) were skipped")
    if reasons:
        return CardComparison(False, "; ".join(reasons))
    count = dataset["num_images"]
    return CardComparison(True, f"same set as the card: {name}, {count} images")
