"""PyTorch reference of this port's CPC network and training step, to time the two side by side.

    python tools/torch_reference.py --config_path config/cpc_mnist64_color.yaml [--steps 30] [--warmup 5]

Builds, from the same config as the port, the same network in PyTorch eager mode: the input-contrast
layer when the config has it, `encoder_layers` x (3x3 stride-2 conv without bias -> BatchNorm ->
LeakyReLU 0.3) with TF/Keras 'valid'/'same' padding, Dense -> BatchNorm -> LeakyReLU -> Dense code,
the GRU context and one linear map per future step; context and future images go through the
encoder as one batch, as in src/model/cpc.py. The step is the binary loss (sigmoid cross-entropy on the
mean score) with Adam, on a fixed batch of the config's shapes. Prints one JSON line: step time
median / min, sequences/s, and encoder inference images/s (inference mode, batch = batch_size x
(terms + predict_terms), as tools/benchmark.py measures the port) after the training steps and,
images_per_s_fresh, first in the fresh process (from the median call; *_best from the fastest).

task: image (the config's key; src/model/image_cpc.py, patch_loss.py) builds the image network
instead: the patch encoder (the same conv blocks on each patch with the `norm` key's normalisation:
layer/group = per-sample GroupNorm without affine, eps 1e-5, batch = the BatchNorm above, none;
Dense -> LayerNorm with affine, or BatchNorm1d for batch -> LeakyReLU -> Dense code), the masked
3x3 context over the grid of codes (position (i, j) reads rows i-2..i, columns j-1..j+1; LeakyReLU
0.2, residual after the first), one Dense predicting every row offset, and the patch InfoNCE over
all B*G*G codes of the batch with the port's query tables; Adam on a fixed batch of patch grids
[B, G*G, C, P, P]. Its encoder (images_per_s) is the ImageEncoder: input contrast, the patch grid,
the patch encoder and the pool_grid x pool_grid region means. The line then says "task": "image",
the patch keys in place of terms / predict_terms, and "parameters" (trainable scalars), which
tools/benchmark.py prints for the port too: the two must be equal.

task: twoview, cmc, and image with view_ntxent_weight > 0 build the twins of tools/torch_twoview.py
(the two-view nets and losses, on this module's encoder) the same way; their line says "task",
"loss" and "parameters".

An optional tool for scripts/run_benchmark.sh (pip install torch; the CPU build); the port never
imports it. Only the binary loss is timed for the sequence task (the port's published objective).
"""
import json
import os
import re
import statistics
import sys
from collections import OrderedDict
from contextlib import contextmanager

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    import torch  # optional dependency of this tool only
    from torch import nn
except ImportError:
    sys.exit("error: tools/torch_reference.py needs PyTorch (pip install torch, the CPU build)")

from src.config import parse_config  # noqa: E402  (pure Python: no MindSpore import)
from src.utils.errors import ConfigError, CPCError, run_main  # noqa: E402
from src.utils.geometry import GROUP_SIZE, conv_geometry, patch_grid_size, query_tables  # noqa: E402
from src.utils.timing import check_counts, inference_repeats, throughput, timed  # noqa: E402

BN_EPS, BN_MOMENTUM, LEAKY_ALPHA = 1e-3, 0.01, 0.3   # PyTorch's momentum is the new value's share
NORM_EPS, CONTEXT_ALPHA = 1e-5, 0.2   # image task: src/model/image_cpc.py NORM_EPS, MaskedContext's LeakyReLU


