import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

from dermai.core import metrics as M

RNG = np.random.default_rng(0)
Y = RNG.integers(0, 4, 300)
P = RNG.dirichlet(np.ones(4), 300)
P[np.arange(300), Y] += 0.3
P /= P.sum(1, keepdims=True)


def test_against_sklearn():
    pred = P.argmax(1)
    s = M.summary(Y, P)
    assert np.isclose(s["accuracy"], accuracy_score(Y, pred))
    assert np.isclose(s["balanced_accuracy"], balanced_accuracy_score(Y, pred))
    assert np.isclose(s["macro_auc"], roc_auc_score(Y, P, multi_class="ovr", average="macro"))


def test_absent_class_is_ignored_not_zero():
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1]])
    assert M.balanced_accuracy(y, p.argmax(1), 3) == 0.75
    assert np.isnan(M.per_class_auc(y, p)[2])
    assert M.macro_auc(y, p) == 0.75  # mean of classes 0 and 1 (0.75 each), not of 3
