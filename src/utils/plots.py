"""Plots written by the training and evaluation code: PNG files saved atomically."""
from src.utils.atomic import atomic_write


def save_figure(fig, path, dpi=100):
    """Save a matplotlib figure as PNG atomically (see src.utils.atomic), then close it."""
    from matplotlib import pyplot as plt
    try:
        with atomic_write(path, "plot", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)


def _per_step(axis, epochs, history, key, label):
    """Thin lines of one per-step history key (a list per epoch), one per future step k."""
    import matplotlib
    rows = [r.get(key) for r in history]
    if not all(rows):
        return
    steps, colours = len(rows[0]), matplotlib.colormaps["viridis"]
    for k, values in enumerate(zip(*rows), 1):  # step k has the same colour in every panel
        axis.plot(epochs, values, "-", linewidth=0.8, color=colours(0.85 * (k - 1) / max(1, steps - 1)),
                  label=f"{label} k={k}")


def plot_training_curves(history, chance, path, digit_chance=0.1):
    """PNG of loss and contrastive accuracy per epoch (validation also per future step k, with the
    chance line) and, when the history holds them, the kNN and probe digit accuracy of the codes
    (with digit_chance); written under a temporary name and renamed. history: metrics.json's
    per-epoch records."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    epochs = [r["epoch"] for r in history]
    digits = all("knn_accuracy" in r for r in history)
    fig, axes = plt.subplots(1, 3 if digits else 2, figsize=(13.5 if digits else 9, 3.5))
    left, right = axes[0], axes[1]
    left.plot(epochs, [r["loss"] for r in history], "o-", label="training loss")
    left.plot(epochs, [r["val_loss"] for r in history], "s--", label="validation loss")
    _per_step(left, epochs, history, "val_loss_per_step", "validation")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend(fontsize="small")
    right.plot(epochs, [r["val_accuracy"] for r in history], "o-", label="validation accuracy")
    _per_step(right, epochs, history, "val_accuracy_per_step", "validation")
    right.axhline(chance, color="grey", linestyle=":", label=f"chance ({chance:.2f})")
    right.set_ylim(0, 1.02)
    right.set_xlabel("epoch")
    right.set_ylabel("contrastive accuracy")
    right.legend(loc="lower right", fontsize="small")
    if digits:
        axis = axes[2]
        axis.plot(epochs, [r["knn_accuracy"] for r in history], "o-", label="kNN (cosine)")
        axis.plot(epochs, [r["probe_accuracy"] for r in history], "s-", label="linear probe")
        axis.axhline(digit_chance, color="grey", linestyle=":", label=f"chance ({digit_chance:.2f})")
        axis.set_ylim(0, 1.02)
        axis.set_xlabel("epoch")
        axis.set_ylabel("validation digit accuracy of the codes")
        axis.legend(loc="lower right", fontsize="small")
    for axis in axes:
        axis.set_xticks(epochs)
    fig.tight_layout()
    save_figure(fig, path)


def plot_accuracy(summary, order, path):
    """PNG: test accuracy against label fraction (log axis), one line per method in `order` (the mean
    over the seeds, error bars: their sample standard deviation). summary: rows of method,
    label_fraction, mean, std (src/eval/downstream.py summarise)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for method in order:
        rows = sorted((c["label_fraction"], c["mean"], c["std"]) for c in summary if c["method"] == method)
        if rows:
            fraction, mean, std = zip(*rows)
            ax.errorbar(fraction, mean, yerr=std, marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of training labels")
    ax.set_ylabel("test digit accuracy")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def pca_2d(codes):
    """The first two principal components of codes [N, D] (numpy SVD on centred codes)."""
    import numpy as np
    centred = codes - codes.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def tsne_2d(codes, seed):
    """2-D t-SNE of codes [N, D] (scikit-learn's TSNE: Barnes-Hut, PCA initialisation, seeded)."""
    from sklearn.manifold import TSNE
    perplexity = min(30.0, (len(codes) - 1) / 3)  # TSNE needs perplexity < N
    return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(codes)


def plot_codes(panels, labels, path, embed=pca_2d, method="PCA"):
    """PNG: a 2-D map of codes (`embed`: codes -> [N, 2]; PCA by default) coloured by digit, one
    panel per item of `panels` ({encoder title: its codes of the same digits `labels`})."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), dpi=100, squeeze=False)
    for ax, (title, codes) in zip(axes[0], panels.items()):
        points = embed(codes)
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=4, vmin=-0.5, vmax=9.5)
        ax.set_title(f"{title} encoder: test codes, {method}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(scatter, ax=axes[0].tolist(), ticks=range(10), label="digit")
    save_figure(fig, path)
