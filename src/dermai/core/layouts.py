"""Dataset layouts as users download them, turned into one planned task per file or listed id.

Pure: callers walk the raw root once (a list of relative paths) and read the labels tables into
DataFrames of strings; everything here only matches and labels them. Every listed id and every
walked file ends up in exactly one task: an image to decode, or a reject with its reason.

Presets know their table files, columns, label encoding, ages, groups and image-type column:
- ham10000: `HAM10000_metadata.csv` (or the Dataverse `.tab`, tab-separated) + images in
  `HAM10000_images_part_1/`, `HAM10000_images_part_2/`.
- isic2019: one-hot `ISIC_2019_Training_GroundTruth.csv` + `ISIC_2019_Training_Metadata.csv`
  (age_approx, lesion_id); some files end in `_downsampled`.
- isic2020: `train.csv` (or `ISIC_2020_Training_GroundTruth*.csv`), groups by patient_id.
- isic_archive: a gallery export `metadata.csv` (isic_id, diagnosis, lesion_id, patient_id,
  age_approx, image_type).
"""

from __future__ import annotations

import collections
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pandas as pd

from dermai.core.ages import bin_age
from dermai.core.labels import RepeatCheck, check_repeats, normalise_id
from dermai.core.schema import META_COLUMNS
from dermai.params import DROP

if TYPE_CHECKING:
    from dermai.params import ManifestParams, SidecarParams

UNKNOWN_TYPE = "unknown"
FOLDERS_HINT = "<source>/<condition>/<age_group>/<file>"
IMAGEFOLDER_HINT = "<condition>/<file> or <condition>/<age_group>/<file>"
# What a file's path must look like under each folder layout (the "no file matches" error).
HINTS = {"folders": FOLDERS_HINT, "imagefolder": IMAGEFOLDER_HINT}
SIDECAR_FIELDS = META_COLUMNS  # index columns a sidecar adds (the default index is unchanged)
SIDECAR_GROUP_KEYS = ("lesion_id", "patient_id")


@dataclass(frozen=True)
class Task:
    """One file found or one id listed: its labels, or the reason it is rejected before decoding.

    `condition` is the mapped class; `raw_label` what the dataset said. `drop` names the filter
    that dropped a row on purpose (class_map, image_type), so the summary can count it.
    """

    path: str  # relative to the raw root, POSIX separators; "" for a listed id with no file
    image_id: str = ""
    condition: str = ""
    age_group: str = ""
    source: str = ""
    group_id: str = ""
    groups: str = ""  # "key=value;key=value" for every configured group key with a value
    image_type: str = ""
    raw_label: str = ""
    reject: str = ""
    drop: str = ""
    # META_COLUMNS' values (then index.manifest.extra's), when a sidecar, a manifest with
    # metadata columns set, or a preset gives them
    meta: tuple[str, ...] = ()


@dataclass(frozen=True)
class Preset:
    name: str
    tables: tuple[str, ...]  # the labels table: the first of these file names found
    image_id: str
    label: tuple[str, ...] = ()  # label column candidates (first present); () = one-hot
    onehot_skip: tuple[str, ...] = ()  # non-class columns of a one-hot table
    age: str = ""
    source: str = ""  # source column; when absent, `default_source`
    default_source: str = ""
    group_keys: tuple[str, ...] = ()
    image_type: str = ""
    sex: str = ""  # metadata columns (index columns sex and site, with age in years)
    site: str = ""
    extra_tables: tuple[str, ...] = ()  # a second table joined on image id (ages, groups)
    suffixes: tuple[str, ...] = ()  # file-name endings stripped to get the id
    sep: Mapping[str, str] = field(default_factory=dict)  # file suffix -> field separator


