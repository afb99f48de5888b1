"""Metrics library against hand-computed cases and scikit-learn, and its undefined-value edge cases."""

import numpy as np
import pytest
from mmft_evaluator.metrics import average_precision, classification_metrics, roc_auc
from mmft_evaluator.thresholds import ThresholdError, choose_threshold
from sklearn import metrics as sk


def test_hand_computed_confusion_and_ratios():
    # 10 examples: tp=3, fn=1, fp=2, tn=4.
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    predictions = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    result = classification_metrics(labels, predictions).as_dict()
    assert (result["tp"], result["fn"], result["fp"], result["tn"]) == (3, 1, 2, 4)
    assert result["accuracy"] == pytest.approx(7 / 10)
    assert result["precision"] == pytest.approx(3 / 5)
    assert result["recall"] == pytest.approx(3 / 4)
    assert result["specificity"] == pytest.approx(4 / 6)
    assert result["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert result["balanced_accuracy"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    assert result["roc_auc"] is None and result["pr_auc"] is None
    assert set(result["undefined"]) == {"roc_auc", "pr_auc"}


def test_hand_computed_auc_with_ties():
    # Positives score 0.9 and 0.5; negatives 0.5 and 0.1. Pairs: (0.9>0.5) (0.9>0.1) (0.5=0.5 -> 1/2) (0.5>0.1).
    labels = [1, 1, 0, 0]
    scores = [0.9, 0.5, 0.5, 0.1]
    assert roc_auc(labels, scores) == pytest.approx(3.5 / 4)
    # Thresholds 0.9: P=1, R=1/2; 0.5: P=2/3, R=1; AP = 1/2*1 + 1/2*2/3.
    assert average_precision(labels, scores) == pytest.approx(0.5 + 1 / 3)


def test_seed_base_model_row_reproduces_published_numbers():
    # The seed's base Gemma 3: all 58 positives found, 3,219 false positives among 3,313 - 58 negatives.
    negatives = 3313 - 58
    labels = [1] * 58 + [0] * negatives
    predictions = [1] * 58 + [1] * 3219 + [0] * (negatives - 3219)
    result = classification_metrics(labels, predictions).as_dict()
    assert result["recall"] == 1.0
    assert round(result["specificity"], 3) == 0.011
    assert round(result["precision"], 3) == 0.018
    assert round(result["accuracy"], 3) == 0.028


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_sklearn_on_random_imbalanced_data(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(500) < 0.05).astype(int)
    labels[:2] = [0, 1]
    # Rounded scores create many ties, the hard case for AUC implementations.
    scores = np.round(np.clip(rng.normal(0.4 + 0.3 * labels, 0.2), 0, 1), 2)
    predictions = (scores >= 0.5).astype(int)
    result = classification_metrics(labels, predictions, scores).as_dict()
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(labels, predictions))
    assert result["precision"] == pytest.approx(sk.precision_score(labels, predictions))
    assert result["recall"] == pytest.approx(sk.recall_score(labels, predictions))
    assert result["f1"] == pytest.approx(sk.f1_score(labels, predictions))
    assert result["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(labels, predictions))
    assert result["roc_auc"] == pytest.approx(sk.roc_auc_score(labels, scores))
    assert result["pr_auc"] == pytest.approx(sk.average_precision_score(labels, scores))
    tn, fp, fn, tp = sk.confusion_matrix(labels, predictions).ravel()
    assert (result["tn"], result["fp"], result["fn"], result["tp"]) == (tn, fp, fn, tp)
    assert result["specificity"] == pytest.approx(tn / (tn + fp))


def test_all_negative_labels_gives_nulls_with_reasons_not_zeros():
    result = classification_metrics([0, 0, 0], [0, 1, 0], [0.1, 0.7, 0.2]).as_dict()
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["specificity"] == pytest.approx(2 / 3)
    assert result["precision"] == 0.0  # one predicted positive, and it is wrong: defined, and zero
    for undefined in ("recall", "balanced_accuracy", "roc_auc", "pr_auc"):
        assert result[undefined] is None
        assert result["undefined"][undefined]


def test_no_predicted_positives_makes_precision_null_but_f1_defined():
    result = classification_metrics([1, 0, 0], [0, 0, 0]).as_dict()
    assert result["precision"] is None
    assert "no predicted positives" in result["undefined"]["precision"]
    assert result["recall"] == 0.0
    assert result["f1"] == 0.0


def test_all_positive_labels_leaves_specificity_null():
    result = classification_metrics([1, 1], [1, 0], [0.8, 0.3]).as_dict()
    assert result["specificity"] is None and result["roc_auc"] is None
    assert result["pr_auc"] == pytest.approx(1.0)


def test_fixed_threshold_ignores_validation():
    assert choose_threshold("fixed", fixed=0.3) == 0.3


def test_max_balanced_accuracy_threshold_separates_classes():
    labels = [0, 0, 0, 1, 1]
    scores = [0.05, 0.1, 0.2, 0.3, 0.4]
    threshold = choose_threshold("max-balanced-accuracy", labels, scores)
    assert threshold == pytest.approx(0.3)


def test_target_recall_threshold_is_the_highest_that_reaches_the_target():
    labels = [1, 1, 1, 1, 0, 0]
    scores = [0.9, 0.8, 0.4, 0.2, 0.5, 0.1]
    assert choose_threshold("target-recall", labels, scores, target_recall=0.75) == pytest.approx(0.4)
    assert choose_threshold("target-recall", labels, scores, target_recall=1.0) == pytest.approx(0.2)


def test_threshold_policy_without_validation_positives_is_a_clear_error():
    with pytest.raises(ThresholdError, match="no"):
        choose_threshold("target-recall", [0, 0], [0.1, 0.2])
