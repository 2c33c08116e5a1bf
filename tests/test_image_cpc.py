"""The image task (task: image): the patch grid, the masked context, per-sample normalisation, the patch
InfoNCE, the patch source and its augmentation, the config checks, the inference encoder."""
import numpy as np
import pytest
from mindspore import Tensor

from src import checkpoint
from src.config import model_hparams, namespace
from src.data.patches import PatchSource, cut_patches, drop_colour, input_contrast
from src.deploy.nets import build_inference_net
from src.eval.represent import ENCODE_BATCH, IMAGE_ENCODE_BATCH, encode, images_per_call
from src.model.build import build_cpc, feature_size
from src.model.classifier import Classifier, DigitHead
from src.model.cpc import InputContrast
from src.model.image_cpc import GroupNorm2d, PatchGrid, region_pooling
from src.model.patch_loss import patch_infonce, query_tables
from src.utils.errors import ConfigError

SMALL = dict(task="image", padding="same", encoder_layers=3, encoder_channels=8, encoder_hidden=16, code_size=8,
             hidden_size=8, context_layers=2)
GREY28 = dict(SMALL, image_size=28, color=False, input_contrast=False, patch_size=8, patch_stride=4)
COLOR64 = dict(SMALL)  # 64x64 colour, 16x16 patches at stride 8, input contrast: the defaults


def image_net(backend="cpu", **keys):
    hparams = model_hparams(namespace(**keys))
    return build_cpc(hparams, backend), hparams


def images(hparams, count, seed):
    channels = 3 if hparams["color"] else 1
    size = hparams["image_size"]
    return np.random.default_rng(seed).uniform(-1, 1, (count, channels, size, size)).astype(np.float32)


def contexts(net, x):
    """Context of every grid position [B, G, G, H] of images x (inference mode)."""
    net.set_train(False)
    codes = net.encoder.encode_patches(net.encoder.patches(Tensor(x)))
    return net.context(codes).asnumpy().reshape(len(x), net.grid, net.grid, -1)