PRESETS: dict[str, Preset] = {
    "ham10000": Preset(
        "ham10000",
        ("HAM10000_metadata.csv", "HAM10000_metadata.tab", "HAM10000_metadata"),
        image_id="image_id",
        label=("dx",),
        age="age",
        source="dataset",
        group_keys=("lesion_id",),
        sex="sex",
        site="localization",
        sep={".tab": "\t", "": "\t"},
    ),
    "isic2019": Preset(
        "isic2019",
        ("ISIC_2019_Training_GroundTruth.csv",),
        image_id="image",
        onehot_skip=("image",),
        age="age_approx",
        default_source="isic2019",
        group_keys=("lesion_id",),
        sex="sex",
        site="anatom_site_general",
        extra_tables=("ISIC_2019_Training_Metadata.csv",),
        suffixes=("_downsampled",),
    ),
    "isic2020": Preset(
        "isic2020",
        (
            "train.csv",
            "ISIC_2020_Training_GroundTruth_v2.csv",
            "ISIC_2020_Training_GroundTruth.csv",
        ),
        image_id="image_name",
        label=("diagnosis",),
        age="age_approx",
        default_source="isic2020",
        group_keys=("patient_id",),
        sex="sex",
        site="anatom_site_general_challenge",
    ),
    "isic_archive": Preset(
        "isic_archive",
        ("metadata.csv",),
        image_id="isic_id",
        label=("diagnosis", "diagnosis_3", "diagnosis_2", "diagnosis_1"),
        age="age_approx",
        source="attribution",
        default_source="isic_archive",
        group_keys=("lesion_id", "patient_id"),
        image_type="image_type",
        sex="sex",
        site="anatom_site_general",
    ),
}


class LayoutError(ValueError):
    """The tables do not fit the preset (missing file or column); the message says which."""


def find_table(names: Sequence[str], files: Iterable[str]) -> str | None:
    """The walked path of the first name in `names` found anywhere (shallowest wins)."""
    by_name: dict[str, list[str]] = {}
    for rel in files:
        by_name.setdefault(PurePosixPath(rel).name, []).append(rel)
    for name in names:
        if name in by_name:
            return min(by_name[name], key=lambda r: (r.count("/"), r))
    return None


def separator(preset: Preset, table: str) -> str:
    suffix = PurePosixPath(table).suffix.lower()
    return preset.sep.get(suffix, ",")


def _name_ext(rel: str) -> tuple[str, str]:
    """(file name, lower-case extension) by string slicing: pathlib costs ~5 us a call, which
    is most of the lookup time on a 100k-file download."""
    name = rel.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name, (name[dot:].lower() if dot > 0 else "")


def file_id(rel: str, suffixes: Sequence[str]) -> str:
    """`part_1/ISIC_0000001_downsampled.jpg` -> `ISIC_0000001` (extension and known suffix off)."""
    name, ext = _name_ext(rel)
    stem = name[: len(name) - len(ext)] if ext else name
    for s in suffixes:
        if s and stem.endswith(s):
            return stem[: -len(s)]
    return stem


def _col(df: pd.DataFrame, name: str) -> list[str]:
    return [str(v).strip() for v in df[name].tolist()] if name and name in df.columns else []


def _onehot_labels(df: pd.DataFrame, skip: set[str]) -> tuple[list[str], list[str]]:
    """(label per row, reject per row) from 0/1 class columns; '' label when none/several."""
    cols = [c for c in df.columns if c.strip().lower() not in skip]
    values = df[cols].apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy()
    labels, rejects = [], []
    for row in values:
        marked = [cols[k] for k in range(len(cols)) if row[k] > 0.5]
        if len(marked) == 1:
            labels.append(marked[0].strip())
            rejects.append("")
        else:
            labels.append("")
            rejects.append(
                "no class marked in the one-hot table"
                if not marked
                else f"more than one class marked ({', '.join(marked)})"
            )
    return labels, rejects


