"""Dataset manifests (``datasets/*.json``): what to download, how it unpacks, what it holds."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

from evalkit.errors import InputError
from evalkit.jsonio import read_json
from evalkit.registry import Registry

SCHEMA_VERSION = 1
# Fetch writes it into the staged folder just before renaming that into place, so a dataset
# folder holding it is complete.
MARKER_NAME = ".evalkit-complete.json"

DatasetFormat = Literal["coco", "voc"]
ArchiveKind = Literal["zip", "tar"]
# A view keeps one category's annotations and the images that have one (datasets.views).
View = Literal["person"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_HEX_DIGITS = {"md5": 32, "sha256": 64}
# A view takes these from the dataset it is a view of; repeating them would be a second truth.
_INHERITED = ("format", "files", "layout")


@dataclass(frozen=True)
class FileSpec:
    """One downloadable archive: where it lives, how big it is, its digests, how it unpacks."""

    name: str
    url: str
    bytes: int | None
    md5: str | None
    sha256: str | None
    archive: ArchiveKind
    extract_to: str = "."
    provides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.md5 is None and self.sha256 is None:
            raise ValueError(f"FileSpec {self.name!r} needs an md5 or a sha256")

    @property
    def digest(self) -> tuple[str, str]:
        """The digest fetch checks: sha256 when the manifest has it, else md5."""
        if self.sha256 is not None:
            return "sha256", self.sha256
        return "md5", self.md5 or ""


@dataclass(frozen=True)
class Layout:
    """Where things are inside the dataset folder (paths relative to it)."""

    images: str
    annotations: str  # COCO: the instances JSON file; VOC: the year folder (.../VOC2007)
    split: str | None = None  # VOC only: ImageSets/Main/<split>.txt


@dataclass(frozen=True)
class Expected:
    """Counts a complete copy must have; None where no trustworthy figure is known."""

    images: int | None
    annotations: int | None
    categories: int | None


@dataclass(frozen=True)
class Manifest:
    """One dataset (or a view of one), validated; views carry their base's files and layout."""

    name: str
    title: str
    format: DatasetFormat
    files: tuple[FileSpec, ...]
    layout: Layout
    expected: Expected
    source: Path
    homepage: str | None = None
    license: str | None = None
    notes: str | None = None
    view_of: str | None = None
    view: View | None = None

    @property
    def directory(self) -> str:
        """The folder under the data root: a view shares the folder of its base."""
        return self.view_of or self.name

    @property
    def is_local(self) -> bool:
        """A set with nothing to download (it is put in place by hand)."""
        return not self.files


# The JSON fields are the record fields: one list of names, so the two cannot drift apart.
_TOP_FIELDS = {f.name for f in fields(Manifest)} - {"source"} | {"schema"}
_FILE_FIELDS = {f.name for f in fields(FileSpec)}
_LAYOUT_FIELDS = {f.name for f in fields(Layout)}
_EXPECTED_FIELDS = tuple(f.name for f in fields(Expected))


def default_manifest_dir() -> Path:
    """The repository's ``datasets/`` folder, found relative to this package."""
    return Path(__file__).resolve().parents[2] / "datasets"


