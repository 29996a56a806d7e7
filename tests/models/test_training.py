"""The training loop on a tiny classifier fed cached activations: class weights in the loss,
the kept epoch's weights and metrics, zero-epoch runs, run-to-run identity, the epoch order
(shuffle, oversampling) and the ensemble; the GPU path's image rows in the same loop."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dermai.core.imbalance import class_weights  # noqa: E402
from dermai.models import tracking, training  # noqa: E402
from dermai.models.classifier import build_head  # noqa: E402
from dermai.models.features import Plan  # noqa: E402
from dermai.models.rows import ActivationRows, Epoch, array_batches  # noqa: E402
from dermai.params import TrainParams  # noqa: E402

N_CLASSES = 3
CUT = (4, 4, 6)  # activation shape at the cut


class FakeLive:
    """The part of dvclive.Live that the tracker uses."""

    def __init__(self) -> None:
        self.summary: dict[str, Any] = {}
        self.logged: list[tuple[str, float]] = []

    def log_metric(self, name: str, value: float, plot: bool = True) -> None:
        self.logged.append((name, value))

    def next_step(self) -> None:
        pass

    def log_plot(self, name: str, rows: Any, **kw: Any) -> None:
        pass


class Recorder(tracking.Tracker):
    """A tracker that also snapshots the models' weights at the end of every epoch."""

    def __init__(self, live: Any, models: list[Any]) -> None:
        super().__init__(live, N_CLASSES)
        self.models = models
        self.snapshots: list[list[np.ndarray]] = []
        self.scores: list[float] = []

    def end_epoch(self, val_proba, y_val, logs, phase, weights_of) -> None:
        super().end_epoch(val_proba, y_val, logs, phase, weights_of)
        self.snapshots.append([w.copy() for m in self.models for w in m.get_weights()])
        self.scores.append(_bal(y_val, val_proba))


def _bal(y: np.ndarray, proba: np.ndarray) -> float:
    from dermai.core import metrics

    return metrics.summary(y, proba)["balanced_accuracy"]


