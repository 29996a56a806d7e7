import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

from dermai.core import metrics

RNG = np.random.default_rng(0)
Y = RNG.integers(0, 4, 300)
P = RNG.dirichlet(np.ones(4), 300)
P[np.arange(300), Y] += 0.3
P /= P.sum(1, keepdims=True)


def test_against_sklearn():
    pred = P.argmax(1)
    s = metrics.summary(Y, P)
    assert np.isclose(s["accuracy"], accuracy_score(Y, pred))
    assert np.isclose(s["balanced_accuracy"], balanced_accuracy_score(Y, pred))
    assert np.isclose(s["macro_auc"], roc_auc_score(Y, P, multi_class="ovr", average="macro"))


def test_absent_class_is_ignored_not_zero():
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1]])
    assert metrics.balanced_accuracy(y, p.argmax(1), 3) == 0.75
    assert np.isnan(metrics.per_class_auc(y, p)[2])
    assert metrics.macro_auc(y, p) == 0.75  # mean of classes 0 and 1 (0.75 each), not of 3


def test_binary_auc_equals_sklearn_with_ties():
    from dermai.core.metrics import binary_auc

    score = np.round(P[:, 1], 1)  # many ties
    assert np.isclose(binary_auc(Y == 1, score), roc_auc_score(Y == 1, score))
    assert np.isnan(binary_auc(np.ones(3, bool), np.arange(3)))


def test_macro_f1_per_class_and_confusion_against_sklearn():
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    pred = P.argmax(1)
    assert np.isclose(metrics.macro_f1(Y, pred, 4), f1_score(Y, pred, average="macro"))
    rep = metrics.per_class_report(Y, pred, 4)
    p, r, f, s = precision_recall_fscore_support(Y, pred, labels=range(4))
    for key, ref in (("precision", p), ("recall", r), ("f1", f), ("support", s)):
        assert np.allclose(rep[key], ref), key
    assert (metrics.confusion_matrix(Y, pred, 4) == confusion_matrix(Y, pred)).all()


def test_undefined_per_class_values_are_nan_and_absent_classes_leave_macro_f1():
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    rep = metrics.per_class_report(y, pred, 3)
    assert rep["support"].tolist() == [2, 2, 0]
    assert np.isnan(rep["recall"][2]) and np.isnan(rep["f1"][2]) and np.isnan(rep["precision"][2])
    assert np.isclose(metrics.macro_f1(y, pred, 3), (2 / 3 + 0.8) / 2)
    assert metrics.confusion_matrix(y, pred, 3).tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
