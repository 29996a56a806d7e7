"""The training loop: seeded TF set-up, epochs with the configured imbalance handling, and a
tracker that keeps the best epoch's weights.

Two paths share the tracker. The CPU path (`train.feature_cache: true`) trains the top stages
from the frozen lower backbone's activations of a few augmented copies of every training image
(computed once by `dermai.models.features`, the `features` stage). The GPU path trains the whole
model from the TFRecords with on-the-fly augmentation. With `train.ensemble` > 1, `fit_ensemble`
trains more members on either path, each from its own seed, sharing the frozen lower part.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from dermai import params as params_mod
from dermai.core.imbalance import class_counts, class_weights, sampling_weights
from dermai.models import data
from dermai.models.archive import save_keras
from dermai.models.classifier import assemble, copy_upper, make_loss, set_phase
from dermai.models.tracking import BatchProgress, QuietLive, Tracker

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


def predict_batches(model: keras.Model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Predict slice by slice: `model.predict` on a whole array copies it to float32 first."""
    out = [
        model.predict_on_batch(x[i : i + batch].astype(np.float32)) for i in range(0, len(x), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


class _Batches(keras.utils.PyDataset):
    """Batches gathered from the cached arrays on demand, in `order`.

    Fitting on `x[order]` would copy the whole cache (and Keras would convert it to float32
    tensors again); gathering one batch at a time keeps training memory near the cache size.
    """

    def __init__(
        self,
        x: np.ndarray,
        targets: np.ndarray,
        order: np.ndarray,
        batch: int,
        sample_weight: np.ndarray | None,
    ) -> None:
        super().__init__()
        self.x, self.targets, self.order, self.batch = x, targets, order, batch
        self.sample_weight = sample_weight

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch)

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        sel = self.order[i * self.batch : (i + 1) * self.batch]
        xb, yb = self.x[sel].astype(np.float32), self.targets[sel]
        if self.sample_weight is None:
            return xb, yb
        return xb, yb, self.sample_weight[sel]


def array_batches(
    x: np.ndarray,
    targets: np.ndarray,
    order: np.ndarray,
    batch: int,
    sample_weight: np.ndarray | None,
) -> keras.utils.PyDataset:
    return _Batches(x, targets, order, batch, sample_weight)


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


def train_epochs(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int,
    lr: float,
    cfg: params_mod.TrainParams,
    n_classes: int,
    seed: int,
    tracker: Tracker,
    phase: int,
    weights_of: keras.Model,
) -> None:
    """Fit on in-memory arrays, one epoch at a time, with the configured imbalance handling."""
    if epochs <= 0:
        return
    tracker.begin_phase(phase)
    compile_for(model, cfg, lr, max(1, -(-len(x) // cfg.batch_size)) * epochs, y, n_classes)
    w = None
    if cfg.imbalance == "class_weight":
        w = class_weights(y, n_classes, cfg.class_weight_power)
    rng = np.random.default_rng(seed + 7919 * phase)
    onehot = np.eye(n_classes, dtype=np.float32)
    for _ in range(epochs):
        if cfg.imbalance == "oversample":
            p = sampling_weights(y, n_classes, cfg.oversample_power)
            per_class = [np.flatnonzero(y == c) for c in range(n_classes)]
            cls = rng.choice(n_classes, size=len(y), p=p)
            idx = np.array([rng.choice(per_class[c]) for c in cls])
        else:
            idx = rng.permutation(len(y))
        batches = array_batches(
            x, onehot[y], idx, cfg.batch_size, None if w is None else w[y].astype(np.float32)
        )
        progress = BatchProgress(
            f"epoch {tracker.progress_label()} (phase {phase})", cfg.batch_size
        )
        hist = model.fit(batches, epochs=1, verbose=0, callbacks=[progress])
        logs = {k: v[-1] for k, v in hist.history.items()}
        proba = predict_batches(model, x_val)
        tracker.end_epoch(proba, y_val, logs, phase, weights_of)


def fit_cached(
    lower: keras.Model,
    upper: keras.Model | None,
    head: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    *,
    cfg: params_mod.TrainParams,
    n_classes: int,
    seed: int,
    tracker: Tracker,
) -> None:
    """Both phases from cached lower-backbone activations; leaves the best weights in place.

    Phase 1 trains the head on the pooled output of the frozen upper stages; phase 2 trains the
    upper stages and the head together (BatchNorm frozen) and competes with phase 1's best.
    """
    (x_tr, y_tr), (x_va, y_va) = train, val
    if upper is not None:
        f_tr, f_va = predict_batches(upper, x_tr), predict_batches(upper, x_va)
    else:
        f_tr, f_va = x_tr.astype(np.float32), x_va.astype(np.float32)
    set_phase(lower, upper, head, 1)
    train_epochs(
        head,
        f_tr,
        y_tr,
        f_va,
        y_va,
        epochs=cfg.head_epochs,
        lr=cfg.lr,
        cfg=cfg,
        n_classes=n_classes,
        seed=seed,
        tracker=tracker,
        phase=1,
        weights_of=head,
    )
    del f_tr, f_va

    if upper is not None and cfg.finetune_epochs > 0:
        if tracker.best_weights is not None:
            head.set_weights(tracker.best_weights)
        top = keras.Model(upper.input, head(upper.output), name="top")
        set_phase(lower, upper, head, 2)
        tracker.best_weights = top.get_weights()  # compare phase 2 against phase 1's best
        train_epochs(
            top,
            x_tr,
            y_tr,
            x_va,
            y_va,
            epochs=cfg.finetune_epochs,
            lr=cfg.finetune_lr,
            cfg=cfg,
            n_classes=n_classes,
            seed=seed,
            tracker=tracker,
            phase=2,
            weights_of=top,
        )
        top.set_weights(tracker.best_weights)
    elif tracker.best_weights is not None:
        head.set_weights(tracker.best_weights)


def train_epochs_images(
    model: keras.Model,
    folder: str,
    *,
    epochs: int,
    lr: float,
    cfg: params_mod.TrainParams,
    n_classes: int,
    seed: int,
    tracker: Tracker,
    phase: int,
    y_train: np.ndarray,
    val: tuple[tf.data.Dataset, np.ndarray],
) -> None:
    """Fit from the TFRecords with on-the-fly augmentation (the GPU path)."""
    if epochs <= 0:
        return
    tracker.begin_phase(phase)
    steps = max(1, -(-len(y_train) // cfg.batch_size))
    compile_for(model, cfg, lr, steps * epochs, y_train, n_classes)
    weights = (
        sampling_weights(y_train, n_classes, cfg.oversample_power).tolist()
        if cfg.imbalance == "oversample"
        else None
    )
    ds = data.dataset(
        folder,
        "train",
        cfg.batch_size,
        training=True,
        seed=seed + phase,
        oversample_weights=weights,
        repeat=True,
    )
    ds = ds.map(lambda x, y: (x, tf.one_hot(y, n_classes)))
    cw = None
    if cfg.imbalance == "class_weight":
        w = class_weights(y_train, n_classes, cfg.class_weight_power)
        cw = {c: float(w[c]) for c in range(n_classes)}
    val_ds, y_val = val

    class _Val(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            proba = model.predict(val_ds, verbose=0)
            tracker.end_epoch(proba, y_val, logs or {}, phase, model)

    # One fit call: a new call would restart the seeded shuffle from its first order.
    model.fit(
        ds,
        steps_per_epoch=steps,
        epochs=epochs,
        class_weight=cw,
        verbose=0,
        callbacks=[BatchProgress(f"phase {phase}", cfg.batch_size), _Val()],
    )


def fit_images(
    folder: str,
    lower: keras.Model,
    upper: keras.Model | None,
    head: keras.Model,
    shape: tuple[int, int, int],
    classes: list[str],
    *,
    cfg: params_mod.TrainParams,
    seed: int,
    tracker: Tracker,
) -> tuple[keras.Model, int]:
    """Both phases on the full model, fed from the TFRecords; returns (best model, n_train)."""
    n = len(classes)
    y_tr = np.concatenate([y.numpy() for _, y in data.dataset(folder, "train", 512)])
    val_ds = data.dataset(folder, "val", cfg.batch_size)
    y_va = np.concatenate([y.numpy() for _, y in val_ds])
    model = assemble(lower, upper, head, shape, classes)
    for phase, epochs, lr in (
        (1, cfg.head_epochs, cfg.lr),
        (2, cfg.finetune_epochs if upper is not None else 0, cfg.finetune_lr),
    ):
        set_phase(lower, upper, head, phase)
        if tracker.best_weights is not None:
            model.set_weights(tracker.best_weights)
        train_epochs_images(
            model,
            folder,
            epochs=epochs,
            lr=lr,
            cfg=cfg,
            n_classes=n,
            seed=seed,
            tracker=tracker,
            phase=phase,
            y_train=y_tr,
            val=(val_ds, y_va),
        )
    if tracker.best_weights is not None:
        model.set_weights(tracker.best_weights)
    return model, len(y_tr)


FitMember = Callable[[keras.Model | None, keras.Model, int, Tracker], None]
"""Trains one member in place: (upper or None, head, seed, tracker)."""


def member_seed(seed: int, k: int) -> int:
    """Member k's seed (k = 0 .. train.ensemble - 1): train.seed + k, so member 0 is the single
    model and member k the single model that `train.seed + k` would train (if that seed is not
    base.seed, which keeps one stream with the backbone build)."""
    return seed + k


def fit_ensemble(
    upper: keras.Model | None,
    head: keras.Model,
    fit_member: FitMember,
    *,
    members: int,
    seed: int,
    tracker: Tracker,
    new_head: Callable[[], keras.Model],
    scope: Callable[[], Any],
) -> tuple[list[keras.Model | None], list[keras.Model], list[Tracker]]:
    """Train `members` (upper, head) pairs on one frozen lower part; return them and their
    trackers.

    Member 0 is `upper` and `head` trained with `seed` and `tracker` exactly as a single model
    (nothing runs before it, so train.ensemble: 1 gives today's bytes). Member k then starts
    from a copy of the upper's weights as they were before member 0 trained, and a head built
    after `keras.utils.set_random_seed(member_seed(seed, k))`; it logs through a quiet tracker.
    Each member costs its own phase-1 + phase-2 time; the lower part and its cache are shared.
    """
    start = None if upper is None or members <= 1 else upper.get_weights()
    if members > 1:
        tracker.label = f"member 1/{members}: "
    fit_member(upper, head, seed, tracker)
    uppers, heads, trackers = [upper], [head], [tracker]
    for k in range(1, members):
        s = member_seed(seed, k)
        with scope():
            u = None if upper is None else copy_upper(upper, start or [], f"upper_{k}")
            keras.utils.set_random_seed(s)  # after the copy: the head's init is seed s's alone
            h = new_head()
        t = Tracker(
            QuietLive(),
            tracker.n_classes,
            total_epochs=tracker.total_epochs,
            label=f"member {k + 1}/{members}: ",
        )
        fit_member(u, h, s, t)
        uppers.append(u)
        heads.append(h)
        trackers.append(t)
    return uppers, heads, trackers


def cut_proba(model: keras.Model, x_cut: np.ndarray) -> np.ndarray:
    """Probabilities of an assembled model (image -> lower -> [upper] -> head) from cached
    lower-part activations: its layers after the lower part, applied to them."""
    x = inp = keras.Input(x_cut.shape[1:], name="cut")
    for layer in model.layers[2:]:
        x = layer(x)
    return predict_batches(keras.Model(inp, x, name="above_cut"), x_cut)


def images_proba(
    model: keras.Model, folder: str, split: str, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) of a TFRecords split, in file order."""
    ds = data.dataset(folder, split, batch)
    y = np.concatenate([yb.numpy() for _, yb in ds])
    return model.predict(ds, verbose=0), y


def save_model(model: keras.Model, path: Path) -> None:
    """Atomic and byte-reproducible: the archive carries no save date (models/archive.py)."""
    save_keras(model, path)