class InputContrast(nn.Module):
    """|x - background| - 1 per image and channel, background = the mean of the border frame."""

    def __init__(self, size):
        super().__init__()
        width = max(1, size // 16)
        mask = torch.ones(size, size)
        mask[width:-width, width:-width] = 0
        self.register_buffer("weights", (mask / mask.sum()).reshape(-1, 1))

    def forward(self, x):
        n, c, h, w = x.shape
        flat = x.reshape(n * c, h * w)
        return ((flat - flat @ self.weights).abs() - 1.0).reshape(n, c, h, w)


def conv_norm(norm, channels):
    """{stage name: module} of the normalisation after each encoder conv, named as in the port's
    block: BatchNorm2d `bn` (the sequence task; norm: batch), or `norm`, GroupNorm without affine
    (src/model/image_cpc.py GroupNorm2d: layer = one group, group = groups of GROUP_SIZE channels), or none."""
    if norm == "batch":
        return {"bn": nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)}
    if norm in ("layer", "group"):
        groups = 1 if norm == "layer" else max(1, channels // GROUP_SIZE)
        return {"norm": nn.GroupNorm(groups, channels, eps=NORM_EPS, affine=False)}
    return {}


def dense_norm(norm, hidden):
    """The normalisation after the encoder's dense layer (src/model/image_cpc.py dense_norm)."""
    if norm == "batch":
        return nn.BatchNorm1d(hidden, eps=BN_EPS, momentum=BN_MOMENTUM)
    if norm in ("layer", "group"):
        return nn.LayerNorm(hidden, eps=NORM_EPS)
    return nn.Identity()


def conv_blocks(cfg, size, norm="batch", channels=None):
    """(blocks, output channels, output side): `encoder_layers` x (3x3 stride-2 conv without bias
    with TF 'same'/'valid' padding -> norm -> LeakyReLU) on a size x size input of `channels`
    channels (default: the config's images'), each block's modules named as the port's (conv, bn or
    norm, act)."""
    blocks, channels = [], channels or (3 if cfg.color else 1)
    for _ in range(cfg.encoder_layers):
        out, before = conv_geometry(size, cfg.padding)
        after = max((out - 1) * 2 + 3 - size - before, 0)
        block = {"pad": nn.ZeroPad2d((before, after, before, after))} if before or after else {}
        block["conv"] = nn.Conv2d(channels, cfg.encoder_channels, 3, 2, bias=False)
        block.update(conv_norm(norm, cfg.encoder_channels))
        block["act"] = nn.LeakyReLU(LEAKY_ALPHA)
        blocks.append(nn.Sequential(OrderedDict(block)))
        channels, size = cfg.encoder_channels, out
    return nn.Sequential(*blocks), channels, size


def encoder(cfg, size=None, norm="batch", channels=None):
    """Images (or, image task, patches of side `size`) -> codes, its modules named as the port's
    encoder stages (src/model/cpc.py Encoder, src/model/image_cpc.py PatchEncoder): [contrast],
    blocks, flatten (C, H, W), dense, bn (norm in the patch encoder), act, embedding. The sequence
    encoder starts with the input contrast; the image task's patches get it on the whole image.
    channels: of the input (default: the config's images'; CMC's L and ab encoders take 1 and 2)."""
    stages = {"contrast": InputContrast(cfg.image_size)} if cfg.input_contrast and size is None else {}
    stages["blocks"], channels, side = conv_blocks(cfg, size or cfg.image_size, norm, channels)
    stages["flatten"] = nn.Flatten()
    stages["dense"] = nn.Linear(channels * side * side, cfg.encoder_hidden)
    stages["bn" if size is None else "norm"] = dense_norm(norm, cfg.encoder_hidden)
    stages["act"] = nn.LeakyReLU(LEAKY_ALPHA)
    stages["embedding"] = nn.Linear(cfg.encoder_hidden, cfg.code_size)
    return nn.Sequential(OrderedDict(stages))


# the port's parameter names that differ from PyTorch's (MindSpore's BatchNorm and LayerNorm)
PORT_NAMES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def copy_port_weights(named_arrays, model):
    """Load the port's parameters ({MindSpore name: array}) into `model`, whose modules carry the
    port's Cell names (the encoder's stages, the context network): each onto the tensor of the
    same name. Every trainable parameter of `model` must be given, with its shape."""
    state, copied = model.state_dict(), set()
    for name, value in named_arrays.items():
        head, _, last = name.rpartition(".")
        key = f"{head}.{PORT_NAMES.get(last, last)}"
        if key not in state or tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(f"the reference has no tensor {key} of shape {tuple(value.shape)} (port: {name})")
        state[key].copy_(torch.from_numpy(value))
        copied.add(key)
    missing = [n for n, _ in model.named_parameters() if n not in copied]
    if missing:
        raise ValueError(f"the port gave no value for {', '.join(missing[:4])}")


class CPC(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.terms, self.predict_terms, self.code_size = cfg.terms, cfg.predict_terms, cfg.code_size
        self.encoder = encoder(cfg)
        self.gru = nn.GRU(cfg.code_size, cfg.hidden_size, batch_first=True)
        self.predictor = nn.Linear(cfg.hidden_size, cfg.predict_terms * cfg.code_size)

    def forward(self, x, y):
        batch = x.shape[0]
        z_context = self.encoder(x.flatten(0, 1)).view(batch, self.terms, self.code_size)
        z_future = self.encoder(y.flatten(0, 1)).view(batch, self.predict_terms, self.code_size)
        _, hidden = self.gru(z_context)
        predicted = self.predictor(hidden[-1]).view(batch, self.predict_terms, self.code_size)
        return (predicted * z_future).mean(-1).mean(-1, keepdim=True)


def cut_grid(x, patch, stride):
    """Images [B, C, S, S] -> patches [B, G*G, C, P, P], grid row-major (src/model/image_cpc.py PatchGrid)."""
    windows = x.unfold(2, patch, stride).unfold(3, patch, stride)          # [B, C, G, G, P, P]
    return windows.permute(0, 2, 3, 1, 4, 5).flatten(1, 2)


class ImageEncoder(nn.Module):
    """Images -> [B, pool_grid^2 * code_size]: input contrast, the patch grid, the patch encoder and
    each region's mean code (adaptive average pooling: the port's region_pooling regions)."""

    def __init__(self, cfg):
        super().__init__()
        self.patch, self.stride, self.pool = cfg.patch_size, cfg.patch_stride, cfg.pool_grid
        self.grid = patch_grid_size(cfg.image_size, cfg.patch_size, cfg.patch_stride)
        self.contrast = InputContrast(cfg.image_size) if cfg.input_contrast else nn.Identity()
        self.patch_encoder = encoder(cfg, cfg.patch_size, cfg.norm)

    def encode_patches(self, patches):
        """[B, G*G, C, P, P] -> codes [B, G*G, code_size]."""
        return self.patch_encoder(patches.flatten(0, 1)).unflatten(0, patches.shape[:2])

    def forward(self, x):
        codes = self.encode_patches(cut_grid(self.contrast(x), self.patch, self.stride))
        grid = codes.transpose(1, 2).unflatten(2, (self.grid, self.grid))    # [B, D, G, G]
        pooled = nn.functional.adaptive_avg_pool2d(grid, self.pool)        # [B, D, pool, pool]
        return pooled.flatten(2).transpose(1, 2).flatten(1)                # region-major, as the port


class MaskedContext(nn.Module):
    """The port's MaskedContext: a masked conv to hidden_size, then residual masked convs, LeakyReLU after each."""

    def __init__(self, cfg):
        super().__init__()
        self.first = MaskedConv(cfg.code_size, cfg.hidden_size)
        self.rest = nn.ModuleList(MaskedConv(cfg.hidden_size, cfg.hidden_size) for _ in range(cfg.context_layers - 1))
        self.act = nn.LeakyReLU(CONTEXT_ALPHA)

    def forward(self, x):
        c = self.act(self.first(x))
        for conv in self.rest:
            c = c + self.act(conv(c))
        return c


class MaskedConv(nn.Module):
    """3x3 conv over the grid [B, C, G, G] in which (i, j) reads rows i-2..i and columns j-1..j+1 (zero
    padding two rows above, one column each side, none below). Its weight is the port's Dense
    [Cout, 9 * Cin] (taps row-major, then channel), viewed as a conv kernel: the same parameters."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.dense = nn.Linear(9 * in_channels, out_channels)

    def forward(self, x):
        weight = self.dense.weight.unflatten(1, (3, 3, -1)).permute(0, 3, 1, 2)   # [Cout, Cin, 3, 3]
        return nn.functional.conv2d(nn.functional.pad(x, (1, 1, 2, 0)), weight, self.dense.bias)


class ImageCPC(nn.Module):
    """Patches [B, G*G, C, P, P] -> (predictions [B, G*G, K*D], codes [B, G*G, D]) as the port's
    ImageCPC: codes, masked context (first conv to hidden_size, then residual convs), one Dense."""

    def __init__(self, cfg):
        super().__init__()
        self.encoder = ImageEncoder(cfg)
        self.grid = self.encoder.grid
        self.offsets = tuple(range(cfg.min_row_offset, self.grid))   # src/model/image_cpc.py row_offsets
        self.context = MaskedContext(cfg)
        self.predictor = nn.Linear(cfg.hidden_size, len(self.offsets) * cfg.code_size)

    def forward(self, patches):
        z = self.encoder.encode_patches(patches)
        c = self.context(z.transpose(1, 2).unflatten(2, (self.grid, self.grid)))
        return self.predictor(c.flatten(2).transpose(1, 2)), z


def patch_infonce(predicted, codes, rows, targets):
    """Mean InfoNCE of the predictions at `rows` (query_tables) against all B*G*G codes of the batch."""
    dim = codes.shape[-1]
    logits = predicted.reshape(-1, dim)[rows] @ codes.reshape(-1, dim).T
    return (torch.logsumexp(logits, -1) - logits.gather(1, targets[:, None]).squeeze(1)).mean()


def parameter_count(model):
    """Trainable scalars (tools/benchmark.py counts the port's the same way)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def sequence_bench(cfg):
    """(model, loss of the fixed batch, encoder images, JSON fields) of the sequence task."""
    model = CPC(cfg)
    loss_fn = nn.BCEWithLogitsLoss()
    channels = 3 if cfg.color else 1
    x = torch.rand(cfg.batch_size, cfg.terms, channels, cfg.image_size, cfg.image_size) * 2 - 1
    y = torch.rand(cfg.batch_size, cfg.predict_terms, channels, cfg.image_size, cfg.image_size) * 2 - 1
    label = (torch.arange(cfg.batch_size) % 2).float().reshape(-1, 1)
    images = torch.cat((x.flatten(0, 1), y.flatten(0, 1)))
    return (model, lambda: loss_fn(model(x, y), label), images,
            {"terms": cfg.terms, "predict_terms": cfg.predict_terms})


def patch_tables(model, batch):
    """(predicted, codes) -> the patch InfoNCE of a batch of that size (the port's query tables)."""
    rows, targets = (torch.from_numpy(t).long() for t in query_tables(batch, model.grid, model.offsets))
    return lambda predicted, codes: patch_infonce(predicted, codes, rows, targets)


def image_loss(model, batch):
    """The patch InfoNCE of a batch of patch grids, as a function of them (the port's query tables)."""
    infonce = patch_tables(model, batch)
    return lambda patches: infonce(*model(patches))


def random_patches(cfg, grid):
    """A fixed batch of patch grids [B, G*G, C, P, P] in [-1, 1]."""
    channels = 3 if cfg.color else 1
    return torch.rand(cfg.batch_size, grid * grid, channels, cfg.patch_size, cfg.patch_size) * 2 - 1


def random_images(cfg, count, channels=None):
    """A fixed batch of `count` images [count, C, S, S] in [-1, 1] (C: the config's)."""
    return torch.rand(count, channels or (3 if cfg.color else 1), cfg.image_size, cfg.image_size) * 2 - 1


def image_bench(cfg):
    """(model, loss of the fixed batch, encoder images, JSON fields) of the image task: patch grids
    [B, G*G, C, P, P] for the step, batch_size whole images for the encoder."""
    model = ImageCPC(cfg)
    grid = model.grid
    patches = random_patches(cfg, grid)
    images = random_images(cfg, cfg.batch_size)
    loss = image_loss(model, cfg.batch_size)
    return (model, lambda: loss(patches), images,
            {"task": "image", "patch_size": cfg.patch_size, "patch_stride": cfg.patch_stride, "grid": grid,
             "offsets": len(model.offsets), "norm": cfg.norm, "context_layers": cfg.context_layers,
             "loss": "patch_infonce", "parameters": parameter_count(model)})


def bench_of(cfg):
    """The config's bench builder; the two-view methods' (and the image task's with its view term)
    from tools/torch_twoview.py, imported here, not at the top: it imports this module."""
    if cfg.task in ("twoview", "cmc") or (cfg.task == "image" and cfg.view_ntxent_weight):
        from tools import torch_twoview
        return torch_twoview.BENCHES["image" if cfg.task == "image" else cfg.task]
    return {"sequence": sequence_bench, "image": image_bench}[cfg.task]


def train_step(model, loss_fn, learning_rate):
    """One Adam step on loss_fn() -> its loss (before the update) as a float."""
    optimizer = torch.optim.Adam(model.parameters(), learning_rate)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


@contextmanager
def memory_guard(batch_size):
    """PyTorch's allocator failing (a RuntimeError with its C++ context) -> one CPCError line."""
    try:
        yield
    except RuntimeError as exc:
        asked = re.search(r"can't allocate memory: you tried to allocate (\d+) bytes", str(exc))
        if asked is None:
            raise
        raise CPCError(f"batch_size {batch_size} needs more memory than this machine can give (PyTorch could not "
                       f"allocate {int(asked.group(1)) / 1e9:.2f} GB); use a smaller batch_size") from None


def _extra(parser):
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--profile", action="store_true",
                        help="also profile 10 steps and 10 encoder inference calls with torch.profiler and print "
                             "the operators with the most time (stderr), as tools/benchmark.py --profile_path does")


def encode_images(model, images):
    with torch.inference_mode():
        model.encoder(images)


def profile_calls(call, what, calls=10, top=12):
    """torch.profiler over `calls` calls after one warm-up: the operators with the most time of their
    own (self CPU time) per call, on stderr."""
    from torch.profiler import ProfilerActivity, profile
    call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            call()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    whole = sum(e.self_cpu_time_total for e in events) / 1000 / calls
    print(f"torch.profiler: {what}, ms per call ({calls} calls, all: {whole:.1f} ms):", file=sys.stderr)
    for event in events[:top]:
        spent = event.self_cpu_time_total / 1000 / calls
        print(f"    {event.key[:40]:<40} {spent:8.1f} ms {100 * spent / whole:5.1f}%  x{event.count // calls}",
              file=sys.stderr)


def main(argv=None):
    cfg = parse_config(argv, description="PyTorch reference of the CPC training step", extra_args=_extra)
    check_counts(cfg.steps, cfg.warmup)
    if cfg.task == "sequence" and cfg.loss != "binary":  # it would time the binary step under loss's name
        raise ConfigError(f"tools/torch_reference.py times the sequence task's binary loss only; got loss: {cfg.loss}")
    with memory_guard(cfg.batch_size):
        print(json.dumps(measure(cfg)))


def measure(cfg):
    """The JSON line's fields: step and encoder timings of the config's task."""
    torch.manual_seed(cfg.seed)
    model, loss_fn, images, fields = bench_of(cfg)(cfg)
    step = train_step(model, loss_fn, cfg.learning_rate)

    def encoder_images_per_s():
        model.eval()

        return throughput(lambda: encode_images(model, images), images.shape[0], inference_repeats(cfg.steps))

    fresh_inference = encoder_images_per_s()  # before anything else ran in this process
    model.train()
    timed(step, cfg.warmup)
    times = timed(step, cfg.steps)

    inference = encoder_images_per_s()  # after the training steps
    if cfg.profile:
        profile_calls(step, "steps")
        model.eval()
        profile_calls(lambda: encode_images(model, images), "encoder inference calls")
    median = statistics.median(times)
    return {"framework": "torch", "torch_version": torch.__version__, "threads": torch.get_num_threads(),
            "image_size": cfg.image_size, "color": cfg.color, "batch_size": cfg.batch_size, **fields,
            "steps": cfg.steps, "step_ms_median": round(1000 * median, 2), "step_ms_min": round(1000 * min(times), 2),
            "samples_per_s": round(cfg.batch_size / median, 1),
            "images_per_s": round(inference[0], 1), "images_per_s_best": round(inference[1], 1),
            "images_per_s_fresh": round(fresh_inference[0], 1),
            "images_per_s_fresh_best": round(fresh_inference[1], 1)}

if __name__ == "__main__":
    run_main(main)
