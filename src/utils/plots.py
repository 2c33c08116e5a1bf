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