def records(
    preset: Preset,
    table: pd.DataFrame,
    extra: pd.DataFrame | None,
    group_keys: Sequence[str],
    age_edges: list[int],
) -> list[Task]:
    """One task per table row (path not yet known), with raw labels, ages, groups, image type."""
    missing = [c for c in (preset.image_id,) if c not in table.columns]
    label_col = next((c for c in preset.label if c in table.columns), None)
    if preset.label and label_col is None:
        missing.append(" or ".join(preset.label))
    if missing:
        raise LayoutError(
            f"layout {preset.name}: table lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(table.columns)}"
        )
    ids = _col(table, preset.image_id)
    if label_col is not None:
        labels, bad = _col(table, label_col), [""] * len(ids)
    else:
        labels, bad = _onehot_labels(table, {preset.image_id.lower(), *preset.onehot_skip})
    meta = table
    if extra is not None:
        if preset.image_id not in extra.columns:
            raise LayoutError(
                f"layout {preset.name}: metadata table lacks column "
                f"{preset.image_id}; it has {', '.join(extra.columns)}"
            )
        extra = extra.drop_duplicates(preset.image_id).set_index(preset.image_id)
        extra = extra.drop(columns=[c for c in extra.columns if c in table.columns])
        meta = table.join(extra, on=preset.image_id)
        meta = meta.astype(object).where(meta.notna(), "")
    ages = _col(meta, preset.age) or [""] * len(ids)
    sources = _col(meta, preset.source) or [preset.default_source] * len(ids)
    types = _col(meta, preset.image_type) or [""] * len(ids)
    blank = [""] * len(ids)
    sexes, sites = _col(meta, preset.sex) or blank, _col(meta, preset.site) or blank
    with_meta = bool(preset.sex or preset.site)
    keys = list(group_keys) or list(preset.group_keys)
    key_values = {k: _col(meta, k) for k in keys if k in meta.columns}
    out = []
    for i, image_id in enumerate(ids):
        pairs = [(k, v[i]) for k, v in key_values.items() if v[i]]
        first = key_values[keys[0]][i] if keys and keys[0] in key_values else ""
        out.append(
            Task(
                path="",
                image_id=image_id,
                condition=labels[i].lower(),
                age_group=bin_age(ages[i], age_edges),
                source=sources[i] or preset.default_source,
                group_id=first,
                groups=";".join(f"{k}={v}" for k, v in pairs),
                image_type=types[i].lower(),
                raw_label=labels[i].lower(),
                reject=bad[i],
                meta=(ages[i], sexes[i], sites[i]) if with_meta else (),
            )
        )
    return out


def match(
    rows: Sequence[Task],
    files: Sequence[str],
    exts: set[str],
    suffixes: Sequence[str],
    ignore: Iterable[str] = (),
) -> list[Task]:
    """Pair listed rows with walked files by id: one task per listed id and per file.

    Rejected: an id listed with different labels (once per id, with its file if found), a
    listed id with no file, a file whose id is not listed, a second file for one id, and files
    that are hidden or not images. Identical repeats of an id are collapsed (see labels).
    """
    ignore = set(ignore)
    by_id: dict[str, list[str]] = {}
    out: list[Task] = []
    for rel in sorted(files):
        name, ext = _name_ext(rel)
        if rel in ignore:
            continue
        if name.startswith("."):
            out.append(Task(path=rel, reject="hidden file, not an image"))
        elif ext not in exts:
            out.append(
                Task(
                    path=rel,
                    reject=f"unsupported extension "
                    f"'{PurePosixPath(rel).suffix}' (allowed: "
                    f"{sorted(exts)})",
                )
            )
        else:
            by_id.setdefault(file_id(rel, suffixes), []).append(rel)
    empty = [r for r in rows if not r.image_id]
    rows = [r for r in rows if r.image_id]
    rep = repeats(rows)
    for r in empty:
        out.append(replace(r, reject="listed row with an empty image id"))
    listed = {r.image_id for r in rows}
    for image_id in sorted(rep.conflicts):
        paths = by_id.get(image_id, [""])
        out.append(Task(path=paths[0], image_id=image_id, reject=conflict_reason(rows, image_id)))
        out.extend(
            Task(
                path=p,
                image_id=image_id,
                reject=f"second file for image id '{image_id}' (first: {paths[0]})",
            )
            for p in paths[1:]
        )
    for image_id, pos in rep.keep.items():
        row = rows[pos]
        found = by_id.get(image_id)
        if not found:
            out.append(replace(row, reject=row.reject or "listed id has no image file"))
            continue
        out.append(replace(row, path=found[0]))
        out.extend(
            Task(
                path=p,
                image_id=image_id,
                reject=f"second file for image id '{image_id}' (first: {found[0]})",
            )
            for p in found[1:]
        )
    for image_id in sorted(set(by_id) - listed):
        out.extend(
            Task(path=p, image_id=image_id, reject="image has no label (id not listed)")
            for p in by_id[image_id]
        )
    return sorted(out, key=lambda t: (t.path == "", t.path, t.image_id))


def signature(t: Task) -> str:
    """What must agree between two rows listing one id for them to be one repeat."""
    return "|".join((t.raw_label, t.age_group, t.source, t.groups, t.image_type))


