"""The rows a training run reads, held in memory: cached lower-backbone activations (the CPU
path) or the TFRecords' encoded images (the GPU path).

Both are an array of rows with labels. The one epoch loop (`dermai.models.training`) draws an
order of rows for each epoch (shuffled or oversampled) and asks the rows for that epoch's
batches; validation asks them for a model's predictions in row order. Neither reads a file once
built, so a run on a subset (a cross-validation fold of one feature cache) is `select(rows)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from dermai.core import metadata
from dermai.errors import DermaiError
from dermai.models import data

PREDICT_BATCH = 256  # forward-pass slice for cached rows; does not change the outputs


@dataclass(frozen=True)
class Epoch:
    """One epoch's draw, for any rows: the rows in the order drawn (an index array), every row's
    one-hot target and sample weight (None: all 1), the batch size, and the augmentation seed
    and epoch index (rows augmented as read use them)."""

    order: np.ndarray
    targets: np.ndarray
    sample_weight: np.ndarray | None
    batch: int
    seed: int
    index: int


class Rows(Protocol):
    """What the epoch loop needs of a set of training or validation rows."""

    y: np.ndarray

    def batches(self, epoch: Epoch) -> Any:
        """The epoch's batches for `model.fit`."""
        ...

    def predict(self, model: keras.Model) -> np.ndarray:
        """`model`'s outputs for every row, in row order."""
        ...


def predict_batches(
    model: keras.Model, x: np.ndarray, batch: int = PREDICT_BATCH, m: np.ndarray | None = None
) -> np.ndarray:
    """Predict slice by slice: `model.predict` on a whole array copies it to float32 first.
    `m`: the rows' encoded metadata, the model's second input."""

    def inputs(i: int) -> Any:
        xb = x[i : i + batch].astype(np.float32)
        return xb if m is None else [xb, m[i : i + batch]]

    out = [model.predict_on_batch(inputs(i)) for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


class _Batches(keras.utils.PyDataset):
    """Batches gathered from in-memory arrays on demand, in `order`.

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
        m: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.x, self.targets, self.order, self.batch = x, targets, order, batch
        self.sample_weight, self.m = sample_weight, m

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        sel = self.order[i * self.batch : (i + 1) * self.batch]
        xb, yb = self.x[sel].astype(np.float32), self.targets[sel]
        if self.m is not None:
            xb = (xb, self.m[sel])
        if self.sample_weight is None:
            return xb, yb
        return xb, yb, self.sample_weight[sel]


def array_batches(
    x: np.ndarray,
    targets: np.ndarray,
    order: np.ndarray,
    batch: int,
    sample_weight: np.ndarray | None,
    m: np.ndarray | None = None,
) -> keras.utils.PyDataset:
    return _Batches(x, targets, order, batch, sample_weight, m)


@dataclass(frozen=True)
class MetadataRows:
    """The rows' encoded metadata (core.metadata: one vector per row) and how training hides
    it: each field of each row is set to unknown with probability `dropout`, drawn anew each
    epoch from the epoch's seed (0 for validation rows: they are read as they are)."""

    m: np.ndarray
    encoder: metadata.Encoder
    dropout: float = 0.0

    def for_epoch(self, epoch: Epoch) -> np.ndarray:
        rng = np.random.default_rng([epoch.seed, epoch.index, 104729])
        return metadata.mask(self.m, self.encoder, self.dropout, rng)

    def select(self, rows: np.ndarray) -> MetadataRows:
        return MetadataRows(self.m[rows], self.encoder, self.dropout)


@dataclass
class ActivationRows:
    """Cached activations (float16) at the backbone's cut, or pooled features, with labels
    (and, with model.metadata, the rows' encoded metadata: the model's second input)."""

    x: np.ndarray
    y: np.ndarray
    meta: MetadataRows | None = None

    def batches(self, epoch: Epoch) -> keras.utils.PyDataset:
        """The rows as cached (their copies were augmented when the cache was made)."""
        m = None if self.meta is None else self.meta.for_epoch(epoch)
        return array_batches(
            self.x, epoch.targets, epoch.order, epoch.batch, epoch.sample_weight, m
        )

    def predict(self, model: keras.Model) -> np.ndarray:
        return predict_batches(model, self.x, m=None if self.meta is None else self.meta.m)

    def through(self, model: keras.Model | None) -> ActivationRows:
        """The rows after a frozen `model` (None: as they are, in float32): phase 1 trains the
        head on the pooled output of the frozen upper stages, computed once."""
        if model is None:
            return ActivationRows(self.x.astype(np.float32), self.y, self.meta)
        return ActivationRows(predict_batches(model, self.x), self.y, self.meta)

    def select(self, rows: np.ndarray) -> ActivationRows:
        meta = None if self.meta is None else self.meta.select(rows)
        return ActivationRows(self.x[rows], self.y[rows], meta)


@dataclass
class ImageRows:
    """The serialized TFRecord examples of a split, decoded (and, when `augment`, augmented
    with seeds from the epoch and the row's position) as each epoch reads them."""

    records: np.ndarray  # object array of serialized tf.train.Example bytes
    y: np.ndarray
    height: int
    width: int
    augment: bool = False

    @classmethod
    def read(cls, folder: str | Path, split: str, *, augment: bool = False) -> ImageRows:
        meta = data.read_meta(folder)
        label = {"label": data.FEATURES["label"]}
        ds = tf.data.TFRecordDataset(data.files(folder, split)).map(
            lambda r: (r, tf.io.parse_single_example(r, label)["label"])
        )
        records: list[bytes] = []
        labels = []
        for r, y in ds.batch(1024):
            records += r.numpy().tolist()
            labels.append(y.numpy())
        if not records:
            raise DermaiError(f"TFRecords split {split!r} in {folder} is empty")
        arr = np.empty(len(records), dtype=object)
        arr[:] = records
        y = np.concatenate(labels).astype(np.int64)
        return cls(arr, y, meta["image_height"], meta["image_width"], augment)

    def _images(self, order: np.ndarray) -> tf.data.Dataset:
        decode = data.decode(self.height, self.width)
        ds = tf.data.Dataset.from_tensor_slices(self.records[order].tolist())
        return ds.map(lambda r: decode(r)[0], num_parallel_calls=data.AUTOTUNE, deterministic=True)

    def batches(self, epoch: Epoch) -> tf.data.Dataset:
        order, seed = epoch.order, epoch.seed
        images = self._images(order)
        if self.augment:
            # One augmentation stream per epoch: the row's position in all epochs so far.
            start = epoch.index * len(order)
            positions = tf.data.Dataset.range(start, start + len(order))
            images = tf.data.Dataset.zip((images, positions)).map(
                lambda x, i: data.augment(x, tf.stack([tf.cast(seed, tf.int64), i])),
                num_parallel_calls=data.AUTOTUNE,
                deterministic=True,
            )
        parts = [images, tf.data.Dataset.from_tensor_slices(epoch.targets[order])]
        if epoch.sample_weight is not None:
            parts.append(tf.data.Dataset.from_tensor_slices(epoch.sample_weight[order]))
        return tf.data.Dataset.zip(tuple(parts)).batch(epoch.batch).prefetch(data.AUTOTUNE)

    def predict(self, model: keras.Model, batch: int = 64) -> np.ndarray:
        order = np.arange(len(self.y))
        return model.predict(self._images(order).batch(batch), verbose=0)

    def select(self, rows: np.ndarray) -> ImageRows:
        return ImageRows(self.records[rows], self.y[rows], self.height, self.width, self.augment)
