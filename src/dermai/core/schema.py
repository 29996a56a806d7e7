"""Column lists of the pipeline's tables, in one place. Pure constants (the readers are in
`dermai.io.tables`), so the core gates and the stages agree on the same names."""

from __future__ import annotations

SPLITS = ("train", "val", "test")
# The held-out-site split (`split.external_source`): written only when that list is non-empty,
# never trained, tuned or calibrated on.
EXTERNAL = "external"
ALL_SPLITS = (*SPLITS, EXTERNAL)

# data/index/index.csv, in file order (written by `dermai index`).
INDEX_COLUMNS = (
    "image_id",
    "path",
    "condition",
    "age_group",
    "source",
    "group_id",
    "sha1",
    "dhash",
    "phash",
    "width",
    "height",
    "format",
    "bytes",
    "groups",
    "image_type",
)
# Appended to the index only when an `imagefolder` sidecar table gives them (index.sidecar); the
# index of every other layout keeps exactly INDEX_COLUMNS.
META_COLUMNS = ("age", "sex", "site")
# data/reports/rejects.csv
REJECT_COLUMNS = ("path", "reason", "image_id", "condition")
# data/index/groups.csv: one leakage group per image.
GROUPS_COLUMNS = ("image_id", "leakage_group")
# data/reports/duplicates.csv: a < b by image_id, kind exact|perceptual, dHash distance and the
# pHash-256 distance that verified the pair.
DUPLICATES_COLUMNS = ("a", "b", "kind", "distance", "verify_distance")
# data/splits/<split>.csv: the index rows plus their leakage group.
SPLIT_COLUMNS = (*INDEX_COLUMNS, "leakage_group")
# data/splits/folds.csv (only with split.folds on): each image's cross-validation fold, i.e. the
# fold whose model never saw its leakage group and predicts it.
FOLDS_FILE = "folds.csv"
FOLDS_COLUMNS = ("image_id", "fold", "leakage_group", "condition", "age_group")
# model.metadata on: a report's or predictions file's suffix for the same model with every
# metadata field unknown (evaluate: report_test_metadata_unknown.json; cv:
# report_metadata_unknown.json), and each CV fold's out-of-fold file of those predictions.
METADATA_UNKNOWN = "metadata_unknown"
OOF_UNKNOWN = "oof_metadata_unknown.csv"
