"""``evalkit reproduce``: one row of a model card in one command.

Checks (or fetches) the card's dataset and its published float and int8 files, then runs
them, and evalkit's own int8 quantization of the float file with the zoo's recipe, under the
zoo profile and every protocol, and sets each figure against the card
(:mod:`evalkit.references.verdict`). With ``offline``, anything missing is an error that
names each file, its sha256 and the command that fetches it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from evalkit.datasets.fetch import fetch_dataset
from evalkit.datasets.manifest import Manifest, load_manifests
from evalkit.errors import InputError
from evalkit.pipeline.config import (
    DatasetConfig,
    QuantizeConfig,
    ReferenceConfig,
    RunConfig,
    VariantConfig,
    check_values,
)
from evalkit.record import RunRecord
from evalkit.references import DatasetReference, reference_for
from evalkit.references.model_files import (
    PublishedFile,
    card_files,
    fetch_command,
    fetch_file,
    state_of,
)
from evalkit.references.verdict import FigureVerdict, card_verdicts

Log = Callable[[str], None]
# The dataset manifest behind each card dataset key (evalkit datasets list).
CARD_SETS = {"coco": "coco-val2017", "coco_person": "coco-person-val2017", "voc": "voc2007-test"}


@dataclass(frozen=True)
class Recipe:
    """How evalkit runs a card's files (evalkit's knowledge, not a published figure):
    the decoder, the class names (the dataset's preset in the zoo's order, or the model's
    own), and a folder of side files the decoder reads (None: beside the model)."""

    decoder: str = "st-ssd"
    class_names: Literal["dataset", "model"] = "dataset"
    model_dir: str | None = None


@dataclass(frozen=True)
class Missing:
    """Something the reproduction needs that is not there, and how to get it."""

    what: str
    path: Path
    sha256: str | None
    command: str


@dataclass(frozen=True)
class Plan:
    """What one card row needs, where it is expected, and what is missing."""

    model: str
    dataset: str  # the card's key: coco, coco_person, voc
    card: DatasetReference
    manifest: Manifest
    dataset_dir: Path
    files: dict[str, PublishedFile]
    model_root: Path
    missing: tuple[Missing, ...]


def plan(
    model: str,
    dataset: str,
    *,
    data_root: str | Path,
    model_root: str | Path,
    data: str | None = None,
) -> Plan:
    """The card row, its dataset (``data`` overrides the card's manifest) and model files."""
    card = reference_for(model, dataset)
    files = card_files(model, dataset)
    if not {"float", "int8"} <= set(files):
        raise InputError(
            f"the {model} card publishes no float and int8 files for {dataset}", record="files"
        )
    manifest = load_manifests().get(data or CARD_SETS[dataset])
    data_root, model_root = Path(data_root), Path(model_root)
    folder = data_root / manifest.directory
    missing = []
    layout = [folder / manifest.layout.annotations, folder / manifest.layout.images]
    if not all(p.exists() for p in layout):
        command = (
            f"put the set at {folder}"
            if manifest.is_local
            else f"evalkit datasets fetch {manifest.name} --root {data_root}"
        )
        missing.append(Missing(f"dataset {manifest.name}", folder, None, command))
    for precision in ("float", "int8"):
        f = files[precision]
        if state_of(f, model_root) != "ok":
            missing.append(
                Missing(
                    f"{f.key} ({state_of(f, model_root)})",
                    f.local(model_root),
                    f.sha256,
                    fetch_command(f, model_root),
                )
            )
    return Plan(model, dataset, card, manifest, folder, files, model_root, tuple(missing))


def missing_error(p: Plan) -> InputError:
    lines = [
        f"{m.what}: {m.path}"
        + (f" (sha256 {m.sha256})" if m.sha256 else "")
        + f"\n    get it: {m.command}"
        for m in p.missing
    ]
    return InputError(
        f"{len(p.missing)} thing(s) missing for {p.model} on {p.dataset} (offline):\n  "
        + "\n  ".join(lines)
    )


def fetch_missing(p: Plan, *, progress: bool = False, log: Log = print) -> Plan:
    """Fetch what the plan lacks (the dataset, then the model files); the plan again."""
    if any(m.what.startswith("dataset") for m in p.missing):
        if p.manifest.is_local:
            raise missing_error(p)
        log(f"fetching {p.manifest.name} into {p.dataset_dir.parent}")
        fetch_dataset(p.manifest, p.dataset_dir.parent, progress=progress)
    for precision in ("float", "int8"):
        f = p.files[precision]
        if state_of(f, p.model_root) != "ok":
            log(f"fetching {f.key} ({f.bytes:,} bytes)")
            fetch_file(f, p.model_root, progress=progress)
    return plan(
        p.model,
        p.dataset,
        data_root=p.dataset_dir.parent,
        model_root=p.model_root,
        data=p.manifest.name,
    )


def run_config(p: Plan, recipe: Recipe, out: str | Path, *, quiet: bool = True) -> RunConfig:
    """The run that reproduces the row: published float and int8, evalkit's int8, zoo profile."""
    m, folder = p.manifest, p.dataset_dir
    if m.format == "voc":
        ds = DatasetConfig(
            format="voc", root=str(folder / m.layout.annotations), split=m.layout.split or "test"
        )
    else:
        ds = DatasetConfig(
            format="coco_person" if m.view == "person" else "coco",
            annotations=str(folder / m.layout.annotations),
            images=str(folder / m.layout.images),
        )
    names = None
    if recipe.class_names == "dataset":
        from evalkit.datasets.classes import CLASS_PRESETS

        names = list(CLASS_PRESETS[p.dataset])

    def variant(**where: object) -> VariantConfig:
        return VariantConfig(
            decoder=recipe.decoder,
            class_names=names,
            model_dir=recipe.model_dir or "",
            **where,  # type: ignore[arg-type]
        )

    variants = {
        "float": variant(model=str(p.files["float"].local(p.model_root))),
        "int8": variant(model=str(p.files["int8"].local(p.model_root))),
        # evalkit's own int8 of the float file, the zoo's recipe on a seeded 1% sample.
        "int8_evalkit": variant(quantize=QuantizeConfig(source="float")),
    }
    config = RunConfig(
        name=f"reproduce {p.model} on {p.dataset}",
        dataset=ds,
        variants=variants,
        profile="zoo",
        reference=ReferenceConfig(model=p.model, dataset=p.dataset),  # type: ignore[arg-type]
        output=str(out),
        quiet=quiet,
    )
    check_values(config, "evalkit reproduce")
    return config


@dataclass(frozen=True)
class Reproduction:
    """The run's folder, its record and each published figure's verdict."""

    out_dir: Path
    record: RunRecord
    verdicts: tuple[FigureVerdict, ...]

    @property
    def reproduces(self) -> bool:
        return all(v.status != "does not reproduce" for v in self.verdicts)


def judge(record: RunRecord, out_dir: Path, card: DatasetReference) -> Reproduction:
    """Every figure of the card set against a finished run (``evalkit demo`` too)."""
    return Reproduction(out_dir, record, tuple(card_verdicts(record, card)))


def reproduce(
    p: Plan,
    recipe: Recipe,
    out: str | Path,
    *,
    log: Log = print,
    quiet: bool = True,
    render: Callable[..., Sequence[Path]] | None = None,
) -> Reproduction:
    """Run the row and judge every figure."""
    if p.missing:
        raise missing_error(p)
    from evalkit.pipeline.run import run

    outcome = run(run_config(p, recipe, out, quiet=quiet), log=log, render=render)
    return judge(outcome.record, outcome.out_dir, p.card)
