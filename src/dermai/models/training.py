"""Training: data in, trained model and its history out (`fit`).

Phase 1 trains the head on a frozen backbone; phase 2 unfreezes the plan's upper part (the top
`train.unfreeze_blocks` EfficientNet stages, BatchNorm frozen) at a lower learning rate. Both
phases run the one epoch loop (`train_epochs`): each epoch draws an order of rows (shuffled, or
oversampled with `train.imbalance: oversample`), weights them by class with `class_weight`, and
keeps the epoch with the best validation balanced accuracy (`models.tracking.Tracker`).

The rows decide the path. The CPU path (`train.feature_cache: true`) trains from the frozen lower
backbone's cached activations (`dermai.models.features`, the `features` stage): phase 1 trains
the head on the frozen upper part's pooled output, computed once, and phase 2 the upper part and
head together. The GPU path trains the whole model from the TFRecords' images, augmented as read.
With `train.ensemble: K` > 1, K members share the frozen lower part and differ only in their seed
(member k trains with seed + k); the result is ONE graph averaging the members' logits.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from dermai import params as params_mod
from dermai.core.imbalance import class_counts, class_weights, sampling_weights
from dermai.errors import DermaiError
from dermai.models import features
from dermai.models.archive import save_keras
from dermai.models.classifier import (
    METADATA_INPUT,
    assemble,
    assemble_ensemble,
    build_head,
    copy_upper,
    make_loss,
    metadata_width,
    set_phase,
)
from dermai.models.rows import ActivationRows, Epoch, ImageRows, Rows
from dermai.models.tracking import BatchProgress, QuietLive, Tracker, summarise_ensemble

if TYPE_CHECKING:
    from dvclive import Live

    from dermai.core.metadata import Encoder
    from dermai.models.features import Plan

log = logging.getLogger(__name__)


def setup_tf(cfg: params_mod.TrainParams, seed: int) -> tf.distribute.Strategy:
    """Seeds, determinism, precision and the distribution strategy (GPUs if present)."""
    keras.utils.set_random_seed(seed)
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        tf.config.experimental.enable_op_determinism()
    if cfg.mixed_precision:
        if gpus:
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            log.warning("train.mixed_precision ignored: no GPU (float16 is slower on CPU)")
    if len(gpus) > 1:
        log.info("training on %d GPUs with MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


@dataclass
class TrainingData:
    """What `fit` trains on: the train and val rows, and how many training images they hold
    (the feature cache holds `train.cache_variants` copies of each)."""

    train: Rows
    val: Rows
    images: int
    metadata: Encoder | None = None  # model.metadata's encoder: the head's second input

    @property
    def metadata_width(self) -> int:
        return 0 if self.metadata is None else self.metadata.width

    @property
    def cached(self) -> bool:
        """The CPU path: rows are the lower backbone's cached activations."""
        return isinstance(self.train, ActivationRows)


def check_colour(records: dict[str, Any], model: params_mod.ModelParams) -> None:
    """Refuse TFRecords (their meta.json) whose pixels went through another colour constancy
    than `model.colour_constancy`: the model would learn pixels no runtime feeds it."""
    colour = records.get("colour_constancy", "none")
    if colour != model.colour_constancy:
        raise DermaiError(
            f"TFRecords colour constancy ({colour}) differs from model.colour_constancy "
            f"({model.colour_constancy}); rerun tfrecords"
        )


def load_data(
    plan: Plan, cfg: params_mod.TrainParams, tfrecords: str | Path, cache: str | Path | None
) -> TrainingData:
    """The rows `train.feature_cache` asks for: the feature cache (checked against the plan's
    key) or the TFRecords' images."""
    if not cfg.feature_cache:
        images = ImageRows.read(tfrecords, "train", augment=True)
        return TrainingData(images, ImageRows.read(tfrecords, "val"), len(images.y))
    if cache is None:
        raise DermaiError(
            "train.feature_cache needs --features (the folder that `dermai features` writes)"
        )
    t0 = time.time()
    arrays = features.read(cache, plan.key)
    log.info("feature cache read from %s in %.0f s", cache, time.time() - t0)
    rows = {split: ActivationRows(*arrays[split]) for split in features.CACHED_SPLITS}
    n_images = int(len(rows["train"].y) // max(cfg.cache_variants, 1))
    return TrainingData(rows["train"], rows["val"], n_images)


def with_metadata(
    data: TrainingData, prm: params_mod.Params, tfrecords: str | Path
) -> TrainingData:
    """`data` with model.metadata's fields encoded (the encoder fitted on the train split) and
    hidden in training with train.metadata_dropout (models.metainputs)."""
    from dermai.models import metainputs

    cfg = prm.train
    if not isinstance(data.train, ActivationRows) or not isinstance(data.val, ActivationRows):
        raise DermaiError("model.metadata needs train.feature_cache: true (the CPU path)")
    if cfg.max_train_images:
        raise DermaiError("model.metadata needs train.max_train_images: 0 (rows in record order)")
    train, val, enc = metainputs.single_split(
        data.train,
        data.val,
        tfrecords,
        prm.model.metadata,
        cfg.cache_variants,
        cfg.metadata_dropout,
    )
    log.info("metadata %s: %d inputs appended to the head", ", ".join(enc.fields), enc.width)
    return TrainingData(train, val, data.images, enc)


@dataclass
class History:
    """What a run kept: member k's tracker (its kept epoch and curves) and seed."""

    trackers: list[Tracker]
    seeds: list[int]

    @property
    def best_epoch(self) -> int:
        return self.trackers[0].best_epoch

    @property
    def best(self) -> float:
        return self.trackers[0].best


def compile_for(
    model: keras.Model,
    cfg: params_mod.TrainParams,
    lr: float,
    steps: int,
    y: np.ndarray,
    n_classes: int,
) -> None:
    """Adam on a cosine schedule over `steps`, with the configured loss (the class prior of the
    training labels `y` for the logit-adjusted loss)."""
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(steps, 1), alpha=0.05)
    counts = class_counts(y, n_classes)
    prior = (counts / max(counts.sum(), 1)).tolist()
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=make_loss(cfg, prior),
        metrics=["accuracy"],
    )


