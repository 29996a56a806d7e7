"""Following a training run: per-epoch validation, dvclive logging, the kept (best) epoch's
weights, progress lines with the time left, and the ensemble's summary.

Kept apart from the loop (`dermai.models.training`) so the loop reads as data in, model out,
and a test can record or silence what a run logs (`QuietLive`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from dermai.core import metrics, plotdata

if TYPE_CHECKING:
    from dvclive import Live

log = logging.getLogger(__name__)

# The per-epoch values logged to dvclive (the summary reports those of the kept epoch).
LOGGED = ("train/loss", "train/accuracy", "val/accuracy", "val/balanced_accuracy", "val/macro_auc")


def _clock(seconds: float) -> str:
    """h:mm:ss, for progress lines."""
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Tracker:
    """Evaluates validation after every epoch, logs to dvclive, keeps the best weights.

    "Best" is the highest validation balanced accuracy (first epoch wins ties). With zero epochs
    nothing is kept: `best_epoch` stays -1 and `best_metrics` None.
    """

    def __init__(
        self, live: Live, n_classes: int, total_epochs: int | None = None, label: str = ""
    ) -> None:
        self.live = live
        self.label = label  # e.g. "member 2/3: ", prefixed to the epoch log lines
        self.total_epochs = total_epochs  # for "epoch k/N" and the time left in the log
        self.started = time.monotonic()
        self._last_end = self.started
        self.phase_started: tuple[int, float, int] | None = None  # (phase, time, first epoch)
        self.n_classes = n_classes
        self.best = -1.0
        self.best_weights: list[np.ndarray] | None = None
        self.best_epoch = -1
        self.best_metrics: dict[str, float] | None = None
        self.best_logged: dict[str, float] | None = None
        self.epoch = 0
        self.history: list[tuple[int, int, dict[str, float]]] = []  # for the curves chart

    def end_epoch(
        self,
        val_proba: np.ndarray,
        y_val: np.ndarray,
        logs: dict[str, float],
        phase: int,
        weights_of: keras.Model,
    ) -> None:
        m = metrics.summary(y_val, val_proba)
        logged = dict(
            zip(
                LOGGED,
                (
                    float(logs.get("loss", np.nan)),
                    float(logs.get("accuracy", np.nan)),
                    m["accuracy"],
                    m["balanced_accuracy"],
                    m["macro_auc"],
                ),
                strict=True,
            )
        )
        for name, value in logged.items():
            self.live.log_metric(name, value)
        self.live.log_metric("phase", phase, plot=False)
        self.history.append((self.epoch, phase, logged))
        log.info(
            "%sepoch %s (phase %d): loss %.4f val acc %.4f bal acc %.4f auc %.4f; %s",
            self.label,
            self.progress_label(),
            phase,
            logs.get("loss", np.nan),
            m["accuracy"],
            m["balanced_accuracy"],
            m["macro_auc"],
            self._timing(phase),
        )
        if m["balanced_accuracy"] > self.best:
            self.best = m["balanced_accuracy"]
            self.best_weights = weights_of.get_weights()
            self.best_epoch = self.epoch
            self.best_metrics = m
            self.best_logged = {**logged, "phase": phase}
        self.epoch += 1
        self.live.next_step()

    def begin_phase(self, phase: int) -> None:
        """Start the clock for the time-left estimate (after caching, before the first epoch)."""
        self.phase_started = (phase, time.monotonic(), self.epoch)

    def progress_label(self) -> str:
        done = self.epoch + 1
        return f"{done}/{self.total_epochs}" if self.total_epochs else str(done)

    def _timing(self, phase: int) -> str:
        """Elapsed and time left; left = this phase's mean epoch time x epochs remaining (phase
        2 epochs train more layers, so phase 1's pace would underestimate them)."""
        now = time.monotonic()
        if self.phase_started is None or self.phase_started[0] != phase:
            # the phase began at the end of the previous epoch (or at start-up)
            self.phase_started = (phase, self._last_end, self.epoch)
        self._last_end = now
        elapsed = now - self.started
        text = f"elapsed {_clock(elapsed)}"
        if self.total_epochs:
            _, t0, first = self.phase_started
            per_epoch = (now - t0) / (self.epoch - first + 1)
            text += f", left ~{_clock(per_epoch * max(self.total_epochs - self.epoch - 1, 0))}"
        return text

    def summarise(self, n_train: int) -> None:
        """Put the kept epoch's values (not the last epoch's) in dvclive's metrics.json."""
        summary = self.live.summary
        if self.best_logged is not None:
            for name, value in self.best_logged.items():
                section, _, key = name.rpartition("/")
                target = summary.setdefault(section, {}) if section else summary
                target[key] = value
        summary["best_epoch"] = self.best_epoch
        # Train and validation curves in one chart, with the phase and the kept epoch
        # (long format; drawn by .dvc/plots/dermai_training.json).
        self.live.log_plot(
            "training",
            plotdata.training_rows(self.history, self.best_epoch),
            x="step",
            y="value",
            template=None,
        )
        summary["train_images"] = n_train
        if self.best_metrics is not None:
            summary["best_val_balanced_accuracy"] = self.best
            summary["best_val_accuracy"] = self.best_metrics["accuracy"]
            summary["best_val_macro_auc"] = self.best_metrics["macro_auc"]
        else:
            log.warning(
                "no training epoch ran (train.head_epochs and finetune_epochs are 0): "
                "the saved model is untrained"
            )