def repeats(rows: Sequence[Task]) -> RepeatCheck:
    """Repeated ids among listed rows: identical rows collapse, any difference conflicts."""
    return check_repeats([r.image_id for r in rows], [signature(r) for r in rows])


def conflict_reason(rows: Sequence[Task], image_id: str) -> str:
    same = [r for r in rows if r.image_id == image_id]
    labels = sorted({r.raw_label for r in same})
    if len(labels) > 1:
        return f"image id listed {len(same)} times with different labels: {', '.join(labels)}"
    return (
        f"image id listed {len(same)} times with the same label but different age, "
        f"source, groups or image type"
    )


def apply_labels(
    task: Task,
    classes: Sequence[str],
    class_map: Mapping[str, str],
    image_types: Sequence[str],
    ages: set[str],
) -> Task:
    """Map the raw label (class_map, `drop`), filter image types, check class and age group."""
    if task.reject:
        return task
    raw = task.raw_label or task.condition
    mapped = {k.lower(): v for k, v in class_map.items()}.get(raw.lower(), raw)
    task = replace(task, raw_label=raw, condition=mapped)
    if mapped == DROP:
        return replace(task, drop="class_map", reject=f"label '{raw}' dropped by index.class_map")
    if image_types and (task.image_type or UNKNOWN_TYPE) not in image_types:
        return replace(
            task,
            drop="image_type",
            reject=f"image_type '{task.image_type or UNKNOWN_TYPE}' not in "
            f"index.image_types {list(image_types)}",
        )
    if classes and mapped not in classes:
        return replace(task, reject=f"label '{mapped}' not in configured classes {sorted(classes)}")
    if not mapped:
        return replace(task, reject="empty label")
    if task.age_group not in ages:
        return replace(
            task, reject=f"age group '{task.age_group}' not in configured age groups {sorted(ages)}"
        )
    return task


def resolve_classes(classes: Sequence[str], found: Iterable[str]) -> list[str]:
    """`base.classes` when given, else the mapped classes found in the data, sorted."""
    return list(classes) if classes else sorted(set(found))


def unlisted(files: Iterable[str], listed: set[str], tables: Iterable[str]) -> list[Task]:
    """A reject per walked file that no manifest row points at (the tables themselves aside):
    images outside the folders the rows name were once ignored and counted nowhere."""
    skip = set(tables)
    return [
        Task(path=rel, reject="unlisted: no manifest row names this file")
        for rel in files
        if rel not in listed and rel not in skip
    ]


def same_files(rows: Sequence[Task], files: Iterable[str]) -> tuple[list[Task], dict[str, int]]:
    """Manifest rows resolved to the walked files once: each row's path normalised (NFC,
    separators, `./`, `..`) and matched to the file as it is named on disk, or rejected when it
    leaves the root. Rows naming one file under different ids are one image: with one label
    the first row stays and the others are counted (returned: path -> rows), with different
    labels every such row is a reject naming the ids."""
    disk = {unicodedata.normalize("NFC", f): f for f in files}
    located: list[Task] = []
    for t in rows:
        try:
            key = normalise_id(t.path, "the raw root")
        except ValueError as exc:
            located.append(replace(t, reject=str(exc)))
            continue
        located.append(replace(t, path=disk.get(key, key)))
    by_path: dict[str, list[Task]] = {}
    for t in located:
        if not t.reject and t.image_id:
            by_path.setdefault(t.path, []).append(t)
    out, collapsed, done = [], {}, set()
    for t in located:
        group = by_path.get(t.path, []) if not t.reject and t.image_id else []
        ids = sorted({g.image_id for g in group})
        if len(ids) < 2:
            out.append(t)
            continue
        labels = sorted({g.raw_label for g in group})
        if len(labels) > 1:
            out.append(
                replace(
                    t,
                    reject=f"one file listed under ids {', '.join(ids)} with different "
                    f"labels: {', '.join(labels)}",
                )
            )
        elif t.path not in done:
            done.add(t.path)
            collapsed[t.path] = len(ids)
            out.append(t)
    return out, collapsed


@dataclass(frozen=True)
class Labelling:
    """What turns a raw label into a class: the configured classes (empty = as found), the
    class map, the image-type filter and the age groups."""

    classes: list[str]
    class_map: dict[str, str]
    image_types: list[str]
    ages: set[str]
    exts: set[str]

    def apply(self, task: Task) -> Task:
        return apply_labels(task, self.classes, self.class_map, self.image_types, self.ages)