@pytest.mark.parametrize("keys", [GREY28, COLOR64], ids=["grey28", "colour64"])
@pytest.mark.parametrize("row", [2, 4])
def test_context_never_sees_a_lower_row(ms_cpu, keys, row):
    net, hparams = image_net(**keys)
    stride, patch, size = hparams["patch_stride"], hparams["patch_size"], hparams["image_size"]
    border = max(1, size // 16) if hparams["input_contrast"] else 0  # the input contrast reads the border frame
    x = images(hparams, 2, 0)
    changed = x.copy()
    first_pixel = (row - 1) * stride + patch  # the first pixel row below every patch of grid rows < row
    changed[:, :, first_pixel:size - border, border:size - border] = images(hparams, 2, 1)[
        :, :, first_pixel:size - border, border:size - border]
    before, after = contexts(net, x), contexts(net, changed)
    np.testing.assert_array_equal(after[:, :row], before[:, :row])  # rows above: exactly unchanged
    assert np.abs(after[:, row:] - before[:, row:]).max() > 0  # the changed rows do reach the context


@pytest.mark.parametrize("train", [True, False], ids=["training", "inference"])
def test_layer_norm_codes_do_not_depend_on_the_other_images(ms_cpu, train):
    net, hparams = image_net(**COLOR64)
    net.set_train(train)
    x, others = images(hparams, 4, 0), images(hparams, 4, 1)
    mixed = np.concatenate([x[:1], others[1:]])
    patches = [net.encoder.patches(Tensor(batch)) for batch in (x, mixed)]
    codes = [net.encoder.encode_patches(p).asnumpy() for p in patches]
    np.testing.assert_array_equal(codes[0][0], codes[1][0])
    assert np.abs(codes[0][1:] - codes[1][1:]).max() > 0


def test_batch_norm_codes_do_depend_on_the_other_images(ms_cpu):
    """The control of the test above: it can see a batch dependence when there is one."""
    net, hparams = image_net(**dict(COLOR64, norm="batch"))
    net.set_train(True)
    x, others = images(hparams, 4, 0), images(hparams, 4, 1)
    mixed = np.concatenate([x[:1], others[1:]])
    codes = [net.encoder.encode_patches(net.encoder.patches(Tensor(b))).asnumpy() for b in (x, mixed)]
    assert np.abs(codes[0][0] - codes[1][0]).max() > 1e-4


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("groups", [1, 4])
def test_group_norm_is_per_sample_and_group(ms_cpu, channels_last, groups):
    x = np.random.default_rng(0).normal(2, 3, (3, 8, 5, 5)).astype(np.float32)
    y = GroupNorm2d(groups, channels_last)(Tensor(x.transpose(0, 2, 3, 1) if channels_last else x)).asnumpy()
    if channels_last:
        y = y.transpose(0, 3, 1, 2)
    rows = x.reshape(3 * groups, -1).astype(np.float64)
    expected = (rows - rows.mean(1, keepdims=True)) / np.sqrt(rows.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y.reshape(3 * groups, -1), expected, atol=1e-4)


def reference_infonce(predicted, codes, offsets):
    """numpy: every prediction against its true patch and an explicit list of negatives (every other
    patch of the batch, never the true one)."""
    batch, cells, _ = codes.shape
    grid = int(round(cells ** 0.5))
    dim = codes.shape[-1]
    flat = codes.reshape(-1, dim).astype(np.float64)
    pred = predicted.reshape(batch, grid, grid, len(offsets), dim).astype(np.float64)
    losses, hits = [], []
    for index, k in enumerate(offsets):
        for b in range(batch):
            for i in range(grid - k):
                for j in range(grid):
                    true = b * cells + (i + k) * grid + j
                    negatives = np.delete(np.arange(len(flat)), true)
                    score = flat @ pred[b, i, j, index]
                    top = score.max()
                    losses.append(top + np.log(np.exp(score[true] - top) + np.exp(score[negatives] - top).sum())
                                  - score[true])
                    hits.append(score[true] > score[negatives].max())
    return np.mean(losses), np.mean(hits), len(losses)


def test_patch_infonce_never_counts_the_positive_as_a_negative(ms_cpu):
    batch, grid, offsets, dim = 3, 5, (2, 3, 4), 6
    rng = np.random.default_rng(0)
    codes = rng.normal(0, 1, (batch, grid * grid, dim)).astype(np.float32)
    predicted = rng.normal(0, 1, (batch, grid * grid, len(offsets) * dim)).astype(np.float32)
    rows, targets = query_tables(batch, grid, offsets)
    loss, accuracy = patch_infonce(Tensor(predicted), Tensor(codes), Tensor(rows), Tensor(targets))
    expected_loss, expected_accuracy, count = reference_infonce(predicted, codes, offsets)
    assert len(rows) == count == batch * grid * sum(grid - k for k in offsets)
    np.testing.assert_allclose(float(loss.asnumpy()), expected_loss, rtol=1e-5)
    np.testing.assert_allclose(float(accuracy.asnumpy()), expected_accuracy, atol=1e-6)


def test_patch_infonce_stays_finite_when_positives_score_far_below_the_best(ms_cpu):
    """Scores hundreds apart, as a real run's early steps gave: a softmax of them underflows to 0, so
    a loss taken as the log of the softmax would be inf (MindSpore's SparseSoftmaxCrossEntropyWithLogits
    on CPU was)."""
    batch, grid, offsets, dim = 3, 5, (2, 3, 4), 6
    rng = np.random.default_rng(0)
    codes = rng.normal(0, 1, (batch, grid * grid, dim)).astype(np.float32) * 10
    predicted = rng.normal(0, 1, (batch, grid * grid, len(offsets) * dim)).astype(np.float32) * 10
    rows, targets = query_tables(batch, grid, offsets)
    loss, _ = patch_infonce(Tensor(predicted), Tensor(codes), Tensor(rows), Tensor(targets))
    expected_loss = reference_infonce(predicted.astype(np.float64), codes.astype(np.float64), offsets)[0]
    assert expected_loss > 100  # the scores are far apart
    np.testing.assert_allclose(float(loss.asnumpy()), expected_loss, rtol=1e-5)


def test_patch_infonce_is_zero_loss_and_full_accuracy_when_predictions_are_the_targets(ms_cpu):
    batch, grid, offsets, dim = 2, 4, (2, 3), 16
    codes = np.random.default_rng(1).normal(0, 1, (batch, grid * grid, dim)).astype(np.float32) * 10
    predicted = np.zeros((batch, grid, grid, len(offsets), dim), np.float32)
    grid_codes = codes.reshape(batch, grid, grid, dim)
    for index, k in enumerate(offsets):
        predicted[:, :grid - k, :, index] = grid_codes[:, k:]
    rows, targets = query_tables(batch, grid, offsets)
    loss, accuracy = patch_infonce(Tensor(predicted.reshape(batch, grid * grid, -1)), Tensor(codes),
                                   Tensor(rows), Tensor(targets))
    assert float(accuracy.asnumpy()) == 1.0
    assert float(loss.asnumpy()) < 1e-3


@pytest.mark.parametrize("keys", [GREY28, COLOR64], ids=["grey28", "colour64"])
def test_patch_grid_and_contrast_equal_the_data_pipeline(ms_cpu, keys):
    hparams = model_hparams(namespace(**keys))
    x = images(hparams, 2, 0)
    cell = PatchGrid(hparams["image_size"], hparams["patch_size"], hparams["patch_stride"])
    np.testing.assert_array_equal(cell(Tensor(x)).asnumpy(),
                                  cut_patches(x, hparams["patch_size"], hparams["patch_stride"]))
    np.testing.assert_allclose(InputContrast(hparams["image_size"])(Tensor(x)).asnumpy(), input_contrast(x),
                               atol=1e-5)


def test_grids_of_the_two_image_configs():
    from src.config import parse_config
    for path, grid, channels in (("config/cpc_image64_color.yaml", 7, 3), ("config/cpc_image28_gray.yaml", 6, 1)):
        hparams = model_hparams(parse_config(["--config_path", path]))
        patches = cut_patches(np.zeros((1, channels, hparams["image_size"], hparams["image_size"]), np.float32),
                              hparams["patch_size"], hparams["patch_stride"])
        assert patches.shape == (1, grid * grid, channels, hparams["patch_size"], hparams["patch_size"])


def test_jitter_moves_patches_but_keeps_them_inside_the_image():
    size, patch, stride, jitter = 32, 8, 4, 2
    x = np.arange(size * size, dtype=np.float32).reshape(1, 1, size, size)
    plain = cut_patches(x, patch, stride)
    moved = cut_patches(x, patch, stride, np.random.default_rng(0), jitter)
    shift = (moved[..., 0, 0] - plain[..., 0, 0])[0, :, 0]  # top-left pixel: row shift * size + col shift
    rows, cols = np.divmod(shift + jitter * size + jitter, size)
    assert np.all(np.abs(rows - jitter) <= jitter) and np.all(np.abs(cols - jitter) <= jitter)
    assert np.any(shift != 0)
    # every jittered patch is a contiguous window of the image
    np.testing.assert_array_equal(np.diff(moved[0, :, 0], axis=-1), 1)


def test_colour_drop_copies_one_channel_into_all():
    patches = np.random.default_rng(0).normal(0, 1, (4, 9, 3, 5, 5)).astype(np.float32)
    dropped = drop_colour(patches, np.random.default_rng(1), 0.5)
    grey = np.all(dropped[:, :, :1] == dropped, axis=(2, 3, 4))
    untouched = np.all(dropped == patches, axis=(2, 3, 4))
    assert np.all(grey | untouched) and grey.any() and untouched.any()


def test_patch_source_is_a_pure_function_of_seed_split_and_index():
    from src.data.mnist import load_split
    cfg = namespace(**dict(GREY28, batch_size=4, patch_jitter=1))
    train = load_split("", "train")
    kwargs = dict(split="train", seed=0, num_batches=3, batch_size=4, image_size=28, color=False, patch_size=8,
                  patch_stride=4, contrast=False, jitter=cfg.patch_jitter)
    a, b = PatchSource(*train, **kwargs), PatchSource(*train, start=1, **kwargs)
    np.testing.assert_array_equal(a[1][0], b[0][0])
    assert a[0][0].shape == (4, 36, 1, 8, 8) and np.abs(a[0][0] - a[1][0]).max() > 0


@pytest.mark.parametrize("keys, message", [
    (dict(GREY28, min_row_offset=6), "min_row_offset"),
    (dict(GREY28, patch_size=32), "patch_size"),
    (dict(GREY28, patch_size=4, padding="valid"), "patch_size"),
    (dict(GREY28, norm="group", encoder_channels=12), "encoder_channels"),
])
def test_bad_image_configs_name_the_key(keys, message):
    with pytest.raises(ConfigError, match=message):
        namespace(**keys)


def test_sequence_checkpoints_keep_their_hyper_parameters():
    assert "task" not in model_hparams(namespace())
    assert model_hparams(namespace(**SMALL))["task"] == "image"


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
def test_inference_encoder_equals_the_training_cell(ms_cpu, tmp_path):
    """export.py --net encoder's Cell (native convolutions) equals the training form (compiled CPU kernels)."""
    net, hparams = image_net(**COLOR64)
    path = str(tmp_path / "cpc.ckpt")
    checkpoint.save(net, path, {"kind": "cpc", "hparams": hparams})
    params, meta = checkpoint.load(path)
    exported = build_inference_net("encoder", hparams, params, meta, path)
    x = images(hparams, 3, 0)
    net.set_train(False)
    want = net.encoder(Tensor(x)).asnumpy()
    assert want.shape == (3, feature_size(hparams))
    np.testing.assert_allclose(exported(Tensor(x)).asnumpy(), want, atol=1e-5)


def test_region_pooling_spans_the_grid():
    codes = np.random.default_rng(0).normal(0, 1, (7 * 7, 4))
    np.testing.assert_allclose(region_pooling(7, 1) @ codes, codes.mean(0, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(region_pooling(7, 7) @ codes, codes, atol=1e-6)
    table = region_pooling(7, 3)
    np.testing.assert_allclose(table.sum(1), 1, atol=1e-6)  # each region is a mean
    assert np.all(table.reshape(9, 7, 7).max(0) > 0)        # every patch is in some region


def one_direction_loss(net, batch):
    """The one-direction loss cell as it was before `directions`: top-down context and predictor only."""
    from mindspore import nn

    from src.model.patch_loss import patch_infonce, query_tables

    class Before(nn.Cell):
        def __init__(self):
            super().__init__(auto_prefix=False)
            self.net = net
            rows, targets = query_tables(batch, net.grid, net.offsets)
            self.rows, self.targets = Tensor(rows), Tensor(targets)

        def construct(self, patches):
            z = self.net.encoder.encode_patches(patches)
            return patch_infonce(self.net.predictor(self.net.context(z)), z, self.rows, self.targets)[0]

    return Before()


def grid_patches(hparams, count, seed):
    from src.model.image_cpc import PatchGrid
    grid = PatchGrid(hparams["image_size"], hparams["patch_size"], hparams["patch_stride"])
    return grid(Tensor(images(hparams, count, seed)))


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
def test_one_direction_is_the_model_before_directions(ms_cpu):
    from src.model.patch_loss import PatchInfoNCEWithLoss
    net, hparams = image_net(**GREY28)
    assert hparams["directions"] == 1
    names = [p.name for p in net.trainable_params()]
    assert {name.split(".")[0] for name in names} == {"encoder", "context", "predictor"}
    assert "context.first.dense.weight" in names and "predictor.weight" in names
    net.set_train(True)
    patches = grid_patches(hparams, 2, 0)
    now = PatchInfoNCEWithLoss(net, net.grid, net.offsets, 2)(patches).asnumpy()
    before = one_direction_loss(net, 2)(patches).asnumpy()
    assert now.tobytes() == before.tobytes()  # bit for bit


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
def test_four_directions_have_their_own_context_and_predictor(ms_cpu):
    from src.model.patch_loss import PatchInfoNCE
    net, hparams = image_net(**dict(GREY28, directions=4))
    one, _ = image_net(**GREY28)
    names = {p.name for p in net.trainable_params()}
    assert {p.name for p in one.trainable_params()} <= names  # a one-direction checkpoint's names all fit
    assert len(net.extra_contexts) == len(net.extra_predictors) == 3
    assert {f"extra_contexts.{i}.first.dense.weight" for i in range(3)} <= names
    assert {f"extra_predictors.{i}.weight" for i in range(3)} <= names
    net.set_train(True)
    batch = 2
    loss, accuracy = PatchInfoNCE(net, net.grid, net.offsets, batch)(grid_patches(hparams, batch, 0))
    loss = float(loss.asnumpy())
    assert np.isfinite(loss) and abs(loss - np.log(batch * net.grid ** 2)) < 1.0  # chance at init
    assert 0 <= float(accuracy.asnumpy()) <= 1


def test_direction_orders_are_the_four_reading_directions():
    from src.model.image_cpc import direction_order
    grid = 3
    index = np.arange(grid * grid).reshape(grid, grid)
    first_rows = [index.reshape(-1)[direction_order(grid, d)].reshape(grid, grid)[0] for d in range(4)]
    np.testing.assert_array_equal(first_rows[0], index[0])            # top row first
    np.testing.assert_array_equal(first_rows[1], index[-1])           # bottom row first
    np.testing.assert_array_equal(first_rows[2], index[:, 0])         # left column first
    np.testing.assert_array_equal(first_rows[3], index[:, -1])        # right column first
    for d in range(4):
        assert sorted(direction_order(grid, d)) == list(range(grid * grid))  # a permutation


def direction_context(net, z, d):
    """Direction d's context [B, G, G, H] in its own order, of row-major codes z (inference mode)."""
    net.set_train(False)
    context = net.direction_context(net.direction_codes(Tensor(z), d), d)
    return context.asnumpy().reshape(len(z), net.grid, net.grid, -1)


@pytest.mark.parametrize("d", [0, 1, 2, 3])
@pytest.mark.parametrize("row", [1, 3])
def test_each_directions_context_never_sees_what_comes_after(ms_cpu, d, row):
    from src.model.image_cpc import direction_order
    net, hparams = image_net(**dict(GREY28, directions=4))
    grid, size = net.grid, hparams["code_size"]
    rng = np.random.default_rng(d)
    z = rng.normal(0, 1, (2, grid * grid, size)).astype(np.float32)
    order = direction_order(grid, d).reshape(grid, grid)  # row-major position at each place of d's grid
    later = z.copy()
    later[:, order[row:].reshape(-1)] = rng.normal(0, 1, (2, (grid - row) * grid, size))
    before, after = direction_context(net, z, d), direction_context(net, later, d)
    np.testing.assert_array_equal(after[:, :row], before[:, :row])   # what comes before: exactly unchanged
    assert np.abs(after[:, row:] - before[:, row:]).max() > 0
    earlier = z.copy()
    earlier[:, order[row - 1, 2]] += 1.0  # one code of the row before: the next row's context reads it
    assert np.abs(direction_context(net, earlier, d)[:, row, 2] - before[:, row, 2]).max() > 0


@pytest.mark.parametrize("value", [0, 3, 5])
def test_bad_directions_is_refused_naming_the_key(value):
    with pytest.raises(ConfigError, match="directions") as error:
        namespace(**dict(GREY28, directions=value))
    assert "\n" not in str(error.value)


def test_image_checkpoints_without_directions_predicted_top_down():
    from src.config import stored_hparams
    old = {k: v for k, v in model_hparams(namespace(**dict(GREY28, directions=4))).items() if k != "directions"}
    assert stored_hparams(old)["directions"] == 1
    assert "directions" not in stored_hparams(model_hparams(namespace()))  # sequence checkpoints: unchanged


def test_an_old_image_checkpoint_builds_its_one_direction_net():
    cfg = namespace(**dict(GREY28, directions=4))
    old = {k: v for k, v in model_hparams(namespace(**GREY28)).items() if k != "directions"}
    checkpoint.apply_hparams(cfg, {"hparams": old}, "old.ckpt")
    assert cfg.directions == 1


@pytest.mark.slow  # compiles graphs for seconds: kept out of the fast tier
def test_image_encoders_are_encoded_in_smaller_calls_with_the_same_codes(ms_cpu):
    """encode() gives an image-task encoder IMAGE_ENCODE_BATCH images per call (each is G*G patch
    encodings: 500 images took 6.9 GB on CPU); its codes equal one image at a time's to rounding;
    sequence encoders and heads on codes keep ENCODE_BATCH."""
    net, hparams = image_net(**GREY28)
    assert images_per_call(net.encoder) == IMAGE_ENCODE_BATCH < ENCODE_BATCH
    assert images_per_call(Classifier(net.encoder, DigitHead(8 * 9, "linear"))) == IMAGE_ENCODE_BATCH
    assert images_per_call(DigitHead(8, "linear")) == ENCODE_BATCH
    assert images_per_call(build_cpc(model_hparams(namespace()), "cpu").encoder) == ENCODE_BATCH
    x = images(hparams, IMAGE_ENCODE_BATCH + 3, 0)
    codes = encode(net.encoder, x)
    alone = np.concatenate([net.encoder(Tensor(x[i:i + 1])).asnumpy() for i in (0, IMAGE_ENCODE_BATCH + 2)])
    assert codes.shape == (IMAGE_ENCODE_BATCH + 3, 8 * 9)
    np.testing.assert_allclose(codes[[0, -1]], alone, atol=1e-5)


def test_exportable_rsqrt_is_rsqrt_bit_for_bit(ms_cpu):
    """The group/layer norm's inverse square root (written as 1 / sqrt for the ONNX exporter) gives
    ops.rsqrt's values and, through its own backward, ops.rsqrt's gradient, bit for bit."""
    import mindspore as ms
    from mindspore import nn, ops

    from src.model.image_cpc import Rsqrt

    class Weighted(nn.Cell):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def construct(self, x, w):
            return (self.fn(x) * w).sum()

    rng = np.random.default_rng(0)
    x = Tensor(np.concatenate([rng.uniform(1e-5, 10, 5000), rng.lognormal(0, 5, 5000)]).astype(np.float32))
    w = Tensor(rng.standard_normal(10000).astype(np.float32))
    ours, theirs = Weighted(Rsqrt()), Weighted(ops.Rsqrt())
    np.testing.assert_array_equal(Rsqrt()(x).asnumpy(), ops.rsqrt(x).asnumpy())
    np.testing.assert_array_equal(ms.grad(ours)(x, w).asnumpy(), ms.grad(theirs)(x, w).asnumpy())
