"""`dermai features` on tiny TFRecords: the cached activations are the lower backbone's outputs,
a rerun gives the same bytes, `feature_cache: false` writes only a meta, and `dermai train`
trains from the cache but refuses one made for another cut."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("tensorflow")

from deploy import tiny_tfrecords
from dermai.cli import main

pytestmark = pytest.mark.timeout(900)  # the module fixture runs tfrecords + features

VARIANTS = 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(tfrecords, params.yaml) with a 2-copy cache and one epoch per phase, cut after block1
    (deeper, the untrained backbone's activations vanish in float16)."""
    tmp = tmp_path_factory.mktemp("features")
    records, prm = tiny_tfrecords(tmp)
    params = yaml.safe_load(prm.read_text())
    params["train"] = {
        "cache_variants": VARIANTS,
        "unfreeze_blocks": 6,
        "head_epochs": 1,
        "finetune_epochs": 1,
        "batch_size": 16,
    }
    prm.write_text(yaml.safe_dump(params))
    return records, prm


def features(records: Path, prm: Path, out: Path) -> int:
    return main(
        [
            "features",
            "--params",
            str(prm),
            "--tfrecords",
            str(records),
            "--pretrained",
            "unused.weights.h5",
            "--out",
            str(out),
        ]
    )


@pytest.fixture(scope="module")
def cache(tiny: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    records, prm = tiny
    out = tmp_path_factory.mktemp("cache") / "features"
    assert features(records, prm, out) == 0
    return out


def test_cache_holds_the_lower_backbones_activations(tiny, cache: Path) -> None:
    import keras

    from dermai.models import data
    from dermai.models.backbones import build_backbone, split_backbone

    records, _ = tiny
    meta = json.loads((cache / "meta.json").read_text())
    tf_meta = data.read_meta(records)
    n_train = tf_meta["splits"]["train"]["images"]
    n_val = tf_meta["splits"]["val"]["images"]
    assert sorted(p.name for p in cache.iterdir()) == [
        "meta.json",
        "x_train.npy",
        "x_val.npy",
        "y_train.npy",
        "y_val.npy",
    ]
    x_tr, y_tr = np.load(cache / "x_train.npy"), np.load(cache / "y_train.npy")
    x_va, y_va = np.load(cache / "x_val.npy"), np.load(cache / "y_val.npy")
    assert x_tr.dtype == np.float16 and y_tr.dtype == np.int64
    assert len(x_tr) == len(y_tr) == VARIANTS * n_train and len(x_va) == len(y_va) == n_val
    assert meta["rows"] == {"train": VARIANTS * n_train, "val": n_val}
    assert meta["variants"] == VARIANTS and meta["classes"] == ["bcc", "mel", "nv"]
    assert meta["cut_layer"].startswith("block1") and meta["input_shape"] == [24, 32, 3]
    assert list(x_tr.shape[1:]) == meta["activation_shape"]
    # Oracle: the same seeded lower backbone on the plain val images, in file order.
    keras.utils.set_random_seed(42)
    backbone = build_backbone("efficientnet_lite0", "none", (24, 32, 3))
    lower, _ = split_backbone(backbone, 6)
    xs, ys = zip(
        *[
            (lower(x, training=False).numpy(), y.numpy())
            for x, y in data.dataset(records, "val", 64)
        ],
        strict=True,
    )
    np.testing.assert_array_equal(y_va, np.concatenate(ys))
    np.testing.assert_array_equal(x_va, np.concatenate(xs).astype(np.float16))
    assert np.abs(x_va.astype(np.float32)).max() > 0  # not vacuous
    # Copy 0 of train is plain, copy 1 augmented: same labels, different activations.
    np.testing.assert_array_equal(y_tr[:n_train], y_tr[n_train:])
    assert not np.array_equal(x_tr[:n_train], x_tr[n_train:])


def test_rerun_writes_identical_bytes(tiny, cache: Path, tmp_path: Path) -> None:
    records, prm = tiny
    assert features(records, prm, tmp_path / "again") == 0
    for f in sorted(cache.iterdir()):
        assert (tmp_path / "again" / f.name).read_bytes() == f.read_bytes(), f.name


def test_no_feature_cache_writes_only_the_meta(tiny, tmp_path: Path) -> None:
    records, prm = tiny
    params = yaml.safe_load(prm.read_text())
    params["train"]["feature_cache"] = False
    off = tmp_path / "params.yaml"
    off.write_text(yaml.safe_dump(params))
    out = tmp_path / "features"
    out.mkdir()
    (out / "x_train.npy").write_text("stale")  # replaced whole, not left behind
    assert features(records, off, out) == 0
    assert [p.name for p in out.iterdir()] == ["meta.json"]
    assert json.loads((out / "meta.json").read_text()) == {"feature_cache": False}


def train(records: Path, prm: Path, cache: Path | None, out: Path) -> int:
    argv = [
        "train",
        "--params",
        str(prm),
        "--tfrecords",
        str(records),
        "--pretrained",
        "unused.weights.h5",
        "--model",
        str(out / "model.keras"),
        "--train-params",
        str(out / "train_params.json"),
        "--live",
        str(out / "live"),
    ]
    return main(argv + (["--features", str(cache)] if cache is not None else []))


def test_train_trains_from_the_cache(tiny, cache: Path, tmp_path: Path) -> None:
    records, prm = tiny
    assert train(records, prm, cache, tmp_path) == 0
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    n_train = json.loads((cache / "meta.json").read_text())["rows"]["train"] // VARIANTS
    assert summary["train_images"] == n_train and summary["best_epoch"] >= 0
    assert (tmp_path / "model.keras").stat().st_size > 0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"train": {"unfreeze_blocks": 2}}, "cut_layer"),
        ({"train": {"cache_variants": 3}}, "variants"),
        ({"base": {"seed": 7}}, "lower_weights_sha256"),  # another random init of the backbone
    ],
)
def test_train_refuses_a_cache_made_for_other_settings(
    tiny, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture, change: dict, named: str
) -> None:
    records, prm = tiny
    params = yaml.safe_load(prm.read_text())
    for section, values in change.items():
        params.setdefault(section, {}).update(values)
    other = tmp_path / "params.yaml"
    other.write_text(yaml.safe_dump(params))
    capsys.readouterr()
    assert train(records, other, cache, tmp_path) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and "rerun `dermai features`" in err
    assert not (tmp_path / "model.keras").exists()