def not_image(rel: str, exts: set[str]) -> Task | None:
    """The reject of a walked file that is hidden or has no image extension, else None."""
    name = rel.rsplit("/", 1)[-1]
    if name.startswith("."):
        return Task(path=rel, reject="hidden file, not an image")
    if Path(name).suffix.lower() not in exts:
        return Task(
            path=rel,
            reject=f"unsupported extension '{Path(name).suffix}' (allowed: {sorted(exts)})",
        )
    return None


def plan_folders(files: list[str], lab: Labelling) -> list[Task]:
    """One task per file of a `<source>/<condition>/<age_group>/<file>` tree."""
    tasks = []
    seen: dict[str, str] = {}
    for rel in files:
        parts = rel.split("/")
        name = parts[-1]
        skipped = not_image(rel, lab.exts)
        if skipped is not None:
            tasks.append(skipped)
            continue
        if len(parts) != 4:
            tasks.append(Task(path=rel, reject=f"path does not match layout {FOLDERS_HINT}"))
            continue
        source, condition, age_group, _ = parts
        image_id = Path(name).stem
        task = lab.apply(Task(rel, image_id, condition, age_group, source, raw_label=condition))
        if not task.reject and image_id in seen:
            task = replace(task, reject=f"image_id '{image_id}' already used by {seen[image_id]}")
        if not task.reject:
            seen[image_id] = rel
        tasks.append(task)
    return tasks


def plan_manifest(
    df: pd.DataFrame,
    name: str,
    files: list[str],
    cfg: ManifestParams,
    lab: Labelling,
    edges: list[int],
    default_source: str = "",
) -> tuple[list[Task], dict[str, int]]:
    """One task per listed id of a manifest table `df` (strings; file `name`, whose columns
    `index.manifest` names), plus a reject for each image in its folders that it does not list.
    With no source column (`index.manifest.source: ''`) every source is `default_source` (the
    raw root's name). Returns the tasks and the ids listed more than once with the same label."""
    mapping = {
        "image_id": cfg.image_id,
        "condition": cfg.condition,
        "age": cfg.age,
        "source": cfg.source,
        "group_id": cfg.group_id,
        "sex": cfg.sex,
        "site": cfg.site,
        **{f"extra {e}": e for e in cfg.extra},
    }
    missing = [f"{k}->{v}" for k, v in mapping.items() if v and v not in df.columns]
    meta_cols = (cfg.age, cfg.sex, cfg.site, *cfg.extra) if cfg.sex or cfg.site or cfg.extra else ()
    if missing:
        raise LayoutError(
            f"manifest {name} lacks column(s) {', '.join(missing)}; it has {', '.join(df.columns)}"
        )
    on_disk = set(files)
    rows: list[Task] = []
    for record in df.to_dict("records"):
        row = {str(k): v for k, v in record.items()}  # a table of strings
        try:
            rel = cfg.path_template.format(**row)
        except KeyError as exc:
            raise LayoutError(
                f"index.manifest.path_template uses column {exc} missing from {name}"
            ) from exc
        group = row[cfg.group_id].strip() if cfg.group_id else ""
        label = row[cfg.condition].strip().lower()
        rows.append(
            Task(
                path=Path(rel).as_posix(),
                image_id=row[cfg.image_id].strip(),
                condition=label,
                age_group=bin_age(row[cfg.age], edges) if cfg.age else "unknown",
                source=row[cfg.source].strip() if cfg.source else default_source,
                group_id=group,
                groups=f"{cfg.group_id}={group}" if group else "",
                raw_label=label,
                meta=tuple(row[c].strip() if c else "" for c in meta_cols),
            )
        )
    rows, one_file = same_files(rows, files)
    rep = repeats(rows)
    first = {t.image_id: pos for pos, t in reversed(list(enumerate(rows)))}
    tasks, listed = [], set()
    for pos, t in enumerate(rows):
        listed.add(t.path)
        if not t.image_id:
            tasks.append(replace(t, reject=f"manifest line {pos + 2}: empty image_id"))
        elif first[t.image_id] != pos:
            continue  # a repeat: collapsed (identical) or rejected once with its first row
        elif t.image_id in rep.conflicts:
            tasks.append(replace(t, reject=conflict_reason(rows, t.image_id)))
            continue  # an identical repeat: collapsed (counted in the summary)
        else:
            t = lab.apply(t)
            if not t.reject and t.path not in on_disk:
                t = replace(t, reject="file listed in manifest is missing")
            tasks.append(t)
    # Every file under the root that no row names is a reject (`unlisted`), not ignored.
    tasks += unlisted(files, listed, [Path(cfg.file).as_posix()])
    return tasks, {**rep.repeats, **one_file}


