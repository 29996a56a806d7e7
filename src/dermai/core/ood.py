"""Out-of-distribution scores from a classifier's own outputs, and the rule that gates them.

A skin-lesion classifier gives a confident answer for a photo of a cat. These scores say how
much an input looks like the training data, higher = more in-distribution:

- `max_softmax`: the top class probability (Hendrycks & Gimpel 2017), the baseline;
- `energy`: T * logsumexp(logits / T) (Liu et al. 2020);
- Mahalanobis: minus the smallest squared distance to a class mean under the shared (tied)
  covariance of the training features (Lee et al. 2018). Features are first projected on their
  top principal components (a few dozen), which keeps the covariance well conditioned with few
  images per class and the saved guard small enough to travel as JSON. It sees nothing off
  those components, so an image unlike every training image can project near their centre;
- `ppca`: the log-likelihood under probabilistic PCA (Tipping & Bishop 1999; scikit-learn's
  `PCA.score_samples`) of the training images' features: a Gaussian that is full on the top
  principal components and isotropic (the mean discarded variance) on the rest, so what lies
  off the training subspace counts too. Fitted on the pooled activations of the FROZEN
  ImageNet trunk (`space` "trunk", the lower part below the cut that every model carries), it
  does not depend on how much the classifier learned (docs/deployment.md measures it).

The threshold keeps a chosen share of in-distribution validation images (`threshold_keeping`).
Pure numpy/scikit-learn: no TensorFlow, no files; `Guard.to_dict`/`from_dict` round-trip JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

METHODS = ("ppca", "mahalanobis", "energy", "max_softmax")
# trunk: pooled frozen-trunk activations; features: the penultimate (head input); logits
SPACES = ("trunk", "features", "logits")


def logsumexp(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy: large for inputs the network has a strong logit for."""
    return temperature * logsumexp(np.asarray(logits, dtype=np.float64) / temperature)


def max_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    return np.exp(z.max(axis=1) - logsumexp(z))


@dataclass
class Mahalanobis:
    """Tied-covariance class-conditional Gaussian on PCA-projected features."""

    center: np.ndarray  # D: mean of the training features
    components: np.ndarray  # k x D: principal axes
    means: np.ndarray  # C x k: class means in the projected space
    precision: np.ndarray  # k x k: inverse of the shared covariance (Ledoit-Wolf shrunk)

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, n_components: int = 32) -> Mahalanobis:
        from sklearn.covariance import LedoitWolf

        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels)
        if x.ndim != 2 or len(x) != len(y) or len(x) < 2:
            raise ValueError("need an N x D feature matrix (N >= 2) and N labels")
        center = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - center, full_matrices=False)
        k = max(1, min(n_components, vt.shape[0], len(x) - 1))
        comps = vt[:k]
        z = (x - center) @ comps.T
        classes = np.unique(y)
        means = np.stack([z[y == c].mean(axis=0) for c in classes])
        resid = z - means[np.searchsorted(classes, y)]
        cov = LedoitWolf(assume_centered=True).fit(resid).covariance_
        return cls(center, comps, means, np.linalg.pinv(cov, hermitian=True))

    def score(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.center) @ self.components.T
        d = z[:, None, :] - self.means[None, :, :]  # N x C x k
        dist = np.einsum("nck,kl,ncl->nc", d, self.precision, d)
        return -dist.min(axis=1)


def _f32(a: Any) -> np.ndarray:
    """float64 holding float32 values: what the saved (float32) JSON gives back, so the
    threshold is set with exactly the parameters every runtime reads."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


@dataclass
class Ppca:
    """Probabilistic PCA density of the training features (class-agnostic)."""

    mean: np.ndarray  # D
    components: np.ndarray  # k x D, orthonormal rows
    variances: np.ndarray  # k: variance along each component
    noise_variance: float  # the variance of every other direction

    @classmethod
    def fit(cls, features: np.ndarray, n_components: int = 16) -> Ppca:
        from sklearn.decomposition import PCA

        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) < 3:
            raise ValueError("need an N x D feature matrix with N >= 3")
        k = max(1, min(n_components, x.shape[1] - 1, len(x) - 2))
        p = PCA(n_components=k, svd_solver="full").fit(x)
        floor = 1e-12 * max(float(p.explained_variance_[0]), 1e-12)
        return cls(
            _f32(p.mean_),
            _f32(p.components_),
            _f32(np.maximum(p.explained_variance_, floor)),
            float(_f32(max(float(p.noise_variance_), floor))),
        )

    def score(self, features: np.ndarray) -> np.ndarray:
        """log N(x; mean, C) with C = W' diag(variances) W + noise (I - W' W): the same number
        as scikit-learn's `PCA.score_samples`, without a D x D matrix."""
        xc = np.asarray(features, dtype=np.float64) - self.mean
        z = xc @ self.components.T
        inside = (z * z / self.variances).sum(axis=1)
        # the residual off the components, not |xc|^2 - |z|^2: that difference cancels when the
        # residual is small, and the float32-rounded components make the error ~4% (hypothesis)
        r = xc - z @ self.components
        off = (r * r).sum(axis=1) / self.noise_variance
        d, k = self.mean.shape[0], self.variances.shape[0]
        logdet = np.log(self.variances).sum() + (d - k) * np.log(self.noise_variance)
        return -0.5 * (inside + off + logdet + d * np.log(2 * np.pi))

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean.astype(np.float32).tolist(),
            "components": self.components.astype(np.float32).tolist(),
            "variances": self.variances.astype(np.float32).tolist(),
            "noise_variance": float(np.float32(self.noise_variance)),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ppca:
        return cls(
            np.asarray(d["mean"], dtype=np.float64),
            np.asarray(d["components"], dtype=np.float64),
            np.asarray(d["variances"], dtype=np.float64),
            float(d["noise_variance"]),
        )


