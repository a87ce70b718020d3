"""Time-series classifiers (FCN, ResNet, InceptionTime) and the .ts reader."""
import math
from importlib.util import find_spec

import pytest
import torch

from convnet import create_model, model_info
from convnet.data import DataFormatError
from convnet.data.timeseries import AEON_SETS, load_aeon, read_ts, znormalize
from convnet.models.timeseries import SoftmaxEnsemble

needs_aeon = pytest.mark.skipif(find_spec("aeon") is None, reason="aeon not installed (pip install --no-deps aeon)")


def _count(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _bn(c):
    return 2 * c  # weight and bias (running statistics are buffers)


def _conv(cin, cout, k, bias=True):
    return cin * cout * k + (cout if bias else 0)


# --- models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channels, classes", [(1, 2), (6, 4)])
def test_fcn_count_from_the_layer_list(channels, classes):
    """Wang et al. Fig. 1(b): conv 8/128, 5/256, 3/128 (bias, as dl-4-tsc's Keras), BN each, dense."""
    expected = (_conv(channels, 128, 8) + _bn(128) + _conv(128, 256, 5) + _bn(256) + _conv(256, 128, 3) + _bn(128)
                + 128 * classes + classes)
    with torch.device("meta"):
        model = create_model("tsc_fcn", in_channels=channels, num_classes=classes)
    assert _count(model) == expected
    if (channels, classes) == (1, 2):
        assert expected == 264_962 == model_info("tsc_fcn")["params"]


@pytest.mark.parametrize("channels, classes", [(1, 2), (6, 4)])
def test_resnet_count_from_the_layer_list(channels, classes):
    """Three blocks of 64, 128, 128 filters (kernels 8, 5, 3); shortcut 1x1 conv + BN where the width
    changes (blocks 1 and 2), BN alone in block 3 (dl-4-tsc's resnet.py)."""
    def block(cin, w, project):
        body = _conv(cin, w, 8) + _conv(w, w, 5) + _conv(w, w, 3) + 3 * _bn(w)
        return body + (_conv(cin, w, 1) if project else 0) + _bn(w)

    expected = block(channels, 64, True) + block(64, 128, True) + block(128, 128, False) + 128 * classes + classes
    with torch.device("meta"):
        model = create_model("tsc_resnet", in_channels=channels, num_classes=classes)
    assert _count(model) == expected
    if (channels, classes) == (1, 2):
        assert expected == 504_258 == model_info("tsc_resnet")["params"]


@pytest.mark.parametrize("channels, classes", [(1, 2), (6, 4), (12, 9)])
def test_inception_time_count_from_the_layer_list(channels, classes):
    """Six modules (32 filters, kernels 40/20/10, bottleneck 32 except on a 1-channel input, max pool
    + 1x1), shortcuts (1x1 conv + BN) after modules 3 and 6; no conv bias (hfawaz/InceptionTime)."""
    def module(cin):
        bottleneck = cin * 32 if cin > 1 else 0
        mid = 32 if cin > 1 else cin
        return bottleneck + sum(_conv(mid, 32, k, False) for k in (40, 20, 10)) + _conv(cin, 32, 1, False) + _bn(128)

    expected = (module(channels) + 5 * module(128) + _conv(channels, 128, 1, False) + _bn(128)
                + _conv(128, 128, 1, False) + _bn(128) + 128 * classes + classes)
    with torch.device("meta"):
        model = create_model("inception_time", in_channels=channels, num_classes=classes)
    assert _count(model) == expected
    if (channels, classes) == (1, 2):
        assert expected == 420_450 == model_info("inception_time")["params"]


def test_default_is_one_dimensional_and_any_length_works():
    for name in ("tsc_fcn", "tsc_resnet", "inception_time"):
        model = create_model(name, **{"tsc_fcn": {"widths": (8, 8, 8)}, "tsc_resnet": {"widths": (4, 8, 8)},
                                      "inception_time": {"filters": 4, "bottleneck": 4}}[name]).eval()
        assert model.spatial_dims == 1 and model.default_cfg["input_size"] == (1, 150)
        for length in (24, 37):  # ItalyPowerDemand's 24; an odd length with even kernels
            feats = model.forward_features(torch.randn(3, 1, length))
            assert feats.shape[-1] == length  # "same" padding, no stride
            assert model(torch.randn(3, 1, length)).shape == (3, 2)


def test_even_kernels_pad_like_tensorflow():
    """Keras' "same" with kernel 8 pads 3 before and 4 after: the output at t sees t-3 .. t+4."""
    model = create_model("tsc_fcn", widths=(1, 1, 1), kernels=(8, 1, 1)).eval()
    conv = model.stages[0].blocks[0].conv
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.zeros(1, 1, 20, requires_grad=True)
    conv(x)[0, 0, 10].backward()
    assert x.grad[0, 0].nonzero().flatten().tolist() == list(range(7, 15))


def test_inception_module_skips_the_bottleneck_on_one_channel():
    model = create_model("inception_time")
    first, second = model.stages[0].blocks[0], model.stages[0].blocks[1]
    assert isinstance(first.bottleneck, torch.nn.Identity) and first.branches[0].in_channels == 1
    assert second.bottleneck.out_channels == 32 and [b.kernel_size[0] for b in second.branches] == [40, 20, 10]
    assert model.stages[0].shortcut is not None and model.stages[1].shortcut is not None


def test_residual_every_three_modules():
    model = create_model("inception_time", depth=7, filters=4, bottleneck=4).eval()
    assert [len(s.blocks) for s in model.stages] == [3, 3, 1]
    assert [s.shortcut is None for s in model.stages] == [False, False, True]
    # The shortcut is really added: zeroing its BN changes nothing, doubling it changes the output.
    x = torch.randn(2, 1, 30)
    y = model(x)
    with torch.no_grad():
        model.stages[0].shortcut.norm.bias.add_(1.0)
    assert not torch.allclose(model(x), y)


def test_softmax_ensemble_averages_probabilities():
    members = [create_model("tsc_fcn", widths=(4, 4, 4), num_classes=3).eval() for _ in range(5)]
    ensemble = SoftmaxEnsemble(members).eval()
    x = torch.randn(4, 1, 40)
    with torch.no_grad():
        expected = torch.stack([m(x).softmax(-1) for m in members]).mean(0)
        out = ensemble(x)
    torch.testing.assert_close(out.softmax(-1), expected)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(4))
    assert torch.equal(out.argmax(-1), expected.argmax(-1))
    with pytest.raises(ValueError, match="at least one"):
        SoftmaxEnsemble([])