def preset_tables(preset: Preset, files: Iterable[str], root: str) -> tuple[str, str | None]:
    """(labels table, extra table or None) of a preset among the walked `files` under `root`."""
    files = list(files)
    table = find_table(preset.tables, files)
    if table is None:
        raise LayoutError(
            f"layout {preset.name}: none of {', '.join(preset.tables)} found under {root}"
        )
    extra = find_table(preset.extra_tables, files) if preset.extra_tables else None
    return table, extra


def plan_preset(
    preset: Preset,
    tables: Sequence[tuple[str, pd.DataFrame]],
    files: list[str],
    group_keys: list[str],
    lab: Labelling,
    edges: list[int],
) -> tuple[list[Task], dict[str, int]]:
    """One task per listed id and per walked file of a dataset as downloaded: `tables` are the
    (name, table of strings) of `preset_tables`' labels table and extra table, in that order."""
    (table, main), *extra = tables
    try:
        rows = records(preset, main, extra[0][1] if extra else None, group_keys, edges)
    except LayoutError as exc:
        raise LayoutError(f"{exc} ({table})") from exc
    rep = repeats([t for t in rows if t.image_id])
    names = [name for name, _ in tables]
    tasks = [lab.apply(t) for t in match(rows, files, lab.exts, preset.suffixes, names)]
    return tasks, rep.repeats


def read_sidecar(df: pd.DataFrame, name: str, cfg: SidecarParams) -> dict[str, dict[str, str]]:
    """A sidecar table of strings (file `name`) as file key -> {age, patient_id, lesion_id, sex,
    site} ('' where the table has no such column). The key is the file name, or its path under
    the raw root when it holds a `/`. A missing column or a file listed twice is a LayoutError."""
    columns = {f: getattr(cfg, f) for f in ("image", *SIDECAR_FIELDS, *SIDECAR_GROUP_KEYS)}
    missing = [f"{k}->{v}" for k, v in columns.items() if v and v not in df.columns]
    if missing:
        raise LayoutError(
            f"sidecar {name} lacks column(s) {', '.join(missing)} (index.sidecar); "
            f"it has {', '.join(df.columns)}"
        )
    out: dict[str, dict[str, str]] = {}
    for line, record in enumerate(df.to_dict("records"), start=2):
        try:
            key = normalise_id(str(record[cfg.image]), "the raw root")
        except ValueError as exc:
            raise LayoutError(f"sidecar {name} line {line}: {exc}") from exc
        if key in out:
            raise LayoutError(f"sidecar {name} line {line}: file {key!r} listed twice")
        out[key] = {
            f: str(record[col]).strip() if col else "" for f, col in columns.items() if f != "image"
        }
    return out


