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


# --------------------------------------------------------------------------- train.ensemble


def _random_head(feature_dim: int, n: int, seed: int, width: int = 0) -> keras.Model:
    """A head whose logits (over `width` metadata columns too) are random, so members differ."""
    head = build_head(feature_dim, n, 0.3, 0.0, width)
    rng = np.random.default_rng(seed)
    rows = feature_dim + width
    head.get_layer("logits").set_weights(
        [rng.normal(0, 1, (rows, n)).astype(np.float32), rng.normal(0, 1, n).astype("f4")]
    )
    return head


def _logits(upper, head, x, meta=None) -> np.ndarray:
    """Member logits computed by hand: W [f, m] + b from the head's own Dense weights."""
    f = np.asarray(x if upper is None else upper(x, training=False))
    kernel, bias = head.get_layer("logits").get_weights()
    joined = f if meta is None else np.concatenate([f, meta], axis=1)
    return joined @ kernel + bias


def test_ensemble_of_three_stores_the_lower_part_once_and_averages_the_logits(backbone) -> None:
    from dermai.models.classifier import MEMBERS, assemble, assemble_ensemble, copy_upper

    lower, upper = split_backbone(backbone, 3)
    start = upper.get_weights()
    copies = [copy_upper(upper, start, f"upper_{k}") for k in (1, 2)]
    for c in copies:  # fresh variables holding the same start, same layer names
        assert _ids(c.weights).isdisjoint(_ids(upper.weights))
        assert all(np.array_equal(a, b) for a, b in zip(c.get_weights(), start, strict=True))
        assert [la.name for la in c.layers[1:]] == [la.name for la in upper.layers[1:]]
    rng = np.random.default_rng(0)
    for c in copies:  # members that differ
        c.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in c.get_weights()])
    uppers = [upper, *copies]
    heads = [_random_head(1280, 4, k) for k in range(3)]
    model = assemble_ensemble(lower, uppers, heads, SHAPE, ["a", "b", "c", "d"])
    assert [la.name for la in model.layers] == ["image", "lower", MEMBERS, "head"]
    # One lower trunk, three upper parts, one head on the joined 3 x 1280 features.
    assert _ids(lower.weights) <= _ids(model.weights)
    n_single = assemble(lower, upper, heads[0], SHAPE, list("abcd")).count_params()
    n_upper = upper.count_params()
    assert model.count_params() == n_single + 2 * n_upper + 2 * 1280 * 4
    x = rng.uniform(0, 255, (4, *SHAPE)).astype(np.float32)
    cut = lower(x, training=False)
    z = [_logits(u, h, cut) for u, h in zip(uppers, heads, strict=True)]
    assert np.abs(z[0] - z[1]).max() > 0.1  # not vacuous
    from dermai.runtime.inference import features_model, logits_model

    np.testing.assert_allclose(logits_model(model)(x), np.mean(z, axis=0), rtol=1e-5, atol=1e-4)
    assert features_model(model)(x).shape == (4, 3 * 1280)  # the OOD guard's penultimate input


def test_ensemble_without_upper_part_is_one_head_with_the_mean_kernel(backbone) -> None:
    from dermai.models.classifier import assemble_ensemble, ensemble_top

    heads = [_random_head(1280, 3, k) for k in range(3)]
    members, head = ensemble_top([None, None, None], heads)
    assert members is None and head.input.shape[-1] == 1280
    x = np.random.default_rng(1).normal(0, 1, (5, 1280)).astype(np.float32)
    z = [_logits(None, h, x) for h in heads]
    np.testing.assert_allclose(_logits(None, head, x), np.mean(z, axis=0), rtol=1e-5, atol=1e-5)
    model = assemble_ensemble(backbone, [None] * 3, heads, SHAPE, ["a", "b", "c"])
    assert [la.name for la in model.layers] == ["image", backbone.name, "head"]


@pytest.mark.parametrize("with_upper", [True, False])
def test_ensemble_with_metadata_averages_the_members_logits_over_image_and_metadata(
    backbone, with_upper: bool
) -> None:
    """train.ensemble > 1 with model.metadata: the averaged head keeps the metadata input, and
    its logits are the mean of the members' logits for the same image AND metadata (all known,
    some known, all unknown), so the ensemble answers like K members would."""
    from dermai.models.classifier import assemble_ensemble, copy_upper, metadata_width
    from dermai.runtime.inference import logits_model

    width, n = 5, 3
    rng = np.random.default_rng(2)
    if with_upper:
        lower, upper = split_backbone(backbone, 1)
        uppers = [upper] + [copy_upper(upper, upper.get_weights(), f"upper_{k}") for k in (1, 2)]
        for c in uppers[1:]:
            c.set_weights(
                [w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in c.get_weights()]
            )
    else:
        lower, uppers = backbone, [None, None, None]
    heads = [_random_head(1280, n, 10 + k, width) for k in range(3)]
    model = assemble_ensemble(lower, uppers, heads, SHAPE, ["a", "b", "c"])
    assert metadata_width(model) == width and len(model.inputs) == 2
    x = rng.uniform(0, 255, (3, *SHAPE)).astype(np.float32)
    meta = np.array(  # known, partly known, unknown (the encoder's one-hot shapes aside)
        [[0.4, 1, 0, 0, 1], [0.0, 0, 0, 1, 0], [0.0, 0, 0, 0, 0]], dtype=np.float32
    )
    cut = np.asarray(lower(x, training=False))
    z = [_logits(u, h, cut, meta) for u, h in zip(uppers, heads, strict=True)]
    assert np.abs(z[0] - z[1]).max() > 0.1  # members differ: not vacuous
    got = np.asarray(logits_model(model)([x, meta]))
    np.testing.assert_allclose(got, np.mean(z, axis=0), rtol=1e-4, atol=1e-3)
    # The metadata reaches the averaged logits: other metadata, other logits.
    other = np.asarray(logits_model(model)([x, np.zeros_like(meta) + 1.0]))
    assert np.abs(other - got).max() > 0.1
    p = np.asarray(model([x, meta], training=False))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_ensemble_of_one_is_the_single_model(backbone) -> None:
    from dermai.models.classifier import ensemble_top

    _, upper = split_backbone(backbone, 1)
    head = build_head(1280, 3, 0.3, 0.0)
    assert ensemble_top([upper], [head]) == (upper, head)
    with pytest.raises(ValueError, match="every member"):
        ensemble_top([upper, None], [head, head])
