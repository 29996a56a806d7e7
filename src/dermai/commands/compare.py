"""Is B really better than A? Paired comparison of two evaluated models on the same test images.

A and B are each a DVC experiment name, a Git revision (branch, tag, commit) or a predictions
CSV (`image_id`, `label`, `p_<class>` columns, as `dermai evaluate` writes). For an experiment
or revision the CSV is read through `dvc.api.open(..., rev=...)`, from the DVC cache or a remote.
Prints metric(B) - metric(A) for accuracy, balanced accuracy and macro AUC (and, with
`--recall CLASS`, that class's recall) with paired-bootstrap 95% intervals (same resampled images
for both), McNemar's test on top-1 correctness, and a plain verdict. Research prototype, not a
diagnostic tool.
"""

from __future__ import annotations

import argparse
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermai import DISCLAIMER
from dermai import params as params_mod
from dermai.errors import DermaiError

log = logging.getLogger(__name__)

# Written by `dermai evaluate` into its --out folder (dvc.yaml: reports/evaluate).
DEFAULT_PREDICTIONS = "reports/evaluate/predictions_test.csv"
PROBA_PREFIX = "p_"
GROUP = "leakage_group"  # in `dermai cv`'s predictions.csv: the bootstrap resamples groups
LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_auc": "macro AUC",
}
ALPHA = 0.05


@dataclass(frozen=True)
class Predictions:
    name: str  # what the user gave, for messages
    ids: list[str]
    labels: list[str]
    classes: list[str]
    proba: np.ndarray
    groups: list[str] | None = None  # leakage groups (CV predictions): resampled whole


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="baseline: experiment name, Git revision or predictions CSV")
    p.add_argument("b", help="candidate: experiment name, Git revision or predictions CSV")
    p.add_argument(
        "--path",
        default=DEFAULT_PREDICTIONS,
        help=f"predictions file inside an experiment/revision (default {DEFAULT_PREDICTIONS})",
    )
    add_resampling_arguments(p)
    p.add_argument(
        "--recall",
        action="append",
        default=[],
        metavar="CLASS",
        help="also compare this class's recall (repeatable), e.g. --recall mel",
    )


def add_resampling_arguments(p: argparse.ArgumentParser) -> None:
    """--repo, --params, --bootstrap and --seed: shared with `dermai operating-point`."""
    p.add_argument("--repo", default=".", help="DVC repository for experiments/revisions")
    p.add_argument(
        "--params",
        default="params.yaml",
        help="params file for the defaults of --bootstrap (evaluate) and --seed (base)",
    )
    p.add_argument(
        "--bootstrap", type=int, default=None, help="paired resamples (default: evaluate.bootstrap)"
    )
    p.add_argument("--seed", type=int, default=None, help="resampling seed (default: base.seed)")


def resampling(args: argparse.Namespace) -> tuple[int, int]:
    """(resamples, seed): the options, else the params file's, else params.py's defaults."""
    n_resamples, seed = args.bootstrap, args.seed
    if n_resamples is None or seed is None:
        prm = params_mod.load_or_defaults(args.params)
        n_resamples = prm.evaluate.bootstrap if n_resamples is None else n_resamples
        seed = prm.base.seed if seed is None else seed
    if n_resamples < 1:
        raise DermaiError(f"--bootstrap must be at least 1, got {n_resamples}")
    return n_resamples, seed