def epoch_order(
    rng: np.random.Generator, y: np.ndarray, cfg: params_mod.TrainParams, n_classes: int
) -> np.ndarray:
    """The rows of one epoch: a permutation, or with `train.imbalance: oversample` as many rows
    drawn class first (classes weighted by `train.oversample_power`), then a row of the class."""
    if cfg.imbalance != "oversample":
        return rng.permutation(len(y))
    p = sampling_weights(y, n_classes, cfg.oversample_power)
    per_class = [np.flatnonzero(y == c) for c in range(n_classes)]
    cls = rng.choice(n_classes, size=len(y), p=p)
    return np.array([rng.choice(per_class[c]) for c in cls])


def train_epochs(
    model: keras.Model,
    train: Rows,
    val: Rows,
    *,
    epochs: int,
    lr: float,
    cfg: params_mod.TrainParams,
    n_classes: int,
    seed: int,
    tracker: Tracker,
    phase: int,
) -> None:
    """The epoch loop: fit `model` one epoch at a time, then score it on `val`."""
    if epochs <= 0:
        return
    tracker.begin_phase(phase)
    y = train.y
    log.info(
        "phase %d (%s): %d epoch(s) over %d samples, lr %g; building the graph",
        phase,
        "head" if phase == 1 else "top stages + head",
        epochs,
        len(y),
        lr,
    )
    compile_for(model, cfg, lr, max(1, -(-len(y) // cfg.batch_size)) * epochs, y, n_classes)
    w = None
    if cfg.imbalance == "class_weight":
        w = class_weights(y, n_classes, cfg.class_weight_power)
    rng = np.random.default_rng(seed + 7919 * phase)
    onehot = np.eye(n_classes, dtype=np.float32)
    for epoch in range(epochs):
        order = epoch_order(rng, y, cfg, n_classes)
        weights = None if w is None else w[y].astype(np.float32)
        batches = train.batches(
            Epoch(order, onehot[y], weights, cfg.batch_size, seed + phase, epoch)
        )
        progress = BatchProgress(
            f"epoch {tracker.progress_label()} (phase {phase})", cfg.batch_size
        )
        hist = model.fit(batches, epochs=1, verbose=0, callbacks=[progress])
        logs = {k: v[-1] for k, v in hist.history.items()}
        tracker.end_epoch(val.predict(model), val.y, logs, phase, model)


def _phase_model(
    plan: Plan,
    upper: keras.Model | None,
    head: keras.Model,
    phase: int,
    data: TrainingData,
    full: keras.Model | None,
) -> tuple[keras.Model, Rows, Rows]:
    """(model trained in `phase`, its train rows, its val rows). The CPU path trains the head on
    the frozen upper part's pooled output in phase 1, and the upper part with the head in phase
    2; the GPU path trains the whole model (`full`) from images in both."""
    if not data.cached:
        assert full is not None
        return full, data.train, data.val
    train, val = data.train, data.val
    assert isinstance(train, ActivationRows) and isinstance(val, ActivationRows)
    if phase == 1:
        if upper is not None:
            log.info("running the cached activations through the frozen top stages for the head")
        return head, train.through(upper), val.through(upper)
    assert upper is not None
    if not data.metadata_width:
        return keras.Model(upper.input, head(upper.output), name="top"), train, val
    meta = keras.Input((data.metadata_width,), name=METADATA_INPUT)
    top = keras.Model([upper.input, meta], head([upper.output, meta]), name="top")
    return top, train, val


def fit_member(
    plan: Plan,
    upper: keras.Model | None,
    head: keras.Model,
    data: TrainingData,
    cfg: params_mod.TrainParams,
    seed: int,
    tracker: Tracker,
) -> keras.Model:
    """Both phases of one member; leaves the kept epoch's weights in place and returns the model
    that holds them (the CPU path: head or upper + head; the GPU path: the whole model).

    Phase 2 starts from phase 1's kept weights and competes with them."""
    full = None if data.cached else assemble(plan.lower, upper, head, plan.shape, plan.classes)
    phases = [(1, cfg.head_epochs, cfg.lr)]
    if upper is not None and cfg.finetune_epochs > 0:
        phases.append((2, cfg.finetune_epochs, cfg.finetune_lr))
    current = None
    for phase, epochs, lr in phases:
        model, train, val = _phase_model(plan, upper, head, phase, data, full)
        set_phase(plan.lower, upper, head, phase)
        if current is not None and tracker.best_weights is not None:
            current.set_weights(tracker.best_weights)
            tracker.best_weights = model.get_weights()  # phase 2 competes with phase 1's best
        train_epochs(
            model,
            train,
            val,
            epochs=epochs,
            lr=lr,
            cfg=cfg,
            n_classes=len(plan.classes),
            seed=seed,
            tracker=tracker,
            phase=phase,
        )
        current = model
    assert current is not None
    if tracker.best_weights is not None:
        current.set_weights(tracker.best_weights)
    return current


def member_seed(seed: int, k: int) -> int:
    """Member k's seed (k = 0 .. train.ensemble - 1): train.seed + k, so member 0 is the single
    model and member k the single model that `train.seed + k` would train (if that seed is not
    base.seed, which keeps one stream with the backbone build)."""
    return seed + k


def _new_head(
    plan: Plan, cfg: params_mod.TrainParams, dropout: float, metadata_width: int = 0
) -> keras.Model:
    return build_head(
        int(plan.backbone.output.shape[-1]),
        len(plan.classes),
        dropout,
        cfg.weight_decay,
        metadata_width,
    )


def above_cut(model: keras.Model) -> keras.Model:
    """An assembled model (image [+ metadata] -> lower -> [upper] -> head) from the lower
    part's output on: its layers after the lower part, for cached activations (the metadata,
    when the model takes it, stays the second input)."""
    nested = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)]
    x = inp = keras.Input(nested[0].output.shape[1:], name="cut")
    width = metadata_width(model)
    if not width:
        for layer in nested[1:]:
            x = layer(x)
        return keras.Model(inp, x, name="above_cut")
    meta = keras.Input((width,), name=METADATA_INPUT)
    for layer in nested[1:-1]:
        x = layer(x)
    return keras.Model([inp, meta], nested[-1]([x, meta]), name="above_cut")


def fit(
    plan: Plan,
    data: TrainingData,
    cfg: params_mod.TrainParams,
    seed: int,
    live: Live,
    *,
    dropout: float,
) -> tuple[keras.Model, History]:
    """Train `cfg.ensemble` members on `data` (seed `seed` + k each) and return the deployable
    model (raw [0, 255] RGB in, probabilities out) with the members' history; the heads drop
    `dropout` (model.dropout) of their input in training. dvclive's curves
    and summary are member 0's (its kept epoch's values), plus the ensemble's under `ensemble`.

    Member 0 is exactly the single model of `seed` (nothing runs before it, so ensemble: 1 gives
    the single model's bytes). Member k starts from a copy of the upper part's weights as they
    were before member 0 trained and a head built after `keras.utils.set_random_seed(seed + k)`;
    it logs through a quiet tracker. Each member costs its own phase 1 + 2; the lower part and
    the rows are shared.
    """
    k = cfg.ensemble
    with plan.scope():
        if seed != plan.seed:  # equal seeds keep one stream with the backbone: the default bytes
            keras.utils.set_random_seed(seed)
        head = _new_head(plan, cfg, dropout, data.metadata_width)
    epochs = cfg.head_epochs + (cfg.finetune_epochs if plan.upper is not None else 0)
    tracker = Tracker(live, len(plan.classes), total_epochs=epochs)
    start = None if plan.upper is None or k <= 1 else plan.upper.get_weights()
    if k > 1:
        tracker.label = f"member 1/{k}: "
    trained = fit_member(plan, plan.upper, head, data, cfg, seed, tracker)
    uppers, heads, trackers = [plan.upper], [head], [tracker]
    for i in range(1, k):
        s = member_seed(seed, i)
        with plan.scope():
            u = None if plan.upper is None else copy_upper(plan.upper, start or [], f"upper_{i}")
            keras.utils.set_random_seed(s)  # after the copy: the head's init is seed s's alone
            h = _new_head(plan, cfg, dropout, data.metadata_width)
        t = Tracker(
            QuietLive(), len(plan.classes), total_epochs=epochs, label=f"member {i + 1}/{k}: "
        )
        fit_member(plan, u, h, data, cfg, s, t)
        uppers.append(u)
        heads.append(h)
        trackers.append(t)
    if data.cached or k > 1:
        model = assemble_ensemble(plan.lower, uppers, heads, plan.shape, plan.classes)
    else:  # the GPU path's single member: the model it trained (its archive keeps its state)
        model = trained
    history = History(trackers, [member_seed(seed, i) for i in range(k)])
    tracker.summarise(data.images)
    if k > 1:
        reader = above_cut(model) if data.cached else model
        summarise_ensemble(live, trackers, history.seeds, data.val.y, data.val.predict(reader))
    return model, history


def save_model(model: keras.Model, path: Path) -> None:
    """Atomic and byte-reproducible: the archive carries no save date (models/archive.py)."""
    save_keras(model, path)
