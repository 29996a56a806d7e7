"""Train the classifier: EfficientNet backbone + dropout + softmax head, two-phase fine-tuning.

Phase 1 trains the head on a frozen backbone; phase 2 unfreezes the top `train.unfreeze_blocks`
stages (BatchNorm stays frozen) at a lower learning rate. Class imbalance is handled by
`train.imbalance`. The model with the best validation balanced accuracy is kept.

On a CPU (`train.feature_cache: true`) the frozen lower backbone runs once over a few augmented
copies of every training image and the top stages train from those cached activations: this is
what makes a HAM10000 run fit in an hour on two cores. With a GPU, set `feature_cache: false` to
train from the TFRecords with on-the-fly augmentation at full resolution.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dermai import DISCLAIMER
from dermai import params as params_mod
from dermai.core import metrics as M
from dermai.core.imbalance import class_weights, sampling_weights
from dermai.errors import DermaiError, require_gate
from dermai.io.atomic import write_json

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

N_STAGES = 7  # EfficientNet stages block1..block7


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml",
                   help="params file (sections: base, model, train)")
    p.add_argument("--tfrecords", required=True, help="folder written by `dermai tfrecords`")
    p.add_argument("--pretrained", required=True,
                   help="converted Lite0 ImageNet weights (.weights.h5)")
    p.add_argument("--model", required=True, help="output .keras model")
    p.add_argument("--live", required=True, help="dvclive output folder")
    p.add_argument("--gate", default=None,
                   help="file that `dermai validate` writes only when the data gates pass")


# --------------------------------------------------------------------------- model pieces


def cut_layer_name(backbone: keras.Model, unfreeze_blocks: int) -> str | None:
    """Name of the layer whose output feeds the first unfrozen stage (None: head only)."""
    if unfreeze_blocks <= 0:
        return None
    if unfreeze_blocks >= N_STAGES:
        return "stem_activation"
    prefix = f"block{N_STAGES - unfreeze_blocks}"
    names = [layer.name for layer in backbone.layers if layer.name.startswith(prefix)]
    if not names:
        raise DermaiError(f"backbone {backbone.name} has no layers named {prefix}*")
    return names[-1]


def split_backbone(backbone: keras.Model, unfreeze_blocks: int) -> tuple[keras.Model,
                                                                         keras.Model | None]:
    """(lower, upper): lower stays frozen; upper holds the stages that phase 2 trains."""
    import keras

    cut = cut_layer_name(backbone, unfreeze_blocks)
    if cut is None:
        return backbone, None
    t = backbone.get_layer(cut).output
    return (keras.Model(backbone.input, t, name="lower"),
            keras.Model(t, backbone.output, name="upper"))


def build_head(feature_dim: int, n_classes: int, dropout: float,
               weight_decay: float) -> keras.Model:
    import keras
    from keras import layers

    x = inp = keras.Input((feature_dim,), name="features")
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(n_classes, kernel_regularizer=keras.regularizers.l2(weight_decay)
                     if weight_decay else None, name="logits")(x)
    out = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inp, out, name="head")


def set_phase(lower: keras.Model, upper: keras.Model | None, head: keras.Model,
              phase: int) -> None:
    """Phase 1: only the head trains. Phase 2: upper too, with BatchNorm frozen."""
    import keras

    lower.trainable = False
    head.trainable = True
    if upper is None:
        return
    upper.trainable = phase == 2
    if phase == 2:
        for layer in upper.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False


def assemble(lower: keras.Model, upper: keras.Model | None, head: keras.Model,
             input_shape: tuple[int, int, int], classes: list[str]) -> keras.Model:
    """The deployable model: raw [0, 255] RGB in, class probabilities out."""
    import keras

    inp = keras.Input(input_shape, name="image")
    x = lower(inp)
    if upper is not None:
        x = upper(x)
    return keras.Model(inp, head(x), name="dermai_" + "_".join(classes))


def make_loss(cfg: params_mod.TrainParams) -> Any:
    import keras

    if cfg.imbalance == "focal":
        return keras.losses.CategoricalFocalCrossentropy(
            gamma=cfg.focal_gamma, label_smoothing=cfg.label_smoothing)
    return keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)


# --------------------------------------------------------------------------- data


def cache_split(lower: keras.Model, folder: str, split: str, batch: int, *, variants: int,
                seed: int, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lower-backbone activations (float16) for `variants` copies of each image of `split`.

    Copy 0 is the plain image; copies 1.. are augmented with seeds derived from `seed`, so the
    cache, and the model trained from it, are reproducible.
    """
    import tensorflow as tf

    from dermai.models import data as tfdata

    forward = tf.function(lambda x: lower(x, training=False), reduce_retracing=True)
    xs, ys = [], []
    for v in range(variants):
        # A capped run takes a seeded random subset, not the first rows of the file.
        ds = tfdata.dataset(folder, split, batch, training=v > 0, seed=seed * 1000 + v,
                            shuffle=bool(limit))
        if limit:
            ds = ds.unbatch().take(limit).batch(batch)
        t0, n = time.time(), 0
        for x, y in ds:
            xs.append(forward(x).numpy().astype(np.float16))
            ys.append(y.numpy())
            n += len(y)
        log.info("cached %s copy %d/%d: %d images in %.0f s (%.1f img/s)", split, v + 1,
                 variants, n, time.time() - t0, n / max(time.time() - t0, 1e-9))
        del ds
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