def _parse(name: str, text: str) -> Predictions:
    import pandas as pd

    try:
        df = pd.read_csv(io.StringIO(text), dtype={"image_id": str, "label": str})
    except (ValueError, pd.errors.ParserError) as exc:
        raise DermaiError(f"{name}: not a predictions CSV ({exc})") from None
    classes = [c[len(PROBA_PREFIX) :] for c in df.columns if c.startswith(PROBA_PREFIX)]
    missing = [c for c in ("image_id", "label") if c not in df.columns]
    if missing or not classes:
        raise DermaiError(
            f"{name}: not a predictions CSV (needs image_id, label and "
            f"{PROBA_PREFIX}<class> columns; missing {missing or 'p_*'})"
        )
    if df.empty:
        raise DermaiError(f"{name}: the predictions CSV has no rows")
    dup = df["image_id"][df["image_id"].duplicated()]
    if len(dup):
        raise DermaiError(f"{name}: image_id {dup.iloc[0]!r} appears more than once")
    unknown = sorted(set(df["label"]) - set(classes))
    if unknown:
        raise DermaiError(f"{name}: labels {unknown} have no {PROBA_PREFIX}<class> column")
    proba = df[[PROBA_PREFIX + c for c in classes]].to_numpy(dtype=np.float64)
    if not np.isfinite(proba).all():
        raise DermaiError(f"{name}: probabilities must be finite numbers")
    groups = df[GROUP].astype(str).tolist() if GROUP in df.columns else None
    return Predictions(name, df["image_id"].tolist(), df["label"].tolist(), classes, proba, groups)


def load(spec: str, path: str, repo: str) -> Predictions:
    """A predictions CSV given directly, or `path` at experiment/revision `spec`."""
    local = Path(spec)
    if local.is_file():
        return _parse(spec, local.read_text(encoding="utf-8"))
    if spec.endswith(".csv"):
        raise DermaiError(f"predictions file not found: {spec}")
    import dvc.api
    from dvc.exceptions import DvcException, PathMissingError
    from dvc.scm import RevError
    from dvc_data.index import DataIndexError

    try:
        with dvc.api.open(path, repo=repo, rev=spec, encoding="utf-8") as fh:
            text = fh.read()
    except RevError:
        raise DermaiError(
            f"{spec!r} is neither a predictions file nor a known experiment or "
            f"Git revision in {repo}"
        ) from None
    except (PathMissingError, FileNotFoundError):
        raise DermaiError(
            f"{spec}: no {path} at that experiment/revision (did evaluate run there?)"
        ) from None
    except DataIndexError:  # dvc.lock names outputs that no cache or remote here holds
        raise DermaiError(
            f"{spec}: {path} is not in the DVC cache (that dvc.lock was made on another "
            "machine, or never pushed): after `make run`, commit this machine's outputs as "
            "the baseline (git add -A && git commit -m baseline), or `dvc pull` them"
        ) from None
    except DvcException as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise DermaiError(f"{spec}: cannot read {path}: {first}") from None
    return _parse(f"{spec}:{path}", text)


