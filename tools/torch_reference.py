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

An optional tool for scripts/run_benchmark.sh (pip install torch; the CPU build); the port never
imports it. Only the binary loss is timed (the port's published objective).
"""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    import torch  # optional dependency of this tool only
    from torch import nn
except ImportError:
    sys.exit("error: tools/torch_reference.py needs PyTorch (pip install torch, the CPU build)")

from src.config import parse_config  # noqa: E402  (pure Python: no MindSpore import)
from src.utils.errors import run_main  # noqa: E402
from src.utils.geometry import conv_geometry  # noqa: E402
from src.utils.timing import check_counts, inference_repeats, throughput, timed  # noqa: E402

BN_EPS, BN_MOMENTUM, LEAKY_ALPHA = 1e-3, 0.01, 0.3   # PyTorch's momentum is the new value's share


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


def encoder(cfg):
    layers = [InputContrast(cfg.image_size)] if cfg.input_contrast else []
    channels, size = 3 if cfg.color else 1, cfg.image_size
    for _ in range(cfg.encoder_layers):
        out, before = conv_geometry(size, cfg.padding)
        after = max((out - 1) * 2 + 3 - size - before, 0)
        if before or after:
            layers.append(nn.ZeroPad2d((before, after, before, after)))
        layers += [nn.Conv2d(channels, cfg.encoder_channels, 3, 2, bias=False),
                   nn.BatchNorm2d(cfg.encoder_channels, eps=BN_EPS, momentum=BN_MOMENTUM), nn.LeakyReLU(LEAKY_ALPHA)]
        channels, size = cfg.encoder_channels, out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * size * size, cfg.encoder_hidden),
                         nn.BatchNorm1d(cfg.encoder_hidden, eps=BN_EPS, momentum=BN_MOMENTUM),
                         nn.LeakyReLU(LEAKY_ALPHA), nn.Linear(cfg.encoder_hidden, cfg.code_size))


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


def _extra(parser):
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")


def main(argv=None):
    cfg = parse_config(argv, description="PyTorch reference of the CPC training step", extra_args=_extra)
    check_counts(cfg.steps, cfg.warmup)
    torch.manual_seed(cfg.seed)
    model = CPC(cfg)
    optimizer = torch.optim.Adam(model.parameters(), cfg.learning_rate)
    loss_fn = nn.BCEWithLogitsLoss()
    channels = 3 if cfg.color else 1
    x = torch.rand(cfg.batch_size, cfg.terms, channels, cfg.image_size, cfg.image_size) * 2 - 1
    y = torch.rand(cfg.batch_size, cfg.predict_terms, channels, cfg.image_size, cfg.image_size) * 2 - 1
    label = (torch.arange(cfg.batch_size) % 2).float().reshape(-1, 1)
    images = torch.cat((x.flatten(0, 1), y.flatten(0, 1)))

    def encoder_images_per_s():
        model.eval()

        def encode():
            with torch.inference_mode():
                model.encoder(images)
        return throughput(encode, images.shape[0], inference_repeats(cfg.steps))

    fresh_inference = encoder_images_per_s()  # before anything else ran in this process
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x, y), label)
        loss.backward()
        optimizer.step()
        return loss.item()

    timed(step, cfg.warmup)
    times = timed(step, cfg.steps)

    inference = encoder_images_per_s()  # after the training steps
    median = statistics.median(times)
    print(json.dumps({"framework": "torch", "torch_version": torch.__version__, "threads": torch.get_num_threads(),
                      "image_size": cfg.image_size, "color": cfg.color, "batch_size": cfg.batch_size,
                      "terms": cfg.terms, "predict_terms": cfg.predict_terms, "steps": cfg.steps,
                      "step_ms_median": round(1000 * median, 2), "step_ms_min": round(1000 * min(times), 2),
                      "samples_per_s": round(cfg.batch_size / median, 1),
                      "images_per_s": round(inference[0], 1), "images_per_s_best": round(inference[1], 1),
                      "images_per_s_fresh": round(fresh_inference[0], 1),
                      "images_per_s_fresh_best": round(fresh_inference[1], 1)}))


if __name__ == "__main__":
    run_main(main)
