"""The encoder's geometry: output sizes of its 3x3 stride-2 convolutions (pure Python, no MindSpore,
so the configuration check and the Keras importer use the same formula as the network), the
border frame the input-contrast layer takes its background from, and the image task's patch grid
and the query tables of its patch InfoNCE (shared with tools/torch_reference.py)."""
import numpy as np

KERNEL, STRIDE = 3, 2


def conv_geometry(size, padding):
    """(output size, padding before) of a 3x3 stride-2 convolution along one axis."""
    if padding == "valid":
        return (size - KERNEL) // STRIDE + 1, 0
    out = (size + STRIDE - 1) // STRIDE
    return out, max((out - 1) * STRIDE + KERNEL - size, 0) // 2


def encoder_output_size(image_size, padding, layers=4):
    """Spatial side after the encoder's `layers` 3x3 stride-2 convolutions (0 = image too small)."""
    n = image_size
    for _ in range(layers):
        n = conv_geometry(n, padding)[0]
        if n < 1:
            return 0
    return n


def border_mean_weights(image_size):
    """[S*S, 1] weights averaging an image's border frame (MNIST digits never touch it)."""
    width = max(1, image_size // 16)
    mask = np.ones((image_size, image_size), np.float32)
    mask[width:-width, width:-width] = 0
    return (mask / mask.sum()).reshape(-1, 1)


GROUP_SIZE = 8  # norm: group: channels per GroupNorm group


def patch_grid_size(image_size, patch_size, stride):
    """Patches per side of the grid cut from a square image (the last patch ends inside the image)."""
    return (image_size - patch_size) // stride + 1


def patch_origins(image_size, patch_size, stride):
    """Top (or left) pixel of each grid row (column) of patches."""
    return np.arange(patch_grid_size(image_size, patch_size, stride)) * stride


def query_tables(batch, grid, offsets):
    """(rows, targets) int32 [Q]: for every prediction whose target lies inside the grid, ordered by
    offset then (b, i, j), its row in the predictions flattened to [B*G*G*K, D] and the flat index
    b*G*G + (i+k)*G + j of its true patch among the B*G*G candidates."""
    rows, targets = [], []
    for index, offset in enumerate(offsets):
        b, i, j = np.meshgrid(np.arange(batch), np.arange(grid - offset), np.arange(grid), indexing="ij")
        position = (b * grid * grid + i * grid + j).reshape(-1)
        rows.append(position * len(offsets) + index)
        targets.append(position + offset * grid)
    return np.concatenate(rows).astype(np.int32), np.concatenate(targets).astype(np.int32)
