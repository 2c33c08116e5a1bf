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


def plot_training_curves(history, chance, path):
    """PNG of training loss and validation accuracy per epoch (with the chance line), written under
    a temporary name and renamed. history: metrics.json's per-epoch records."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [r["loss"] for r in history], "o-", label="training loss")
    left.plot(epochs, [r["val_loss"] for r in history], "s--", label="validation loss")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    right.plot(epochs, [r["val_accuracy"] for r in history], "o-", label="validation accuracy")
    right.axhline(chance, color="grey", linestyle=":", label=f"chance ({chance:.2f})")
    right.set_ylim(0, 1.02)
    right.set_xlabel("epoch")
    right.set_ylabel("contrastive accuracy")
    right.legend(loc="lower right")
    for axis in (left, right):
        axis.set_xticks(epochs)
    fig.tight_layout()
    save_figure(fig, path)