def align(a: Predictions, b: Predictions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and both probability matrices in A's image order; refuses different image sets,
    classes or labels (a paired comparison needs the same test images)."""
    if a.classes != b.classes:
        raise DermaiError(
            f"{a.name} and {b.name} have different classes: {a.classes} vs {b.classes}"
        )
    sa, sb = set(a.ids), set(b.ids)
    if sa != sb:
        only_a, only_b = sorted(sa - sb), sorted(sb - sa)
        raise DermaiError(
            f"{a.name} and {b.name} cover different images ({len(only_a)} only in A, e.g. "
            f"{only_a[:1]}; {len(only_b)} only in B, e.g. {only_b[:1]}): a paired comparison "
            "needs the same test set"
        )
    pos = {i: k for k, i in enumerate(b.ids)}
    order = np.array([pos[i] for i in a.ids])
    labels_b = [b.labels[k] for k in order]
    bad = [i for i, la, lb in zip(a.ids, a.labels, labels_b, strict=True) if la != lb]
    if bad:
        raise DermaiError(
            f"{a.name} and {b.name} disagree on the label of {len(bad)} images (e.g. {bad[0]!r})"
        )
    index = {c: k for k, c in enumerate(a.classes)}
    y = np.array([index[v] for v in a.labels], dtype=np.int64)
    return y, a.proba, b.proba[order]


def _fmt(v: float, signed: bool = False) -> str:
    if not np.isfinite(v):
        return "n/a"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def report(
    a: Predictions, b: Predictions, n_resamples: int, seed: int, recall: Sequence[str] = ()
) -> str:
    """The comparison as printable text; `recall` adds each named class's recall (a target such
    as melanoma recall can move while the headline numbers do not)."""
    from dermai.core.paired import (
        class_recall,
        mcnemar,
        paired_bootstrap,
        paired_bootstrap_headline,
    )

    unknown = [c for c in recall if c not in a.classes]
    if unknown:
        raise DermaiError(
            f"--recall {unknown[0]}: not a class of {a.name} ({', '.join(a.classes)})"
        )
    y, pa, pb = align(a, b)
    groups = a.groups  # out-of-fold predictions: whole patients/lesions are resampled
    cis = paired_bootstrap_headline(y, pa, pb, n_resamples=n_resamples, seed=seed, groups=groups)
    ks = {f"{c} recall": a.classes.index(c) for c in dict.fromkeys(recall)}
    metrics = {name: class_recall(k) for name, k in ks.items()}
    cis.update(
        paired_bootstrap(metrics, y, pa, pb, n_resamples=n_resamples, seed=seed, groups=groups)
    )
    mc = mcnemar(pa.argmax(1) == y, pb.argmax(1) == y)
    lines = [
        f"dermai compare: B - A on the same {len(y)} test images",
        f"  A = {a.name}",
        f"  B = {b.name}",
        "",
        f"{'metric':<18} {'A':>7} {'B':>7} {'B - A':>8}   95% CI (paired, {n_resamples} resamples)",
    ]
    beyond = []
    for k, ci in cis.items():
        if ci.exceeds_noise:
            verdict = "B higher, beyond noise" if ci.low > 0 else "B lower, beyond noise"
            beyond.append(f"{LABELS.get(k, k)} {'higher' if ci.low > 0 else 'lower'}")
        elif ci.n_resamples:
            verdict = "within noise (CI contains 0)"
        else:
            verdict = "undefined"
        lines.append(
            f"{LABELS.get(k, k):<18} {_fmt(ci.a):>7} {_fmt(ci.b):>7} "
            f"{_fmt(ci.diff, True):>8}   [{_fmt(ci.low, True)}, {_fmt(ci.high, True)}]"
            f"  {verdict}"
        )
    test = "exact binomial" if mc.method == "exact" else "chi-square, continuity-corrected"
    lines += [
        "",
        f"McNemar on top-1 ({test}): only A right on {mc.a_only}, only B right on "
        f"{mc.b_only} images; p = {mc.p_value:.4g}"
        + (" < 0.05" if mc.p_value < ALPHA else " (not significant at 0.05)"),
    ]
    for name, c in ks.items():
        mine = y == c
        found_a, found_b = pa[mine].argmax(1) == c, pb[mine].argmax(1) == c
        lines.append(
            f"{name}: of {int(mine.sum())} images labelled {a.classes[c]}, only A finds "
            f"{int(np.sum(found_a & ~found_b))}, only B finds {int(np.sum(found_b & ~found_a))}"
        )
    if beyond:
        lines.append(
            f"Verdict: the difference exceeds the noise ({', '.join(beyond)}; 95% CI excludes 0)."
        )
    else:
        lines.append(
            "Verdict: no difference beyond the noise: every 95% CI contains 0"
            + (
                ", though McNemar alone rejects equal top-1 accuracy."
                if mc.p_value < ALPHA
                else " and McNemar does not reject."
            )
        )
    lines.append(
        "These intervals cover test-image sampling only, not run-to-run training "
        "variation (seeds, machines)."
    )
    lines.append(DISCLAIMER)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    n_resamples, seed = resampling(args)
    a = load(args.a, args.path, args.repo)
    b = load(args.b, args.path, args.repo)
    log.info("comparing %s (A) with %s (B), %d paired resamples", a.name, b.name, n_resamples)
    print(report(a, b, n_resamples, seed, args.recall))