# --------------------------------------------------------------------------- training loop


class Tracker:
    """Evaluates validation after every epoch, logs to dvclive, keeps the best weights."""

    def __init__(self, live: Any, n_classes: int) -> None:
        self.live = live
        self.n_classes = n_classes
        self.best = -1.0
        self.best_weights: list[np.ndarray] | None = None
        self.best_epoch = -1
        self.epoch = 0

    def end_epoch(self, val_proba: np.ndarray, y_val: np.ndarray, logs: dict[str, float],
                  phase: int, weights_of: keras.Model) -> None:
        m = M.summary(y_val, val_proba)
        self.live.log_metric("train/loss", float(logs.get("loss", np.nan)))
        self.live.log_metric("train/accuracy", float(logs.get("accuracy", np.nan)))
        self.live.log_metric("val/accuracy", m["accuracy"])
        self.live.log_metric("val/balanced_accuracy", m["balanced_accuracy"])
        self.live.log_metric("val/macro_auc", m["macro_auc"])
        self.live.log_metric("phase", phase, plot=False)
        log.info("epoch %d (phase %d): loss %.4f val acc %.4f bal acc %.4f auc %.4f",
                 self.epoch, phase, logs.get("loss", np.nan), m["accuracy"],
                 m["balanced_accuracy"], m["macro_auc"])
        if m["balanced_accuracy"] > self.best:
            self.best = m["balanced_accuracy"]
            self.best_weights = weights_of.get_weights()
            self.best_epoch = self.epoch
            self.best_metrics = m
        self.epoch += 1
        self.live.next_step()