def _data(seed: int = 0, n: int = 48, n_val: int = 24):
    """Activations whose class shows in one channel, plus noise, and imbalanced labels."""
    rng = np.random.default_rng(seed)

    def make(m: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.choice(N_CLASSES, size=m, p=[0.6, 0.3, 0.1])
        x = rng.normal(0, 1, (m, *CUT))
        x[..., 0] += 0.8 * y[:, None, None]
        return x.astype(np.float16), y.astype(np.int64)

    return make(n), make(n_val)


def _models(seed: int = 0, with_upper: bool = True):
    from keras import layers

    keras.utils.set_random_seed(seed)
    lower = keras.Sequential([keras.Input(CUT)], name="lower")  # stands for the frozen part
    if not with_upper:
        pool = keras.Sequential([keras.Input(CUT), layers.GlobalAveragePooling2D()], name="lower")
        return pool, None, build_head(CUT[-1], N_CLASSES, 0.2, 0.0)
    t = inp = keras.Input(CUT)
    t = layers.Conv2D(8, 3, padding="same", name="block7a_conv")(t)
    t = layers.BatchNormalization(name="block7a_bn")(t)
    t = layers.Activation("relu")(t)
    upper = keras.Model(inp, layers.GlobalAveragePooling2D()(t), name="upper")
    return lower, upper, build_head(8, N_CLASSES, 0.2, 1e-4)


def _cfg(**kw: Any) -> TrainParams:
    base = dict(
        batch_size=16,
        head_epochs=3,
        finetune_epochs=3,
        lr=3e-2,
        finetune_lr=1e-2,
        imbalance="class_weight",
        class_weight_power=1.0,
    )
    return TrainParams(**{**base, **kw})


def _plan(lower: Any, upper: Any, seed: int = 0) -> Plan:
    """A plan around the stand-in parts; its backbone's output (the top part's) sizes the head."""
    backbone = lower if upper is None else upper
    return Plan(backbone, lower, upper, None, CUT, ["a", "b", "c"], seed, {}, "none")


def _rows(seed: int) -> training.TrainingData:
    train, val = _data(seed)
    return training.TrainingData(ActivationRows(*train), ActivationRows(*val), len(train[1]))


def _fit(
    cfg: TrainParams, seed: int = 0, live: Any = None, with_upper: bool = True
) -> tuple[Recorder, Any, Any]:
    training.setup_tf(cfg, seed)
    lower, upper, head = _models(seed, with_upper)
    parts = [m for m in (upper, head) if m is not None]
    tracker = Recorder(live or FakeLive(), parts)
    data = _rows(seed)
    if not with_upper:  # the cached rows are the pooled output of the whole (frozen) backbone
        data = training.TrainingData(
            data.train.through(lower), data.val.through(lower), data.images
        )
    training.fit_member(_plan(lower, upper, seed), upper, head, data, cfg, seed, tracker)
    return tracker, upper, head


def _weights(*models: Any) -> list[np.ndarray]:
    return [w for m in models if m is not None for w in m.get_weights()]


@pytest.mark.parametrize("imbalance", ["class_weight", "none", "logit_adjust"])
def test_epoch_loss_matches_hand_computed_weighted_cross_entropy(imbalance: str) -> None:
    # One batch holding every sample and a zero learning rate: the epoch's reported loss is the
    # loss of the initial weights, which we can compute by hand.
    (x, y), (xv, yv) = _data(1)
    feats = x.astype(np.float32).mean(axis=(1, 2))
    keras.utils.set_random_seed(1)
    head = build_head(CUT[-1], N_CLASSES, 0.0, 0.0)
    kernel, bias = head.get_layer("logits").get_weights()
    cfg = _cfg(imbalance=imbalance, batch_size=len(y), class_weight_power=1.0, logit_adjust_tau=0.7)
    tracker = tracking.Tracker(FakeLive(), N_CLASSES)
    training.train_epochs(
        head,
        ActivationRows(feats, y),
        ActivationRows(xv.astype(np.float32).mean(axis=(1, 2)), yv),
        epochs=1,
        lr=0.0,
        cfg=cfg,
        n_classes=N_CLASSES,
        seed=0,
        tracker=tracker,
        phase=1,
    )
    logits = feats.astype(np.float64) @ kernel + bias
    if imbalance == "logit_adjust":  # Menon et al.: tau * log(training prior) inside the loss
        prior = np.bincount(y, minlength=N_CLASSES) / len(y)
        logits = logits + 0.7 * np.log(prior)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    ce = -logp[np.arange(len(y)), y]
    w = class_weights(y, N_CLASSES, 1.0)[y] if imbalance == "class_weight" else np.ones(len(y))
    expected = float((w * ce).sum() / len(y))
    loss = dict(tracker.live.logged)["train/loss"]
    assert loss == pytest.approx(expected, rel=1e-4)
    if imbalance != "none":  # the weights or the prior shift really change it
        plain = feats.astype(np.float64) @ kernel + bias
        plain_ce = -(plain - np.log(np.exp(plain).sum(axis=1, keepdims=True)))[np.arange(len(y)), y]
        assert abs(expected - plain_ce.mean()) > 1e-3


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recorder, Any, Any, Path]:
    """One two-phase run logged to a real dvclive folder (shared: each run costs seconds)."""
    from dvclive import Live

    folder = tmp_path_factory.mktemp("live") / "live"
    live = Live(str(folder), dvcyaml=False, save_dvc_exp=False, report=None)
    tracker, upper, head = _fit(_cfg(), live=live)
    tracker.summarise(48)
    live.end()
    return tracker, upper, head, folder


def test_kept_weights_are_the_best_epochs(run) -> None:
    tracker, upper, head, _ = run
    best = int(np.argmax(tracker.scores))  # first maximum, as the tracker keeps it
    assert tracker.best_epoch == best
    assert best != len(tracker.scores) - 1, "test needs a run whose last epoch is not the best"
    final = _weights(upper, head)
    assert all(np.array_equal(a, b) for a, b in zip(final, tracker.snapshots[best], strict=True))


def test_head_only_run_keeps_the_best_head() -> None:
    tracker, _, head = _fit(_cfg(head_epochs=4), with_upper=False)
    best = int(np.argmax(tracker.scores))
    assert tracker.best_epoch == best
    assert all(
        np.array_equal(a, b)
        for a, b in zip(head.get_weights(), tracker.snapshots[best], strict=True)
    )


