"""`model.metadata` for training: the TFRecords' metadata columns, encoded once per run by the
encoder fitted on that run's TRAINING rows (core.metadata), joined to the cached rows.

Encoded here, from raw strings carried in the TFRecords, not baked into the TFRecords or the
feature cache: the vocabularies must come from the training rows, which differ per
cross-validation fold, and a metadata experiment then re-runs only the heads (train, cv-train),
never the TFRecords or the frozen features.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dermai.core import metadata
from dermai.errors import DermaiError
from dermai.models import data
from dermai.models.rows import ActivationRows, MetadataRows


def read_columns(
    tfrecords: str | Path, split: str, fields: Sequence[str]
) -> tuple[list[str], dict[str, list[str]], np.ndarray]:
    """(image ids, {field: raw values}, labels) of `split`; a field the TFRecords lack is an
    error that says how to carry it."""
    ids, columns, y = data.read_metadata(tfrecords, split)
    missing = [f for f in fields if f not in columns]
    if missing:
        raise DermaiError(
            f"model.metadata field(s) {', '.join(missing)} not in the TFRecords (they carry "
            f"{', '.join(sorted(columns))}); set index.manifest.sex/site/extra (or a sidecar) "
            "and rerun index"
        )
    return ids, {f: columns[f] for f in fields}, y


def fit(fields: Sequence[str], columns: dict[str, list[str]]) -> metadata.Encoder:
    try:
        return metadata.fit(fields, columns)
    except ValueError as exc:
        raise DermaiError(f"model.metadata: {exc}") from exc


def attach(
    rows: ActivationRows,
    m: np.ndarray,
    enc: metadata.Encoder,
    dropout: float = 0.0,
    labels: np.ndarray | None = None,
) -> ActivationRows:
    """`rows` with their encoded metadata `m` (one row each), hidden with `dropout`;
    `labels`, when given, are the metadata rows' labels, which must be the rows' own (the
    feature cache keeps no image id per row: this catches rows read in another order)."""
    if len(m) != len(rows.y) or (labels is not None and not np.array_equal(labels, rows.y)):
        raise DermaiError(
            f"metadata rows ({len(m)}) do not match the feature cache's rows ({len(rows.y)}, "
            "in count or labels); rerun features"
        )
    return ActivationRows(rows.x, rows.y, MetadataRows(m, enc, dropout))


def single_split(
    train: ActivationRows,
    val: ActivationRows,
    tfrecords: str | Path,
    fields: Sequence[str],
    variants: int,
    dropout: float,
) -> tuple[ActivationRows, ActivationRows, metadata.Encoder]:
    """The train rows (`variants` copies of each image, copy-major in record order, as
    `features.cache` wrote them) and val rows with their metadata, and the encoder fitted on
    the train split."""
    _, cols, y = read_columns(tfrecords, "train", fields)
    enc = fit(fields, cols)
    m_train = np.tile(enc.encode_columns(cols), (variants, 1))
    _, val_cols, y_val = read_columns(tfrecords, "val", fields)
    return (
        attach(train, m_train, enc, dropout, np.tile(y, variants)),
        attach(val, enc.encode_columns(val_cols), enc, labels=y_val),
        enc,
    )


def by_id(
    tfrecords: str | Path, splits: Sequence[str], fields: Sequence[str], ids: Sequence[str]
) -> dict[str, list[str]]:
    """{field: raw value per image of `ids`} over the TFRecords' `splits` (cross-validation:
    every image)."""
    found: dict[str, dict[str, str]] = {}
    for split in splits:
        split_ids, cols, _ = read_columns(tfrecords, split, fields)
        for i, image_id in enumerate(split_ids):
            found[image_id] = {f: cols[f][i] for f in fields}
    missing = [i for i in ids if i not in found]
    if missing:
        raise DermaiError(
            f"{len(missing)} image(s) of the feature cache are not in the TFRecords "
            f"(e.g. {missing[0]}); rerun tfrecords and features"
        )
    return {f: [found[i][f] for i in ids] for f in fields}