# --- the .ts reader -------------------------------------------------------------------------

UNIVARIATE = """# a comment
@problemName Toy
@timeStamps false
@missing true
@univariate true
@equalLength true
@seriesLength 4
@classLabel true a b
@data
1,2,3,4:a
4,3,?,1:b
0,0,0,0:a
"""

MULTIVARIATE = """@problemName Multi
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true 1 2 3
@data
1,2,3:4,5,6:3
7,8:9,10:1
"""


def _write(tmp_path, text, name="x.ts"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_univariate_with_missing_values(tmp_path):
    data = read_ts(_write(tmp_path, UNIVARIATE))
    assert data.series.shape == (3, 1, 4) and data.classes == ("a", "b")
    assert data.labels.tolist() == [0, 1, 0] and data.lengths.tolist() == [4, 4, 4]
    assert data.series[0, 0].tolist() == [1, 2, 3, 4]
    assert math.isnan(data.series[1, 0, 2]) and data.series[1, 0, 3] == 1
    assert data.meta["problemname"] == "Toy" and data.meta["missing"] is True
    sample = data[1]
    assert sample["target"] == 1 and sample["input"].shape == (1, 4) and sample["length"] == 4


def test_reads_multivariate_variable_length_padded_with_lengths(tmp_path):
    data = read_ts(_write(tmp_path, MULTIVARIATE))
    assert data.series.shape == (2, 2, 3) and data.num_channels == 2
    assert data.lengths.tolist() == [3, 2] and data.labels.tolist() == [2, 0]
    assert data.series[1].tolist() == [[7, 8, 0], [9, 10, 0]]  # padded with zeros after the length
    assert data.mask.tolist() == [[True, True, True], [True, True, False]]
    assert data[1]["input"].tolist() == [[7, 8], [9, 10]]  # a case comes back unpadded


def test_znormalize_per_case_and_channel_ignoring_missing_and_padding(tmp_path):
    data = read_ts(_write(tmp_path, UNIVARIATE)).znormalized()
    row = data.series[0, 0]
    torch.testing.assert_close(row, (torch.tensor([1., 2, 3, 4]) - 2.5) / torch.tensor([1., 2, 3, 4]).std(unbiased=False))
    observed = torch.tensor([4., 3, 1])
    torch.testing.assert_close(data.series[1, 0, [0, 1, 3]], (observed - observed.mean()) / observed.std(unbiased=False))
    assert data.series[1, 0, 2] == 0  # the missing value becomes the mean
    assert data.series[2].abs().sum() == 0  # a constant series becomes zeros, not NaN
    multi = read_ts(_write(tmp_path, MULTIVARIATE)).znormalized()
    assert multi.series[1, :, 2].tolist() == [0, 0]  # padding stays 0
    torch.testing.assert_close(multi.series[1, :, :2], torch.tensor([[-1., 1], [-1, 1]]))
    single = znormalize(torch.tensor([[1.0, 3.0]]))
    torch.testing.assert_close(single, torch.tensor([[-1.0, 1.0]]))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("1,2,3,4:a", "1,2,x,4:a"), r"x\.ts:10: dimension 0: expected a number or '\?', got 'x'"),
    (lambda t: t.replace("1,2,3,4:a", "1,2,3,4:c"), r"x\.ts:10: class label 'c' is not one of"),
    (lambda t: t.replace("1,2,3,4:a", "1,2,3:a"), r"x\.ts:10: expected @seriesLength 4 values, got 3"),
    (lambda t: t.replace("1,2,3,4:a", "1,2,3,4:1,2,3,4:a"), r"x\.ts:10: expected 1 dimension\(s\) separated by ':', got 2"),
    (lambda t: t.replace("1,2,3,4:a", "1,2,3,4"), r"x\.ts:10: expected the case's values then ':label'"),
    (lambda t: t.replace("@data\n", ""), r"x\.ts:9: expected a @tag line or @data before the data, got '1,2,3,4:a'"),
    (lambda t: t.split("@data")[0], r"x\.ts: no @data line"),
    (lambda t: t.replace("@timeStamps false", "@timeStamps true"), r"@timeStamps true is not supported"),
    (lambda t: t.replace("@univariate true", "@univariate maybe"), r"x\.ts:5: @univariate must be true or false"),
    (lambda t: t.replace("@seriesLength 4", "@seriesLength four"), r"x\.ts:7: @seriesLength must be a positive integer"),
    (lambda t: t.replace("@classLabel true a b", "@classLabel true a a"), r"x\.ts:8: @classLabel lists a label twice"),
    (lambda t: t.split("@data")[0] + "@data\n", r"x\.ts: no cases after @data"),
    (lambda t: t.replace("@problemName Toy", "problemName Toy"), r"x\.ts:2: expected a @tag line"),
])
def test_malformed_files_name_file_and_line(tmp_path, edit, message):
    with pytest.raises(DataFormatError, match=message):
        read_ts(_write(tmp_path, edit(UNIVARIATE)))