def test_metrics_file_reports_the_kept_epoch(run) -> None:
    tracker, _, _, folder = run
    out = json.loads((folder / "metrics.json").read_text())
    best = tracker.best_epoch
    assert best != len(tracker.scores) - 1
    assert out["val"]["balanced_accuracy"] == pytest.approx(tracker.scores[best])
    assert out["val"]["balanced_accuracy"] != pytest.approx(tracker.scores[-1])
    assert out["val"]["accuracy"] == tracker.best_metrics["accuracy"]
    assert out["best_epoch"] == best and out["train_images"] == 48


@pytest.mark.parametrize("with_upper", [True, False])
def test_zero_epochs_do_not_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_upper: bool
) -> None:
    from dvclive import Live

    monkeypatch.chdir(tmp_path)
    live = Live("live", dvcyaml=False, save_dvc_exp=False, report=None)
    tracker, _, _ = _fit(_cfg(head_epochs=0, finetune_epochs=0), live=live, with_upper=with_upper)
    tracker.summarise(48)
    live.end()
    out = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert out["best_epoch"] == -1 and tracker.best_metrics is None
    assert "val" not in out


def test_two_runs_give_identical_weights(run) -> None:
    _, upper, head, _ = run
    a = _weights(upper, head)
    b = _weights(*_fit(_cfg())[1:])
    assert len(a) == len(b) > 0
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_epoch_log_says_k_of_n_elapsed_and_time_left(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([0.0, 100.0, 110.0, 120.0, 150.0])  # start, phase 1 begins, 2 epochs, 1 more
    monkeypatch.setattr(tracking.time, "monotonic", lambda: next(clock))
    tracker = tracking.Tracker(FakeLive(), 2, total_epochs=3)
    tracker.begin_phase(1)
    y = np.array([0, 1, 0, 1])
    proba = np.eye(2)[y] * 0.8 + 0.1
    weights = build_head(4, 2, 0.0, 0.0)
    with caplog.at_level("INFO", logger=tracking.log.name):
        tracker.end_epoch(proba, y, {"loss": 1.0}, 1, weights)
        tracker.end_epoch(proba, y, {"loss": 1.0}, 1, weights)
        tracker.end_epoch(proba, y, {"loss": 1.0}, 2, weights)
    lines = [r.getMessage() for r in caplog.records]
    # epoch 1 took 10 s after the phase began: 2 epochs left at 10 s each
    assert "epoch 1/3 (phase 1)" in lines[0] and "elapsed 0:01:50, left ~0:00:20" in lines[0]
    assert "epoch 2/3" in lines[1] and "elapsed 0:02:00, left ~0:00:10" in lines[1]
    # phase 2 is timed from the end of phase 1's last epoch; nothing is left after it
    assert "epoch 3/3 (phase 2)" in lines[2] and "elapsed 0:02:30, left ~0:00:00" in lines[2]


def test_two_processes_train_byte_identical_archives(tmp_path: Path) -> None:
    """Same seed and data in two fresh processes: the saved .keras files are the same bytes
    (weights deterministic, and no process-specific ids or dates in the archive)."""
    import os
    import subprocess
    import sys

    here = Path(__file__).resolve().parent
    code = (
        "import sys; sys.path[:0] = [sys.argv[3], sys.argv[4]]\n"
        "import test_training as t\nfrom dermai.models.archive import save_keras\n"
        "_, upper, head = t._fit(t._cfg(head_epochs=2, finetune_epochs=1))\n"
        "save_keras(head, sys.argv[1]); save_keras(upper, sys.argv[2])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(here.parents[1] / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for run_ in ("a", "b"):
        subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                str(tmp_path / f"{run_}_head.keras"),
                str(tmp_path / f"{run_}_upper.keras"),
                str(here),
                str(here.parent),
            ],
            check=True,
            env=env,
            timeout=600,
        )
    for part in ("head", "upper"):
        assert (tmp_path / f"a_{part}.keras").read_bytes() == (
            tmp_path / f"b_{part}.keras"
        ).read_bytes(), part