def scores(
    method: str,
    *,
    logits: np.ndarray | None = None,
    features: np.ndarray | None = None,
    model: Mahalanobis | None = None,
    temperature: float = 1.0,
    density: Ppca | None = None,
) -> np.ndarray:
    """Scores for one method; higher = more like the training data."""
    if method == "energy":
        assert logits is not None
        return energy(logits, temperature)
    if method == "max_softmax":
        assert logits is not None
        return max_softmax(logits, temperature)
    if method == "mahalanobis":
        assert model is not None and features is not None
        return model.score(features)
    if method == "ppca":
        assert density is not None and features is not None
        return density.score(features)
    raise ValueError(f"unknown OOD method {method!r}: use one of {METHODS}")


def threshold_keeping(in_scores: np.ndarray, keep: float) -> float:
    """The largest threshold t with mean(in_scores >= t) >= keep (accept when score >= t)."""
    s = np.sort(np.asarray(in_scores, dtype=np.float64))
    if not len(s) or not 0 < keep <= 1:
        raise ValueError("need in-distribution scores and 0 < keep <= 1")
    n_reject = int(np.floor(len(s) * (1 - keep) + 1e-9))
    return float(s[n_reject])


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """P(score of a random in-distribution image > that of a random OOD one), ties half."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(in_scores)), np.zeros(len(out_scores))]
    return float(roc_auc_score(y, np.r_[in_scores, out_scores]))


@dataclass
class Guard:
    """The saved rule: a method, its fitted state and the acceptance threshold."""

    method: str
    threshold: float
    keep: float
    space: str  # "trunk", "features" (penultimate) or "logits": what a runtime must compute
    temperature: float = 1.0
    mahalanobis: Mahalanobis | None = None
    measured: dict[str, Any] = field(default_factory=dict)
    ppca: Ppca | None = None

    @property
    def needs_features(self) -> bool:
        """Whether a runtime must compute `features` (its `space`) beside the logits."""
        return self.space != "logits"

    def score(
        self, logits: np.ndarray | None = None, features: np.ndarray | None = None
    ) -> np.ndarray:
        """Mahalanobis and PPCA score `features` (of the guard's `space`: trunk or
        penultimate) or `logits`; energy and max-softmax, logits."""
        if self.space == "logits":
            features = logits
        return scores(
            self.method,
            logits=logits,
            features=features,
            model=self.mahalanobis,
            temperature=self.temperature,
            density=self.ppca,
        )

    def accept(
        self, logits: np.ndarray | None = None, features: np.ndarray | None = None
    ) -> np.ndarray:
        return self.score(logits, features) >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "space": self.space,
            "threshold": self.threshold,
            "keep": self.keep,
            "temperature": self.temperature,
            "measured": self.measured,
            "rule": "in distribution when score >= threshold",
        }
        if self.mahalanobis is not None:
            m = self.mahalanobis
            out["mahalanobis"] = {
                k: np.asarray(getattr(m, k)).astype(np.float32).tolist()
                for k in ("center", "components", "means", "precision")
            }
        if self.ppca is not None:
            out["ppca"] = self.ppca.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Guard:
        if d.get("method") not in METHODS or d.get("space") not in SPACES:
            raise ValueError(f"not an OOD guard: method {d.get('method')!r}")
        m = d.get("mahalanobis")
        maha = (
            None
            if m is None
            else Mahalanobis(
                *(
                    np.asarray(m[k], dtype=np.float64)
                    for k in ("center", "components", "means", "precision")
                )
            )
        )
        if (d["method"] == "mahalanobis" and maha is None) or (
            d["method"] == "ppca" and "ppca" not in d
        ):
            raise ValueError(f"OOD guard {d['method']!r} without its fitted state")
        return cls(
            d["method"],
            float(d["threshold"]),
            float(d["keep"]),
            d["space"],
            float(d.get("temperature", 1.0)),
            maha,
            dict(d.get("measured", {})),
            Ppca.from_dict(d["ppca"]) if "ppca" in d else None,
        )


def fit(
    method: str,
    *,
    train_logits: np.ndarray,
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_logits: np.ndarray,
    val_features: np.ndarray,
    keep: float = 0.95,
    temperature: float = 1.0,
    n_components: int = 32,
    space: str = "features",
) -> Guard:
    """A guard fitted on TRAIN (class means and covariance, or the PPCA density) with its
    threshold set on VAL.

    `space` matters for Mahalanobis and PPCA only: `train_features`/`val_features` are the
    features of that space ("trunk" or "features"), or "logits" (which every runtime already
    computes)."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}")
    space = space if method in ("mahalanobis", "ppca") else "logits"
    basis = train_logits if space == "logits" else train_features
    maha = Mahalanobis.fit(basis, train_labels, n_components) if method == "mahalanobis" else None
    density = Ppca.fit(basis, n_components) if method == "ppca" else None
    g = Guard(method, 0.0, keep, space, temperature, maha, ppca=density)
    g.threshold = threshold_keeping(g.score(val_logits, val_features), keep)
    return g