class BatchProgress(keras.callbacks.Callback):
    """A progress line at most every `every_s` seconds inside an epoch: a phase-2 epoch over the
    cached HAM10000 copies takes 15-20 min on 2 cores, too long to run silently."""

    def __init__(
        self, label: str, batch_size: int, every_s: float = 60.0, first_batch_s: float = 10.0
    ) -> None:
        super().__init__()
        self.label, self.batch_size, self.every_s = label, batch_size, every_s
        self.first_batch_s = first_batch_s
        self.steps = self.first = 0
        self.t0 = self.last = time.monotonic()

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.steps = int(self.params.get("steps") or 0)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.t0 = self.last = time.monotonic()
        self.first = 0  # 1 once t0 was moved past a slow first batch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now = time.monotonic()
        if batch == 0 and now - self.t0 >= self.first_batch_s:  # slow: the graph was built
            log.info("%s: first batch after %s (graph built)", self.label, _clock(now - self.t0))
            self.t0 = self.last = now  # rates and estimates from here on exclude the build
            self.first = 1
            return
        if now - self.last < self.every_s:
            return
        self.last = now
        done = batch + 1
        timed = done - self.first  # batches since t0
        rate = timed * self.batch_size / max(now - self.t0, 1e-9)
        left = (self.steps - done) * self.batch_size / rate if self.steps else float("nan")
        log.info(
            "%s: batch %d/%s, %.0f samples/s, ~%s left in this epoch",
            self.label,
            done,
            self.steps or "?",
            rate,
            _clock(left) if left == left else "?",
        )


class QuietLive:
    """The part of dvclive.Live a Tracker uses, recording nothing: ensemble members after the
    first train without dvclive curves (the curves are member 0's, i.e. the single model's), and
    the cross-validation folds (their report is the cv stage's)."""

    def __init__(self) -> None:
        self.summary: dict[str, Any] = {}

    def log_metric(self, name: str, value: float, plot: bool = True) -> None:
        pass

    def log_plot(self, *args: Any, **kwargs: Any) -> None:
        pass

    def next_step(self) -> None:
        pass


def summarise_ensemble(
    live: Live, trackers: list[Tracker], seeds: list[int], y_val: np.ndarray, proba: np.ndarray
) -> dict[str, Any]:
    """The ensemble's validation metrics (its averaged output, `proba`) and each member's kept
    epoch, into dvclive's summary under `ensemble` (numbers only: `dvc exp show` reads them)."""
    m = metrics.summary(y_val, proba)
    doc: dict[str, Any] = {
        "members": len(trackers),
        "val_accuracy": m["accuracy"],
        "val_balanced_accuracy": m["balanced_accuracy"],
        "val_macro_auc": m["macro_auc"],
    }
    for k, (t, s) in enumerate(zip(trackers, seeds, strict=True)):
        doc[f"member_{k}"] = {
            "seed": s,
            "best_epoch": t.best_epoch,
            "val_balanced_accuracy": t.best,
        }
    live.summary["ensemble"] = doc
    log.info(
        "ensemble of %d: val acc %.4f bal acc %.4f auc %.4f (members' bal acc %s)",
        len(trackers),
        m["accuracy"],
        m["balanced_accuracy"],
        m["macro_auc"],
        ", ".join(f"{t.best:.4f}" for t in trackers),
    )
    return doc