def test_curves_file_has_every_epoch_with_its_phase_and_the_kept_epoch(run) -> None:
    tracker, _, _, folder = run
    rows = json.loads((folder / "plots" / "custom" / "training.json").read_text())
    cfg = _cfg()
    steps = sorted({r["step"] for r in rows})
    assert steps == list(range(len(tracker.scores)))
    assert {r["step"] for r in rows if r["kept"]} == {tracker.best_epoch}
    for r in rows:
        assert r["phase"] == ("head" if r["step"] < cfg.head_epochs else "fine-tune")
    val = {
        r["step"]: r["value"]
        for r in rows
        if (r["split"], r["metric"]) == ("validation", "balanced accuracy")
    }
    assert val == {i: pytest.approx(s, abs=1e-5) for i, s in enumerate(tracker.scores)}
    assert {r["split"] for r in rows} == {"train", "validation"}


def test_long_epochs_report_progress_inside_the_epoch(caplog: pytest.LogCaptureFixture) -> None:
    # every_s=0: a line after every batch, so the count and the last batch are checkable.
    (x, y), _ = _data(2)
    feats = x.astype(np.float32).mean(axis=(1, 2))
    head = build_head(CUT[-1], N_CLASSES, 0.0, 0.0)
    head.compile(optimizer="sgd", loss="categorical_crossentropy")
    batches = array_batches(
        feats, np.eye(N_CLASSES, dtype=np.float32)[y], np.arange(len(y)), 8, None
    )
    with caplog.at_level("INFO", logger=tracking.log.name):
        head.fit(
            batches,
            epochs=1,
            verbose=0,
            callbacks=[
                tracking.BatchProgress("epoch 1/1", 8, every_s=0, first_batch_s=float("inf"))
            ],
        )
    lines = [r.getMessage() for r in caplog.records if "samples/s" in r.getMessage()]
    n = len(batches)
    assert len(lines) == n and n > 1
    assert lines[0].startswith(f"epoch 1/1: batch 1/{n}, ")
    assert lines[-1].startswith(f"epoch 1/1: batch {n}/{n}, ") and "~0:00:00 left" in lines[-1]

    # A slow first batch (the graph being built) gets its own line at once, and the rates
    # after it leave the build out.
    caplog.clear()
    with caplog.at_level("INFO", logger=tracking.log.name):
        head.fit(
            batches,
            epochs=1,
            verbose=0,
            callbacks=[tracking.BatchProgress("epoch 1/1", 8, every_s=0, first_batch_s=0)],
        )
    msgs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1/1")]
    assert msgs[0].startswith("epoch 1/1: first batch after ") and "graph built" in msgs[0]
    assert len(msgs) == n and msgs[1].startswith(f"epoch 1/1: batch 2/{n}, ")


# --------------------------------------------------------------------------- train.ensemble


def _single(cfg: TrainParams, base: int, seed: int) -> Any:
    """The single model the train stage makes with train.seed = `seed`: parts built under
    `base` (base.seed), then `fit` rebuilds the head under `seed` and trains both phases."""
    training.setup_tf(cfg, base)
    lower, upper, _ = _models(base)
    plan, data = _plan(lower, upper, base), _rows(base)
    model, history = training.fit(plan, data, cfg, seed, FakeLive(), dropout=0.2)
    assert history.seeds == [seed]
    return model


def _top_logits(upper: Any, head: Any, x: np.ndarray) -> np.ndarray:
    """Logits above the cut: upper, then the head without its softmax."""
    z = upper(x.astype(np.float32), training=False)
    z = head.get_layer("head_dropout")(z, training=False)
    return np.asarray(head.get_layer("logits")(z))


