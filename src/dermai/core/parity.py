"""Parity of exported models with the model they were exported from: top-1 agreement, accuracy,
balanced accuracy and the largest logit difference on the same images, and the export report's
goals. Pure: logits in, numbers out (`dermai export` runs every model through its bundle).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import numpy as np

from dermai.core import metrics

# The export's goals; reported as booleans in the metrics, warned about, never fatal (a tiny
# sample test split makes a single disagreement cost several points).
GOALS = {"float32_agreement": 0.99, "int8_agreement": 0.97, "int8_size_ratio": 1 / 3}


class Parity(TypedDict):
    """One exported model against the reference model on the same images."""

    agreement: float
    accuracy: float
    balanced_accuracy: float
    max_abs_logit_diff: float


class KindReport(Parity):
    """The metrics entry of one exported kind (float32, int8)."""

    bytes: int


def parity(reference_logits: np.ndarray, logits: np.ndarray, y: np.ndarray) -> Parity:
    n = reference_logits.shape[1]
    ref, pred = reference_logits.argmax(1), logits.argmax(1)
    return {
        "agreement": float(np.mean(ref == pred)),
        "accuracy": metrics.accuracy(y, pred),
        "balanced_accuracy": metrics.balanced_accuracy(y, pred, n),
        # to 1e-4: below that, float32 logits differ between CPUs (XNNPACK picks its kernels by
        # instruction set; 1.1e-5 where dvc.lock was made, 9.5e-6 on an AVX2 machine), and
        # export.json is a stage output that must not depend on the machine
        "max_abs_logit_diff": round(float(np.max(np.abs(reference_logits - logits))), 4),
    }


def guard_parity(reference_accepts: np.ndarray, accepts: np.ndarray) -> dict[str, float]:
    """How an exported model applies the OOD guard against the reference, image by image: the
    share with the same accept/refuse decision, and the share each accepts."""
    ref, got = np.asarray(reference_accepts, bool), np.asarray(accepts, bool)
    return {
        "decision_agreement": float(np.mean(ref == got)),
        "accepted": float(np.mean(got)),
        "accepted_keras": float(np.mean(ref)),
    }


def export_report(
    reference_logits: np.ndarray,
    exported_logits: Mapping[str, np.ndarray],
    sizes: Mapping[str, int],
    y: np.ndarray,
    *,
    representative_images: int,
    float_stages: int,
    temperature: float,
) -> dict[str, Any]:
    """The export metrics: the reference's own scores, each kind's parity and size, the int8 to
    float32 size ratio and which GOALS hold."""
    n = reference_logits.shape[1]
    ref_pred = reference_logits.argmax(1)
    report: dict[str, Any] = {
        "test_images": len(y),
        "representative_images": representative_images,
        "float_stages": float_stages,
        "temperature": temperature,
        "keras": {
            "accuracy": metrics.accuracy(y, ref_pred),
            "balanced_accuracy": metrics.balanced_accuracy(y, ref_pred, n),
        },
    }
    kinds: dict[str, KindReport] = {}
    for kind, logits in exported_logits.items():
        report[kind] = kinds[kind] = {**parity(reference_logits, logits, y), "bytes": sizes[kind]}
    f, q = kinds["float32"], kinds["int8"]
    size_ratio = q["bytes"] / f["bytes"]
    # Latency is a timing, not a stage output: stage outputs are byte-identical run to run, so it
    # is measured by `python bench/bench_tflite.py` (float32 vs int8, 1 and 2 threads).
    report["int8_vs_float32"] = {"size_ratio": size_ratio}
    report["goals_met"] = {
        "float32_agreement": f["agreement"] >= GOALS["float32_agreement"],
        "int8_agreement": q["agreement"] >= GOALS["int8_agreement"],
        "int8_size_ratio": size_ratio <= GOALS["int8_size_ratio"],
    }
    return report