def test_train_without_features_folder_says_so(
    tiny, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    records, prm = tiny
    assert train(records, prm, None, tmp_path) == 1
    assert "--features" in capsys.readouterr().err
    assert train(records, prm, tmp_path / "missing", tmp_path) == 1
    assert "run `dermai features`" in capsys.readouterr().err


def test_another_train_seed_reuses_the_cache(tiny, cache: Path, tmp_path: Path) -> None:
    # train.seed moves only the head and the training; the backbone (random weights here) is
    # still built under base.seed, so the cache made for base.seed is accepted.
    records, prm = tiny
    params = yaml.safe_load(prm.read_text())
    params.setdefault("train", {})["seed"] = 7
    other = tmp_path / "params.yaml"
    other.write_text(yaml.safe_dump(params))
    assert train(records, other, cache, tmp_path) == 0
    assert (tmp_path / "model.keras").stat().st_size > 0


@pytest.mark.slow  # about 4 min on the shared 2 cores (two backbone builds, train, conversion)
def test_lite2_backbone_caches_trains_and_exports(tiny, tmp_path: Path) -> None:
    """Another backbone changes nothing downstream: the cache, train and the float LiteRT export
    (with Keras parity) run as for Lite0, and the cache records which backbone made it."""
    from deploy import H, W, tiny_tflite
    from dermai.runtime.inference import logits_model
    from dermai.runtime.tflite import load_tflite

    records, prm = tiny
    params = yaml.safe_load(prm.read_text())
    params["model"]["backbone"] = "efficientnet_lite2"
    lite2 = tmp_path / "params.yaml"
    lite2.write_text(yaml.safe_dump(params))
    cache = tmp_path / "features"
    assert features(records, lite2, cache) == 0
    assert json.loads((cache / "meta.json").read_text())["backbone"] == "efficientnet_lite2"
    # A Lite0 train refuses the Lite2 cache, the Lite2 train takes it.
    assert train(records, prm, cache, tmp_path) == 1
    assert train(records, lite2, cache, tmp_path) == 0

    import keras

    model = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    assert any(layer.name == "block6e_dwconv" for layer in model.get_layer("upper").layers)
    fn, _, h, w = load_tflite(tiny_tflite(tmp_path / "model.keras", tmp_path)["float32"])
    x = np.random.default_rng(0).uniform(0, 255, (4, H, W, 3)).astype(np.float32)
    ref = logits_model(model).predict(x, verbose=0)
    assert (h, w) == (H, W)
    np.testing.assert_allclose(fn(x), ref, atol=1e-4 * max(float(np.abs(ref).max()), 1.0))