def test_ragged_dimensions_are_refused(tmp_path):
    text = MULTIVARIATE.replace("7,8:9,10:1", "7,8:1")
    with pytest.raises(DataFormatError, match=r"x\.ts:10: expected 2 dimension\(s\)"):
        read_ts(_write(tmp_path, text))
    equal = MULTIVARIATE.replace("@equalLength false", "@equalLength true")
    with pytest.raises(DataFormatError, match=r"x\.ts:10: @equalLength true but this case has 2 values"):
        read_ts(_write(tmp_path, equal))


def test_unlabelled_file_and_missing_set(tmp_path):
    text = UNIVARIATE.replace("@classLabel true a b", "@classLabel false").replace(":a", "").replace(":b", "")
    data = read_ts(_write(tmp_path, text))
    assert data.labels is None and data.classes == () and "target" not in data[0]
    (tmp_path / "Toy").mkdir()
    _write(tmp_path / "Toy", UNIVARIATE, "Toy_TRAIN.ts")
    assert len(load_aeon("Toy", "train", root=tmp_path)) == 3
    with pytest.raises(FileNotFoundError, match="Toy_TEST.ts: no such file; sets under .*: Toy"):
        load_aeon("Toy", "test", root=tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        load_aeon("Toy", "val", root=tmp_path)


@needs_aeon
@pytest.mark.parametrize("name", list(AEON_SETS))
def test_aeon_sets_have_their_published_sizes(name):
    """Case counts, channels, lengths and classes of the archive (tasks-facts.md; UCR/UEA pages)."""
    n_train, n_test, channels, length, classes = AEON_SETS[name]
    train, test = load_aeon(name, "train"), load_aeon(name, "test")
    assert (len(train), len(test)) == (n_train, n_test)
    assert train.num_channels == test.num_channels == channels
    assert len(train.classes) == classes and train.classes == test.classes
    assert set(train.labels.tolist()) == set(range(classes))
    if length is not None:
        assert set(train.lengths.tolist()) == set(test.lengths.tolist()) == {length}
    else:  # JapaneseVowels: 7 to 29 frames
        assert train.lengths.min() < train.lengths.max() and int(train.lengths.max()) <= 29
    assert not torch.isnan(train.series).any()


@needs_aeon
def test_gunpoint_through_inception_time():
    train = load_aeon("GunPoint", "train").znormalized()
    model = create_model("inception_time", filters=4, bottleneck=4, kernels=(9, 5, 3)).eval()
    with torch.no_grad():
        assert model(train.series[:4]).shape == (4, 2)