def plan_imagefolder(
    files: list[str],
    lab: Labelling,
    edges: list[int],
    source: str,
    sidecar: Mapping[str, Mapping[str, str]] | None = None,
    group_keys: Sequence[str] = (),
) -> tuple[list[Task], int]:
    """One task per file of a class-folder tree, `<condition>/<file>` or (when the second level
    is an age group) `<condition>/<age_group>/<file>`, as Keras' `image_dataset_from_directory`
    and torchvision's ImageFolder read it. Every image's source is `source` (the raw root's
    name). A sidecar row (matched by path, else by file name) gives the age, which overrides a
    missing age folder and must agree with a present one, the sex and site, and the group keys
    (`group_keys`, or lesion_id then patient_id) that join images into leakage groups. Returns
    the tasks and the number of sidecar rows that name no walked file (reported, not lost)."""
    keys = list(group_keys) or list(SIDECAR_GROUP_KEYS)
    tasks: list[Task] = []
    seen: dict[str, str] = {}
    for rel in files:
        skipped = not_image(rel, lab.exts)
        if skipped is not None:
            tasks.append(skipped)
            continue
        parts = rel.split("/")
        if len(parts) == 3 and parts[1] not in lab.ages:
            reason = f"second folder '{parts[1]}' is not an age group {sorted(lab.ages)}"
            tasks.append(
                Task(path=rel, reject=f"path does not match layout {IMAGEFOLDER_HINT}: {reason}")
            )
            continue
        if len(parts) not in (2, 3):
            tasks.append(Task(path=rel, reject=f"path does not match layout {IMAGEFOLDER_HINT}"))
            continue
        name = parts[-1]
        folder_age = parts[1] if len(parts) == 3 else ""
        row: Mapping[str, str] = {}
        if sidecar is not None:
            row = sidecar.get(rel) or sidecar.get(name, {})
        age_group = bin_age(row["age"], edges) if row.get("age") else folder_age or "unknown"
        pairs = [(k, row[k]) for k in keys if row.get(k)]
        task = Task(
            rel,
            Path(name).stem,
            parts[0],
            age_group,
            source,
            group_id=pairs[0][1] if pairs else "",
            groups=";".join(f"{k}={v}" for k, v in pairs),
            raw_label=parts[0],
            meta=tuple(row.get(f, "") for f in SIDECAR_FIELDS) if sidecar is not None else (),
        )
        task = lab.apply(task)
        if not task.reject and folder_age and folder_age != age_group:
            task = replace(
                task,
                reject=f"age folder '{folder_age}' disagrees with the sidecar's age "
                f"{row['age']} ({age_group})",
            )
        if not task.reject and task.image_id in seen:
            task = replace(
                task, reject=f"image_id '{task.image_id}' already used by {seen[task.image_id]}"
            )
        if not task.reject:
            seen[task.image_id] = rel
        tasks.append(task)
    walked = {*files, *(f.rsplit("/", 1)[-1] for f in files)}
    return tasks, len(set(sidecar or ()) - walked)


def looks_like(files: Sequence[str], ages: set[str], exts: set[str]) -> str:
    """Which layout a walked tree looks like, for the error when no file fits the chosen one:
    a preset (its labels table found), a folder layout by where the images sit (the most common
    depth and whether an age-group folder is at it), else a manifest (a table at the root)."""
    for preset in PRESETS.values():
        table = find_table([t for t in preset.tables if t != "metadata.csv"], files)
        if table is not None:
            return f"{preset.name} (found {table})"
    tables = [f for f in files if "/" not in f and f.lower().endswith((".csv", ".tab", ".tsv"))]
    images = [f for f in files if not_image(f, exts) is None]
    shape = ""
    if images:
        depth = collections.Counter(f.count("/") + 1 for f in images).most_common(1)[0][0]
        at = [f.split("/") for f in images if f.count("/") + 1 == depth]
        aged = sum(p[-2] in ages for p in at if len(p) > 1) * 2 > len(at)  # most in age folders
        example = "/".join(at[0])
        one_folder = len({p[0] for p in at}) == 1  # images/ beside a table: a manifest
        if tables and one_folder:
            shape = ""
        elif depth == 2 or (depth == 3 and aged):
            shape = f"imagefolder {IMAGEFOLDER_HINT} (e.g. {example})"
        elif depth == 4 and aged:
            shape = f"folders {FOLDERS_HINT} (e.g. {example})"
        elif not tables:
            shape = f"none of the layouts: most images sit {depth} level(s) deep (e.g. {example})"
    if tables:
        table = f"table {tables[0]} at the root"
        return f"{shape}, with {table}" if shape else f"manifest ({table}; set index.manifest.*)"
    return shape or "no layout: no image file found"


def check_matches(tasks: Sequence[Task], layout: str, files: Sequence[str], lab: Labelling) -> None:
    """A LayoutError naming the layout the tree looks like when image files were found but not
    one fits the chosen folder layout (802 of 802 once rejected one by one, with no hint)."""
    if layout not in HINTS:
        return
    images = [t for t in tasks if not_image(t.path, lab.exts) is None]
    if images and all(t.reject.startswith("path does not match layout") for t in images):
        raise LayoutError(
            f"no file matches layout {layout} ({HINTS[layout]}): the tree under the raw root "
            f"looks like {looks_like(files, lab.ages, lab.exts)}"
        )
