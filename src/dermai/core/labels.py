"""Labels CSVs for external evaluation: ISIC-style one-hot or plain `image,label`. Pure.

ISIC 2018 Task 3 ground truth is `image,MEL,NV,BCC,AKIEC,BKL,DF,VASC` with 0/1 (or 0.0/1.0);
the plain form is `image,label`. Class names are matched to the model's case-insensitively;
a label the model does not know is an error (silently dropping rows would flatter the metrics).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dermai.errors import DermaiError

IMAGE_COLUMNS = ("image", "image_id", "image_name", "filename", "file")
LABEL_COLUMNS = ("label", "dx", "diagnosis", "class", "condition")
# Optional columns used as subgroups (not classes) when present.
GROUP_COLUMNS = ("age_group", "source")
IGNORED_COLUMNS = (
    "age",
    "sex",
    "age_approx",
    "anatom_site",
    "anatom_site_general",
    "lesion_id",
    "dataset",
    "localization",
    "dx_type",
)


def normalise_id(name: str, folder: str = "the images folder") -> str:
    """An image id or relative path as one canonical key: Unicode NFC (a name typed on macOS is
    NFD), forward slashes, no `.` or empty segments, `..` folded. Raises ValueError with the
    reason when the id is empty, absolute or leaves its `folder`."""
    key = unicodedata.normalize("NFC", name.strip()).replace("\\", "/")
    if key.startswith("/") or (len(key) > 1 and key[1] == ":" and key[0].isalpha()):
        raise ValueError(f"absolute path {name!r}: ids are relative to {folder}")
    parts: list[str] = []
    for seg in key.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if not parts:
                raise ValueError(f"path {name!r} leaves {folder}")
            parts.pop()
        else:
            parts.append(seg)
    if not parts:
        raise ValueError(f"empty image name {name!r}")
    return "/".join(parts)


def _find(columns: Sequence[str], wanted: Sequence[str]) -> str | None:
    lower = {c.strip().lower(): c for c in columns}
    return next((lower[w] for w in wanted if w in lower), None)


def _known(classes: Sequence[str]) -> str:
    return ", ".join(classes)


def parse(df: pd.DataFrame, classes: Sequence[str]) -> tuple[list[str], np.ndarray, str]:
    """(image names, class indices, format 'plain'|'onehot') from a labels table of strings."""
    if df.empty:
        raise DermaiError("labels CSV has no rows")
    cols = [str(c) for c in df.columns]
    img_col = _find(cols, IMAGE_COLUMNS)
    if img_col is None:
        raise DermaiError(
            f"labels CSV needs an image column (one of {', '.join(IMAGE_COLUMNS)});"
            f" found: {', '.join(cols)}"
        )
    names = [str(v).strip() for v in df[img_col].tolist()]
    if any(not n or n.lower() == "nan" for n in names):
        row = next(i for i, n in enumerate(names) if not n or n.lower() == "nan")
        raise DermaiError(f"labels CSV row {row + 2}: empty image name")
    index = {c.lower(): i for i, c in enumerate(classes)}
    label_col = _find(cols, LABEL_COLUMNS)
    if label_col is not None:
        raw = [str(v).strip() for v in df[label_col].tolist()]
        bad = [(i, v) for i, v in enumerate(raw) if v.lower() not in index]
        if bad:
            i, v = bad[0]
            more = f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""
            raise DermaiError(
                f"labels CSV row {i + 2} ({names[i]}): label {v!r} is not one of "
                f"the model's classes ({_known(classes)}){more}"
            )
        return names, np.array([index[v.lower()] for v in raw], dtype=np.int64), "plain"

    skip = {img_col.lower(), *GROUP_COLUMNS, *IGNORED_COLUMNS}
    onehot = [c for c in cols if c.strip().lower() not in skip]
    if not onehot:
        raise DermaiError("labels CSV has neither a label column nor one-hot class columns")
    try:
        values = df[onehot].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise DermaiError(
            f"labels CSV one-hot columns ({', '.join(onehot)}) must be numeric "
            f"0/1; use `image,label` for class names"
        ) from exc
    if np.isnan(values).any():
        row = int(np.flatnonzero(np.isnan(values).any(axis=1))[0])
        raise DermaiError(f"labels CSV row {row + 2} ({names[row]}): missing one-hot value")
    best = values.argmax(axis=1)
    top = values[np.arange(len(values)), best]
    if (top <= 0).any():
        row = int(np.flatnonzero(top <= 0)[0])
        raise DermaiError(f"labels CSV row {row + 2} ({names[row]}): no class marked")
    if ((values == top[:, None]).sum(axis=1) > 1).any():
        row = int(np.flatnonzero((values == top[:, None]).sum(axis=1) > 1)[0])
        raise DermaiError(f"labels CSV row {row + 2} ({names[row]}): more than one class marked")
    col_class = [index.get(c.strip().lower()) for c in onehot]
    labels = []
    for i, b in enumerate(best):
        c = col_class[b]
        if c is None:
            n_bad = sum(col_class[j] is None for j in best)
            more = f" (and {n_bad - 1} more rows)" if n_bad > 1 else ""
            raise DermaiError(
                f"labels CSV row {i + 2} ({names[i]}): label {onehot[b]!r} is not "
                f"one of the model's classes ({_known(classes)}){more}"
            )
        labels.append(c)
    return names, np.array(labels, dtype=np.int64), "onehot"


def groups(df: pd.DataFrame) -> dict[str, list[str]]:
    """Optional subgroup columns (age_group, source) present in the labels table."""
    out = {}
    for g in GROUP_COLUMNS:
        col = _find([str(c) for c in df.columns], (g,))
        if col is not None:
            out[g] = [
                "unknown" if pd.isna(v) or not str(v).strip() else str(v).strip()
                for v in df[col].tolist()
            ]
    return out


@dataclass(frozen=True)
class RepeatCheck:
    """How ids listed more than once in a labels table were resolved.

    `keep` holds, per id, the position of its first row; conflicting ids keep none.
    """

    keep: dict[str, int]
    repeats: dict[str, int]  # id -> times listed, for ids repeated with one label (collapsed)
    conflicts: dict[str, list[str]]  # id -> its different labels, sorted


def check_repeats(ids: Sequence[str], labels: Sequence[str]) -> RepeatCheck:
    """Resolve repeated ids the same way for every labels reader (index presets, manifests,
    evaluate-external): an identical repeat is collapsed to its first row, an id listed with
    different labels keeps no row at all (its label is unknowable)."""
    first: dict[str, int] = {}
    seen: dict[str, set[str]] = {}
    count: dict[str, int] = {}
    for i, (name, label) in enumerate(zip(ids, labels, strict=True)):
        first.setdefault(name, i)
        seen.setdefault(name, set()).add(label)
        count[name] = count.get(name, 0) + 1
    conflicts = {k: sorted(v) for k, v in seen.items() if len(v) > 1}
    return RepeatCheck(
        keep={k: i for k, i in first.items() if k not in conflicts},
        repeats={k: n for k, n in count.items() if n > 1 and k not in conflicts},
        conflicts=conflicts,
    )


def conflict_message(conflicts: dict[str, list[str]], where: str = "labels CSV") -> str:
    """One line naming every conflicting id (the first 10) and its labels."""
    items = sorted(conflicts.items())
    shown = "; ".join(f"{k}: {', '.join(v)}" for k, v in items[:10])
    more = f" (and {len(items) - 10} more)" if len(items) > 10 else ""
    return f"{where}: {len(items)} id(s) listed with different labels: {shown}{more}"


def check_label_params(classes: Sequence[str], class_map: dict[str, str]) -> None:
    """`base.classes` and `index.class_map` as a one-line DermaiError naming the param and the
    value: a class listed twice, class_map keys that differ only in case (raw labels match
    keys case-insensitively, so one would silently win), and chains or cycles. A map is applied
    once, so `{a: b, b: c}` would send a to b, not c, and `{nv: mel, mel: nv}` would swap two
    classes without a word: both are errors; map each raw label straight to its class."""
    seen: dict[str, str] = {}
    for c in classes:
        if c.lower() in seen:
            raise DermaiError(
                f"params: base.classes={list(classes)} lists {seen[c.lower()]!r} twice"
                + (f" (as {c!r})" if c != seen[c.lower()] else "")
            )
        seen[c.lower()] = c
    keys: dict[str, str] = {}
    for k in class_map:
        if k.lower() in keys:
            raise DermaiError(
                f"params: index.class_map has keys {keys[k.lower()]!r} and {k!r} that differ "
                "only in case (raw labels match keys case-insensitively): keep one"
            )
        keys[k.lower()] = k
    lower = {k.lower(): v for k, v in class_map.items()}

    def step(label: str) -> str | None:
        """Where the map sends `label` next, or None when it stops there."""
        nxt = lower.get(label.lower())
        return None if nxt is None or nxt.lower() == label.lower() else nxt

    for k, v in class_map.items():
        if step(k) is None or step(v) is None:
            continue
        path = [k]
        while (nxt := step(path[-1])) is not None:
            if nxt.lower() in {p.lower() for p in path}:
                start = [p.lower() for p in path].index(nxt.lower())
                cycle = " -> ".join([*path[start:], nxt])
                raise DermaiError(
                    f"params: index.class_map={dict(class_map)} has a cycle ({cycle}): a map "
                    "is applied once, so it would swap labels silently; map each raw label "
                    "straight to its class"
                )
            path.append(nxt)
        raise DermaiError(
            f"params: index.class_map maps {k!r} to {v!r}, which it maps again (to "
            f"{lower[v.lower()]!r}): a map is applied once; map {k!r} straight to "
            f"{path[-1]!r}"
        )
