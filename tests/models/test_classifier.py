"""Classifier structure on the real Lite0 graph (untrained, tiny input): where the backbone is
cut for each `train.unfreeze_blocks`, which weights each phase trains, and BatchNorm frozen."""

from __future__ import annotations

import re

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dermai.models.backbones import (  # noqa: E402
    N_STAGES,
    build_backbone,
    cut_layer_name,
    split_backbone,
)
from dermai.models.classifier import build_head, set_phase  # noqa: E402

SHAPE = (32, 32, 3)


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(0)
    return build_backbone("efficientnet_lite0", "none", SHAPE)


def _stage(name: str) -> int | None:
    m = re.match(r"block(\d)", name)
    return int(m.group(1)) if m else None


def _ids(variables) -> set[int]:
    return {id(v) for v in variables}


@pytest.mark.parametrize("k", [0, 1, 3, N_STAGES])
def test_cut_puts_exactly_the_top_k_stages_above(backbone, k: int) -> None:
    lower, upper = split_backbone(backbone, k)
    if k == 0:
        assert cut_layer_name(backbone, 0) is None and upper is None and lower is backbone
        return
    first_trained = N_STAGES - k + 1
    upper_stages = {_stage(layer.name) for layer in upper.layers} - {None}
    lower_stages = {_stage(layer.name) for layer in lower.layers} - {None}
    assert upper_stages == set(range(first_trained, N_STAGES + 1))
    assert lower_stages == set(range(1, first_trained))
    # Nothing is lost or duplicated at the cut: every backbone weight sits on exactly one side.
    assert _ids(lower.weights).isdisjoint(_ids(upper.weights))
    assert _ids(lower.weights) | _ids(upper.weights) == _ids(backbone.weights)


@pytest.mark.parametrize("k", [1, 3])
def test_trainable_set_per_phase(backbone, k: int) -> None:
    lower, upper = split_backbone(backbone, k)
    head = build_head(int(backbone.output.shape[-1]), 3, 0.0, 0.0)

    set_phase(lower, upper, head, 1)
    assert lower.trainable_weights == [] and upper.trainable_weights == []
    assert _ids(head.trainable_weights) == _ids(head.weights)

    set_phase(lower, upper, head, 2)
    assert lower.trainable_weights == []
    bn = [layer for layer in upper.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and all(not layer.trainable for layer in bn)
    bn_vars = _ids(v for layer in bn for v in layer.weights)
    expected = {id(v) for v in upper.weights if v.trainable and id(v) not in bn_vars}
    assert _ids(upper.trainable_weights) == expected != set()
    assert _ids(upper.trainable_weights).isdisjoint(bn_vars)
    assert _ids(head.trainable_weights) == _ids(head.weights)


def test_finetuning_step_moves_convs_but_not_batchnorm(backbone) -> None:
    lower, upper = split_backbone(backbone, 1)
    head = build_head(int(backbone.output.shape[-1]), 3, 0.0, 0.0)
    set_phase(lower, upper, head, 2)
    top = keras.Model(upper.input, head(upper.output))
    top.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy")
    bn = [layer for layer in upper.layers if isinstance(layer, keras.layers.BatchNormalization)]
    convs = [layer for layer in upper.layers if isinstance(layer, keras.layers.Conv2D)]
    before_bn = [w.copy() for layer in bn for w in layer.get_weights()]
    before_conv = [w.copy() for layer in convs for w in layer.get_weights()]

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (8, *upper.input.shape[1:])).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]
    top.fit(x, y, epochs=1, batch_size=8, verbose=0)

    after_bn = [w for layer in bn for w in layer.get_weights()]
    after_conv = [w for layer in convs for w in layer.get_weights()]
    # gamma, beta, moving mean and moving variance: all unchanged in training mode.
    assert all(np.array_equal(a, b) for a, b in zip(before_bn, after_bn, strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(before_conv, after_conv, strict=True))
