"""Confusion-matrix, ROC and precision-recall PNGs (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from .metrics import average_precision, precision_recall_curve, roc_auc, roc_curve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(path: Path, title: str, counts: dict) -> Path:
    plt = _pyplot()
    cells = [[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]]
    figure, axes = plt.subplots(figsize=(3.6, 3.2), dpi=110)
    axes.imshow(cells, cmap="Blues")
    peak = max(max(row) for row in cells) or 1
    for row in range(2):
        for column in range(2):
            value = cells[row][column]
            axes.text(column, row, f"{value:,}", ha="center", va="center",
                      color="white" if value > peak / 2 else "black", fontsize=12)
    axes.set_xticks([0, 1], ["negative", "positive"])
    axes.set_yticks([0, 1], ["negative", "positive"])
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def curves_png(path: Path, kind: str, curves: dict[str, tuple[list[int], list[float]]]) -> Path | None:
    """One ROC (``kind="roc"``) or precision-recall (``kind="pr"``) chart with a line per model. ``curves`` maps a
    model name to (labels, scores); models whose labels lack a class are skipped. None when nothing is drawable."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(4.8, 4.2), dpi=110)
    drawn = 0
    for name, (labels, scores) in curves.items():
        positives = sum(labels)
        if positives == 0 or (kind == "roc" and positives == len(labels)):
            continue
        if kind == "roc":
            x, y, _ = roc_curve(labels, scores)
            label = f"{name} (AUC {roc_auc(labels, scores):.3f})"
        else:
            precision, recall, _ = precision_recall_curve(labels, scores)
            x, y = recall, precision
            label = f"{name} (AP {average_precision(labels, scores):.3f})"
        axes.plot(x, y, label=label, drawstyle="default" if kind == "roc" else "steps-post")
        drawn += 1
    if not drawn:
        plt.close(figure)
        return None
    if kind == "roc":
        axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
        axes.set_xlabel("false positive rate (1 - specificity)")
        axes.set_ylabel("true positive rate (recall)")
        axes.set_title("ROC")
    else:
        axes.set_xlabel("recall")
        axes.set_ylabel("precision")
        axes.set_title("Precision-recall")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.legend(loc="lower right" if kind == "roc" else "upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