class _Reader:
    """Typed access to one manifest's fields; every error names the file and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, problem: str) -> InputError:
        return InputError(problem, path=self.path, record=field)

    def obj(self, value: Any, field: str, known: set[str]) -> dict[str, Any]:
        if value is None:
            raise self.fail(field, "missing field (expected a JSON object)")
        if not isinstance(value, dict):
            raise self.fail(field, f"expected a JSON object, got {type(value).__name__}")
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise self.fail(
                field, f"unknown field {unknown[0]!r}; expected only: {', '.join(sorted(known))}"
            )
        return value

    def text(self, data: dict[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
        field = f"{where}.{key}" if where else key
        if key not in data or data[key] is None:
            if optional:
                return None
            raise self.fail(field, "missing field (expected a non-empty string)")
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, f"expected a non-empty string, got {value!r}")
        return value

    def count(self, data: dict[str, Any], key: str, where: str) -> int | None:
        field = f"{where}.{key}"
        if key not in data:
            raise self.fail(field, "missing field (expected an integer >= 0, or null if unknown)")
        value = data[key]
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(field, f"expected an integer >= 0 or null, got {value!r}")
        return value

    def choice(self, data: dict[str, Any], key: str, where: str, allowed: Any) -> Any:
        value = self.text(data, key, where)
        options = get_args(allowed)
        if value not in options:
            field = f"{where}.{key}" if where else key
            raise self.fail(field, f"expected one of {', '.join(options)}, got {value!r}")
        return value

    def relative(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(field, f"expected a relative path, got {value!r}")
        # A manifest must not make fetch or verify touch anything outside the dataset folder.
        if value.startswith(("/", "\\")) or ".." in Path(value).parts:
            raise self.fail(field, f"expected a path inside the dataset folder, got {value!r}")
        return value


def _parse_file(r: _Reader, raw: Any, where: str) -> FileSpec:
    data = r.obj(raw, where, _FILE_FIELDS)
    name = r.text(data, "name", where)
    if "/" in name or "\\" in name or name in (".", ".."):
        raise r.fail(f"{where}.name", f"expected a plain file name, got {name!r}")
    url = r.text(data, "url", where)
    if not url.startswith(("http://", "https://")):
        raise r.fail(f"{where}.url", f"expected an http:// or https:// URL, got {url!r}")
    digests: dict[str, str | None] = {}
    for kind, digits in _HEX_DIGITS.items():
        value = r.text(data, kind, where, optional=True)
        if value is not None and not re.fullmatch(f"[0-9a-f]{{{digits}}}", value):
            raise r.fail(
                f"{where}.{kind}", f"expected {digits} lowercase hex digits, got {value!r}"
            )
        digests[kind] = value
    if digests["md5"] is None and digests["sha256"] is None:
        raise r.fail(where, "expected an md5 or a sha256 (a download must be verifiable)")
    provides = data.get("provides", [])
    if not isinstance(provides, list):
        raise r.fail(f"{where}.provides", f"expected a list of paths, got {provides!r}")
    return FileSpec(
        name=name,
        url=url,
        bytes=r.count(data, "bytes", where) if "bytes" in data else None,
        md5=digests["md5"],
        sha256=digests["sha256"],
        archive=r.choice(data, "archive", where, ArchiveKind),
        extract_to=r.relative(data.get("extract_to", "."), f"{where}.extract_to"),
        provides=tuple(r.relative(p, f"{where}.provides[{i}]") for i, p in enumerate(provides)),
    )


def _parse(path: Path, raw: Any) -> dict[str, Any]:
    """Validate one manifest document; views come back without their inherited fields."""
    r = _Reader(path)
    data = r.obj(raw, "top level", _TOP_FIELDS)
    if data.get("schema") != SCHEMA_VERSION:
        raise r.fail("schema", f"expected {SCHEMA_VERSION}, got {data.get('schema')!r}")
    name = r.text(data, "name", "")
    if not _NAME.match(name):
        raise r.fail("name", f"expected lowercase letters, digits, '.', '_' or '-', got {name!r}")
    if name != path.stem:
        raise r.fail("name", f"expected {path.stem!r} (the file name), got {name!r}")
    out: dict[str, Any] = {
        "name": name,
        "title": r.text(data, "title", ""),
        "source": path,
        **{k: r.text(data, k, "", optional=True) for k in ("homepage", "license", "notes")},
    }
    expected = r.obj(data.get("expected"), "expected", set(_EXPECTED_FIELDS))
    out["expected"] = Expected(*(r.count(expected, k, "expected") for k in _EXPECTED_FIELDS))
    if ("view" in data) != ("view_of" in data):
        raise r.fail("view", "'view' and 'view_of' go together (a view names its base dataset)")
    if "view" in data:
        for key in _INHERITED:
            if key in data:
                raise r.fail(key, "a view takes this from its base dataset (view_of); remove it")
        out["view"] = r.choice(data, "view", "", View)
        out["view_of"] = r.text(data, "view_of", "")
        return out
    out["format"] = r.choice(data, "format", "", DatasetFormat)
    files = data.get("files")
    if files is None:
        raise r.fail("files", "missing field (expected a list, empty for a local set)")
    if not isinstance(files, list):
        raise r.fail("files", f"expected a list (empty for a local set), got {files!r}")
    out["files"] = tuple(_parse_file(r, f, f"files[{i}]") for i, f in enumerate(files))
    names = [f.name for f in out["files"]]
    if len(set(names)) != len(names):
        raise r.fail("files", f"file names must be unique, got {names}")
    layout = r.obj(data.get("layout"), "layout", _LAYOUT_FIELDS)
    split = r.text(layout, "split", "layout", optional=True)
    if out["format"] == "voc" and split is None:
        raise r.fail("layout.split", "missing field (a VOC set needs its split name)")
    out["layout"] = Layout(
        images=r.relative(r.text(layout, "images", "layout"), "layout.images"),
        annotations=r.relative(r.text(layout, "annotations", "layout"), "layout.annotations"),
        split=split,
    )
    return out


def _load_file(path: str | Path) -> dict[str, Any]:
    """Read and validate one manifest file (views unresolved); errors name file and field."""
    path = Path(path)
    return _parse(path, read_json(path))


def load_manifests(directory: str | Path | None = None) -> Registry[Manifest]:
    """Every ``*.json`` manifest of a folder (default: the repository's ``datasets/``)."""
    directory = default_manifest_dir() if directory is None else Path(directory)
    if not directory.is_dir():
        raise InputError(
            "manifest folder not found (expected a folder of dataset *.json files; "
            "pass --manifests DIR)",
            path=directory,
        )
    parsed = {p.stem: _load_file(p) for p in sorted(directory.glob("*.json"))}
    registry: Registry[Manifest] = Registry("dataset")
    for name, record in parsed.items():
        if "view_of" in record:
            base = parsed.get(record["view_of"])
            if base is None or "view_of" in base:
                known = ", ".join(n for n, f in parsed.items() if "view_of" not in f)
                raise InputError(
                    f"expected the name of a dataset manifest in {directory} that is not "
                    f"itself a view ({known}), got {record['view_of']!r}",
                    path=record["source"],
                    record="view_of",
                )
            shared = {k: record[k] or base[k] for k in ("homepage", "license")}
            record = {**record, **shared, **{k: base[k] for k in _INHERITED}}
        registry.add(name, Manifest(**record))
    return registry