def predict_batches(model: keras.Model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Predict slice by slice: `model.predict` on a whole array copies it to float32 first."""
    out = [model.predict_on_batch(x[i:i + batch].astype(np.float32))
           for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def array_batches(x: np.ndarray, targets: np.ndarray, order: np.ndarray, batch: int,
                 sample_weight: np.ndarray | None) -> Any:
    """Batches gathered from the cached arrays on demand, in `order`.

    Fitting on `x[order]` would copy the whole cache (and Keras would convert it to float32
    tensors again); gathering one batch at a time keeps training memory near the cache size.
    """
    import keras

    class _Batches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return -(-len(order) // batch)

        def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
            sel = order[i * batch:(i + 1) * batch]
            xb, yb = x[sel].astype(np.float32), targets[sel]
            return (xb, yb) if sample_weight is None else (xb, yb, sample_weight[sel])

    return _Batches()


def train_epochs(model: keras.Model, x: np.ndarray, y: np.ndarray, x_val: np.ndarray,
                 y_val: np.ndarray, *, epochs: int, lr: float, cfg: params_mod.TrainParams,
                 n_classes: int, seed: int, tracker: Tracker, phase: int,
                 weights_of: keras.Model) -> None:
    """Fit on in-memory arrays, one epoch at a time, with the configured imbalance handling."""
    import keras

    if epochs <= 0:
        return
    steps = max(1, -(-len(x) // cfg.batch_size)) * epochs
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=make_loss(cfg),
                  metrics=["accuracy"])
    cw = w = None
    if cfg.imbalance == "class_weight":
        w = class_weights(y, n_classes, cfg.class_weight_power)
        cw = {c: float(w[c]) for c in range(n_classes)}
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
        batches = array_batches(x, onehot[y], idx, cfg.batch_size,
                               None if cw is None else w[y].astype(np.float32))
        hist = model.fit(batches, epochs=1, verbose=0)
        logs = {k: v[-1] for k, v in hist.history.items()}
        proba = predict_batches(model, x_val)
        tracker.end_epoch(proba, y_val, logs, phase, weights_of)


def train_epochs_images(model: keras.Model, folder: str, *, epochs: int, lr: float,
                        cfg: params_mod.TrainParams, n_classes: int, seed: int,
                        tracker: Tracker, phase: int, y_train: np.ndarray,
                        val: tuple[Any, np.ndarray]) -> None:
    """Fit from the TFRecords with on-the-fly augmentation (the GPU path)."""
    import keras
    import tensorflow as tf

    from dermai.models import data as tfdata

    if epochs <= 0:
        return
    steps = max(1, -(-len(y_train) // cfg.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps * epochs, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=make_loss(cfg),
                  metrics=["accuracy"])
    weights = (sampling_weights(y_train, n_classes, cfg.oversample_power).tolist()
               if cfg.imbalance == "oversample" else None)
    ds = tfdata.dataset(folder, "train", cfg.batch_size, training=True, seed=seed + phase,
                        oversample_weights=weights, repeat=True)
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
    model.fit(ds, steps_per_epoch=steps, epochs=epochs, class_weight=cw, verbose=0,
              callbacks=[_Val()])


def setup_tf(cfg: params_mod.TrainParams, seed: int) -> Any:
    """Seeds, determinism, precision and the distribution strategy (GPUs if present)."""
    import keras
    import tensorflow as tf

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


def save_model(model: keras.Model, path: Path) -> None:
    """Atomic save (Keras insists on the .keras suffix, so the temp name keeps it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> None:
    require_gate(args.gate)
    prm = params_mod.load(args.params)
    cfg, mcfg = prm.train, prm.model
    from dvclive import Live

    from dermai.models import data as tfdata
    from dermai.models.backbones import build_backbone

    strategy = setup_tf(cfg, prm.base.seed)
    meta = tfdata.read_meta(args.tfrecords)
    classes = meta["classes"]
    if classes != prm.base.classes:
        raise DermaiError("TFRecords were written for other classes; rerun `dermai tfrecords`")
    n_classes = len(classes)
    shape = (meta["image_height"], meta["image_width"], 3)
    if (shape[0], shape[1]) != (mcfg.image_height, mcfg.image_width):
        raise DermaiError("TFRecords image size differs from model.image_*; rerun tfrecords")
    t_start = time.time()
    with strategy.scope():
        backbone = build_backbone(mcfg.backbone, mcfg.weights, shape, args.pretrained)
        lower, upper = split_backbone(backbone, cfg.unfreeze_blocks)
        head = build_head(int(backbone.output.shape[-1]), n_classes, mcfg.dropout,
                          cfg.weight_decay)
    live = Live(args.live, dvcyaml=False, save_dvc_exp=False, report=None)
    tracker = Tracker(live, n_classes)

    if not cfg.feature_cache:
        train_from_images(args.tfrecords, lower, upper, head, shape, classes, prm,
                          tracker, args.model, t_start, live)
        return

    x_tr, y_tr = cache_split(lower, args.tfrecords, "train", 64, variants=cfg.cache_variants,
                             seed=prm.base.seed, limit=cfg.max_train_images)
    x_va, y_va = cache_split(lower, args.tfrecords, "val", 64, variants=1, seed=prm.base.seed)
    t_cached = time.time()

    # Phase 1: head on pooled features of the frozen upper stages.
    if upper is not None:
        f_tr = predict_batches(upper, x_tr)
        f_va = predict_batches(upper, x_va)
    else:
        f_tr, f_va = x_tr.astype(np.float32), x_va.astype(np.float32)
    set_phase(lower, upper, head, 1)
    train_epochs(head, f_tr, y_tr, f_va, y_va, epochs=cfg.head_epochs, lr=cfg.lr, cfg=cfg,
                 n_classes=n_classes, seed=prm.base.seed, tracker=tracker, phase=1,
                 weights_of=head)
    del f_tr, f_va

    # Phase 2: top stages + head from the cached activations, BatchNorm frozen.
    if upper is not None and cfg.finetune_epochs > 0:
        import keras

        if tracker.best_weights is not None:
            head.set_weights(tracker.best_weights)
        top = keras.Model(upper.input, head(upper.output), name="top")
        set_phase(lower, upper, head, 2)
        tracker.best_weights = top.get_weights()  # compare phase 2 against phase 1's best
        train_epochs(top, x_tr, y_tr, x_va, y_va, epochs=cfg.finetune_epochs,
                     lr=cfg.finetune_lr, cfg=cfg, n_classes=n_classes, seed=prm.base.seed,
                     tracker=tracker, phase=2, weights_of=top)
        if tracker.best_weights is not None:
            top.set_weights(tracker.best_weights)
    elif tracker.best_weights is not None:
        head.set_weights(tracker.best_weights)

    model = assemble(lower, upper, head, shape, classes)
    log.info("feature cache took %.0f s", t_cached - t_start)
    finish(model, prm, classes, shape, tracker, live, args.model, t_start,
           int(len(y_tr) // max(cfg.cache_variants, 1)))


def train_from_images(folder: str, lower: keras.Model, upper: keras.Model | None,
                      head: keras.Model, shape: tuple[int, int, int], classes: list[str],
                      prm: params_mod.Params, tracker: Tracker, model_path: str,
                      t_start: float, live: Any) -> None:
    """Both phases on the full model, fed from the TFRecords with augmentation."""
    from dermai.models import data as tfdata

    cfg, seed = prm.train, prm.base.seed
    n = len(classes)
    y_tr = np.concatenate([y.numpy() for _, y in tfdata.dataset(folder, "train", 512)])
    val_ds = tfdata.dataset(folder, "val", cfg.batch_size)
    y_va = np.concatenate([y.numpy() for _, y in val_ds])
    model = assemble(lower, upper, head, shape, classes)
    for phase, epochs, lr in ((1, cfg.head_epochs, cfg.lr),
                              (2, cfg.finetune_epochs if upper is not None else 0,
                               cfg.finetune_lr)):
        set_phase(lower, upper, head, phase)
        if tracker.best_weights is not None:
            model.set_weights(tracker.best_weights)
        train_epochs_images(model, folder, epochs=epochs, lr=lr, cfg=cfg, n_classes=n,
                            seed=seed, tracker=tracker, phase=phase, y_train=y_tr,
                            val=(val_ds, y_va))
    if tracker.best_weights is not None:
        model.set_weights(tracker.best_weights)
    finish(model, prm, classes, shape, tracker, live, model_path,
           t_start, len(y_tr))


def finish(model: keras.Model, prm: params_mod.Params, classes: list[str],
           shape: tuple[int, int, int], tracker: Tracker, live: Any, model_path: str,
           t_start: float, n_train: int) -> None:
    """Save the best model, the resolved params and the run summary."""
    save_model(model, Path(model_path))
    resolved = {"params": params_mod.as_dict(prm), "classes": classes,
                "input_shape": list(shape), "best_epoch": tracker.best_epoch,
                "disclaimer": DISCLAIMER}
    write_json(Path(model_path).with_name("train_params.json"), resolved)
    live.summary.update({
        "best_epoch": tracker.best_epoch,
        "best_val_balanced_accuracy": tracker.best,
        "best_val_accuracy": tracker.best_metrics["accuracy"],
        "best_val_macro_auc": tracker.best_metrics["macro_auc"],
        "train_images": n_train,
    })
    live.end()
    log.info("trained in %.0f s; best epoch %d, val balanced acc %.4f",
             time.time() - t_start, tracker.best_epoch, tracker.best)