def test_ensemble_members_are_the_single_models_of_their_seeds_and_their_logits_averaged() -> None:
    """Oracle: two single models trained apart (train.seed 5 and 6) against one K=2 ensemble
    (train.seed 5): member k is the single model of seed 5 + k, and the one saved graph's
    logits are the mean of theirs."""
    from dermai.runtime.inference import logits_model

    cfg, base = _cfg(head_epochs=1, finetune_epochs=1), 0
    singles = [_single(cfg, base, s) for s in (5, 6)]
    _, (x_va, _) = _data(base)
    z_single = [_top_logits(m.get_layer("upper"), m.get_layer("head"), x_va) for m in singles]
    assert np.abs(z_single[0] - z_single[1]).max() > 0.1  # the members differ: not vacuous

    training.setup_tf(cfg, base)
    lower, upper, _ = _models(base)
    live = FakeLive()
    plan, data = _plan(lower, upper, base), _rows(base)
    model, history = training.fit(plan, data, replace(cfg, ensemble=2), 5, live, dropout=0.2)
    assert history.seeds == [5, 6] and [training.member_seed(5, k) for k in range(2)] == [5, 6]
    assert history.trackers[0].live is live and history.trackers[1].live is not live
    assert [layer.name for layer in model.layers] == ["image", "lower", "members", "head"]
    members = model.get_layer("members")
    for k, name in enumerate(("upper", "upper_1")):  # member k == the single model of seed 5 + k
        for a, b in zip(
            _weights(members.get_layer(name)), _weights(singles[k].get_layer("upper")), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    # only member 0 logs to dvclive: its curves are the single model's
    assert len(live.logged) == len(tracking.LOGGED) * 2 + 2
    assert live.summary["ensemble"]["members"] == 2

    z = np.asarray(logits_model(model)(x_va.astype(np.float32)))
    np.testing.assert_allclose(z, (z_single[0] + z_single[1]) / 2, rtol=1e-5, atol=1e-5)
    # what fit reports as the ensemble's val output: the model above the cut on cached rows
    proba = ActivationRows(x_va, np.zeros(len(x_va), np.int64)).predict(training.above_cut(model))
    np.testing.assert_allclose(proba, model.predict(x_va.astype(np.float32), verbose=0), atol=1e-6)
    ens = live.summary["ensemble"]["val_balanced_accuracy"]
    _, (_, y_va) = _data(base)
    assert ens == pytest.approx(_bal(y_va, proba))


def test_epoch_order_shuffles_or_oversamples_with_the_seeded_rng() -> None:
    y = np.array([0] * 30 + [1] * 6 + [2] * 4)
    plain = training.epoch_order(np.random.default_rng(3), y, _cfg(imbalance="none"), N_CLASSES)
    assert sorted(plain.tolist()) == list(range(len(y)))  # a permutation: every row once
    over = training.epoch_order(
        np.random.default_rng(3), y, _cfg(imbalance="oversample", oversample_power=1.0), N_CLASSES
    )
    assert len(over) == len(y)
    counts = np.bincount(y[over], minlength=N_CLASSES)
    assert counts[2] > 4 and counts[0] < 30  # power 1: about balanced, so the rare class grows
    again = training.epoch_order(
        np.random.default_rng(3), y, _cfg(imbalance="oversample", oversample_power=1.0), N_CLASSES
    )
    np.testing.assert_array_equal(over, again)


def test_image_rows_feed_the_same_loop_with_class_weights(tmp_path: Path) -> None:
    """The GPU path's rows (TFRecords' images, augmented as read) in the one epoch loop: each
    epoch's batches follow the drawn order and carry each row's class weight."""
    from deploy import tiny_tfrecords
    from dermai.models.rows import ImageRows

    records, _ = tiny_tfrecords(tmp_path)
    rows = ImageRows.read(records, "train", augment=True)
    n = len(rows.y)
    order = np.random.default_rng(0).permutation(n)
    onehot = np.eye(int(rows.y.max()) + 1, dtype=np.float32)[rows.y]
    w = np.linspace(0.5, 2.0, n).astype(np.float32)
    got = list(rows.batches(Epoch(order, onehot, w, 5, 1, 0)).as_numpy_iterator())
    assert sum(len(b[0]) for b in got) == n and got[0][0].shape[1:] == (rows.height, rows.width, 3)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), onehot[order])
    np.testing.assert_array_equal(np.concatenate([b[2] for b in got]), w[order])
    plain = ImageRows.read(records, "train")  # not augmented: the decoded images themselves
    same = next(plain.batches(Epoch(order, onehot, None, n, 1, 0)).as_numpy_iterator())
    assert len(same) == 2 and not np.allclose(same[0], np.concatenate([b[0] for b in got]))
    again = list(rows.batches(Epoch(order, onehot, w, 5, 1, 0)).as_numpy_iterator())
    np.testing.assert_array_equal(got[0][0], again[0][0])  # seeded: the same augmentation
    other = list(rows.batches(Epoch(order, onehot, w, 5, 1, 1)).as_numpy_iterator())
    assert not np.array_equal(got[0][0], other[0][0])  # the next epoch augments anew
