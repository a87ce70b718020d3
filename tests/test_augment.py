"""Batch augmentation (convnet.data.augment): each technique's defining property, checked against
an independent computation (a formula from its paper, a hand computation, the standard library's
colorsys, or torchvision's functional ops as an oracle)."""
from __future__ import annotations

import colorsys
import itertools

import pytest
import torch
import torch.nn.functional as F
from oracle import DEVICES, _import

from convnet.data import augment as A
from convnet.train.config import AugmentConfig


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=gen(seed + 1000))


SHAPES = {1: (40,), 2: (12, 10), 3: (8, 7, 6)}


# ---------------------------------------------------------------------------------- geometry

@pytest.mark.parametrize("dims", [1, 2, 3])
def test_flip_is_an_exact_flip_per_axis(dims):
    x = rand(64, 2, *SHAPES[dims])
    for axis in range(dims):
        assert torch.equal(A.flip(x, axis, 1.0, gen()), x.flip(2 + axis))
        assert torch.equal(A.flip(x, axis, 0.0, gen()), x)
        out = A.flip(x, axis, 0.5, gen(axis))
        flipped = [torch.equal(o, f) for o, f in zip(out, x.flip(2 + axis))]
        kept = [torch.equal(o, i) for o, i in zip(out, x)]
        assert all(a or b for a, b in zip(flipped, kept))  # each sample one or the other, exactly
        assert 10 < sum(flipped) < 54 and 10 < sum(kept) < 54  # both happen at p = 1/2
    assert torch.equal(A.hflip(x, 1.0, gen()), x.flip(-1))
    if dims > 1:
        assert torch.equal(A.vflip(x, 1.0, gen()), x.flip(-2))
    else:
        with pytest.raises(ValueError, match="vertical"):
            A.vflip(x, 1.0, gen())


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_pad_crop_is_a_shifted_window_of_the_padded_input(dims):
    pad, fill = 2, (-1.0, 5.0)
    x = rand(24, 2, *SHAPES[dims])
    out = A.pad_crop(x, pad, gen(), fill=fill)
    assert out.shape == x.shape
    # The padded canvas, built independently: per-channel fill, input in the middle.
    canvas = torch.tensor(fill).view(1, 2, *([1] * dims)).repeat(24, 1, *[s + 2 * pad for s in SHAPES[dims]])
    canvas[(slice(None), slice(None)) + tuple(slice(pad, pad + s) for s in SHAPES[dims])] = x
    def window(off: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(slice(o, o + s) for o, s in zip(off, SHAPES[dims]))

    offsets = []
    for i in range(24):
        hits = [off for off in itertools.product(range(2 * pad + 1), repeat=dims)
                if torch.equal(out[i], canvas[i][(slice(None),) + window(off)])]
        assert hits, f"sample {i} is not a window of the padded input"
        offsets.append(hits[0])
    assert len(set(offsets)) > 3  # offsets vary per sample
    assert torch.equal(A.pad_crop(x, 0, gen()), x)


def crop_fractions(out: torch.Tensor) -> torch.Tensor:
    """Side fractions (B, dims) of the crops that produced ``out`` from coordinate ramps of 16
    pixels per axis (channel d = coordinate on axis d): the output's slope along each axis."""
    b, dims = out.shape[0], out.ndim - 2
    steps = torch.arange(16.0) - 7
    fracs = []
    for d in range(dims):
        c = out[:, d].movedim(1 + d, -1).reshape(b, -1, 16)
        assert torch.allclose(c, c[:, :1].expand_as(c), atol=1e-4)  # coordinate d only varies along axis d
        line = c[:, 0]
        slope = line[:, 8] - line[:, 7]  # the middle pixels never touch the border clamp
        predicted = line[:, 7:8] + slope[:, None] * steps
        inside = (predicted > 1e-3) & (predicted < 15 - 1e-3)
        assert torch.allclose(line[inside], predicted[inside], atol=1e-3)  # a crop resized, not warped
        assert (line[:, 7] - 7.5 * slope > -0.5 - 1e-3).all()  # the box's edges lie inside the image
        assert (line[:, 7] + 8.5 * slope < 15.5 + 1e-3).all()
        fracs.append(slope)
    return torch.stack(fracs, 1)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_random_resized_crop_area_and_aspect_ratio(dims):
    """The crop's area is the product of its side fractions (Szegedy et al. 2015: 8%..100% of
    the area, aspect ratio 3/4..4/3)."""
    size = (16,) * dims
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in size], indexing="ij")
    x = torch.stack(grids).unsqueeze(0).repeat(200, 1, *([1] * dims))
    frac = crop_fractions(A.random_resized_crop(x, 0.08, gen()))
    area = frac.prod(1)
    assert (area > 0.08 - 1e-4).all() and (area < 1 + 1e-4).all() and (frac < 1 + 1e-4).all()
    assert area.min() < 0.3 and area.max() > 0.8  # spread over the range
    fixed = crop_fractions(A.random_resized_crop(x, 0.25, gen(1), max_area=0.25))
    assert torch.allclose(fixed.prod(1), torch.full((200,), 0.25), atol=1e-3)  # the area drawn is the area cut
    if dims == 2:
        ratio = frac[:, 1] / frac[:, 0]  # width / height, where no side was cut to the image
        free = (frac < 0.999).all(1)
        assert free.sum() > 100 and (ratio[free] > 0.75 - 1e-3).all() and (ratio[free] < 4 / 3 + 1e-3).all()
        ratio = fixed[:, 1] / fixed[:, 0]
        assert ratio.min() < 0.85 and ratio.max() > 1.2
    same = A.random_resized_crop(x, 1.0, gen(), ratio=(1.0, 1.0))  # the whole image: identity
    assert torch.allclose(same, x, atol=1e-4)


# ---------------------------------------------------------------------------------- colour

def test_color_jitter_identity_at_zero_and_brightness_range():
    x = rand(32, 3, 6, 6) * 0.5
    assert torch.equal(A.color_jitter(x, 0, 0, 0, 0, gen()), x)
    out = A.color_jitter(x, 0.4, 0, 0, 0, gen())
    ratio = out / x  # brightness multiplies every pixel of a sample by one factor (no clamping below 0.5 * 1.4)
    factor = ratio.flatten(1)[:, 0]
    assert torch.allclose(ratio, factor.view(-1, 1, 1, 1).expand_as(ratio), rtol=1e-5)
    assert (factor >= 0.6 - 1e-6).all() and (factor <= 1.4 + 1e-6).all() and factor.std() > 0.1


def test_contrast_and_saturation_are_blends_with_grey():
    """PIL's ImageEnhance: contrast blends with the mean luma, saturation with the luma image."""
    x = rand(4, 3, 5, 5) * 0.6 + 0.2
    luma = 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    f = 0.7
    expected = (f * x + (1 - f) * luma.mean(dim=(1, 2)).view(-1, 1, 1, 1)).clamp(0, 1)
    assert torch.allclose(A.apply_op(x, "contrast", f - 1), expected, atol=1e-6)
    expected = (f * x + (1 - f) * luma.unsqueeze(1)).clamp(0, 1)
    assert torch.allclose(A.apply_op(x, "color", f - 1), expected, atol=1e-6)


def test_hue_shift_matches_colorsys():
    x = rand(2, 3, 4, 4)
    shift = torch.tensor([0.25, -0.4])
    out = A.adjust_hue(x, shift)
    for b in range(2):
        for i, j in itertools.product(range(4), range(4)):
            h, s, v = colorsys.rgb_to_hsv(*x[b, :, i, j].tolist())
            expected = colorsys.hsv_to_rgb((h + float(shift[b])) % 1.0, s, v)
            assert torch.allclose(out[b, :, i, j], torch.tensor(expected), atol=1e-5)
    grey = rand(2, 1, 4, 4)
    assert torch.equal(A.adjust_hue(grey, 0.3), grey)


def test_pca_lighting_moves_pixels_along_the_eigenvectors():
    """AlexNet §4.1: a sample's pixels all move by sum_i alpha_i lambda_i p_i, alpha_i ~ N(0, 0.1)."""
    x = rand(4000, 3, 2, 2)
    out = A.pca_lighting(x, 0.1, None, None, gen())
    delta = out - x
    assert torch.allclose(delta, delta[..., :1, :1].expand_as(delta), atol=1e-6)  # one shift per sample
    vec = torch.tensor(A.IMAGENET_PCA_EIGVEC)
    val = torch.tensor(A.IMAGENET_PCA_EIGVAL)
    assert torch.allclose(vec.T @ vec, torch.eye(3), atol=2e-3)  # the constants are orthonormal columns
    alpha = (delta[:, :, 0, 0] @ vec) / val  # coordinates in the eigenbasis / eigenvalues
    assert alpha.mean(0).abs().max() < 0.01
    assert ((alpha.std(0) - 0.1).abs() < 0.006).all()
    assert torch.corrcoef(alpha.T).sub(torch.eye(3)).abs().max() < 0.1  # independent components
    # A single non-zero eigenvalue: every shift is parallel to that eigenvector.
    rot = torch.linalg.qr(torch.randn(3, 3, generator=gen(3)))[0]
    d = (A.pca_lighting(x[:50], 0.1, [1.0, 0.0, 0.0], rot, gen()) - x[:50])[:, :, 0, 0]
    assert torch.linalg.cross(d, rot[:, 0].expand_as(d)).abs().max() < 1e-6 and d.norm(dim=1).min() > 0
    assert torch.equal(A.pca_lighting(x, 0.0, None, None, gen()), x)


def test_pca_lighting_one_channel_uses_the_pixel_variance():
    x = rand(3000, 1, 3, 3)
    var = float(((x - x.mean()) ** 2).sum() / (x.numel() - 1))
    delta = (A.pca_lighting(x, 0.1, None, None, gen()) - x).flatten(1)
    assert torch.allclose(delta, delta[:, :1].expand_as(delta), atol=1e-7)
    assert abs(float((delta[:, 0] / var).std()) - 0.1) < 0.006
    with pytest.raises(ValueError, match="1 or 3 channels"):
        A.pca_lighting(rand(2, 2, 3, 3), 0.1, None, None, gen())


# ---------------------------------------------------------------------------------- erasing, mixing

@pytest.mark.parametrize("dims,size", [(1, (300,)), (2, (40, 36)), (3, (16, 14, 12))])
def test_random_erasing_erases_one_box_within_the_area_range(dims, size):
    lo, hi = 0.05, 0.3
    x = rand(64, 2, *size)
    out = A.random_erasing(x, 0.5, (lo, hi), gen(), value=7.0)
    erased = 0
    for i in range(64):
        mask = (out[i] == 7.0)
        assert torch.equal(out[i][~mask], x[i][~mask])
        assert torch.equal(mask[0], mask[1])  # all channels of the box
        if not mask.any():
            continue
        erased += 1
        idx = mask[0].nonzero()
        length = idx.max(0).values - idx.min(0).values + 1
        assert mask[0].sum() == length.prod()  # a filled axis-aligned box
        # Side lengths are the drawn side fractions rounded to whole pixels (+-0.5).
        s = torch.tensor(size, dtype=torch.float64)
        assert float(((length + 0.5) / s).prod()) >= lo and float(((length - 0.5).clamp(min=0) / s).prod()) <= hi
    assert 15 < erased < 49
    assert torch.equal(A.random_erasing(x, 0.0, (lo, hi), gen()), x)
    noisy = A.random_erasing(x, 1.0, (lo, hi), gen(), value=None)
    assert ((noisy != x).flatten(1).float().mean(1) >= lo * 0.5).all()


def onehot_images(y: torch.Tensor, k: int, size: tuple[int, ...]) -> torch.Tensor:
    """Images whose channel c is 1 where the class is c: pixel mass per class = label mass."""
    return F.one_hot(y, k).float().view(len(y), k, *([1] * len(size))).expand(-1, -1, *size).clone()


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_mixup_label_mass_equals_pixel_mass(dims):
    k, y = 6, torch.tensor([0, 1, 2, 3, 4, 5, 0, 2])
    x = onehot_images(y, k, SHAPES[dims])
    out, t = A.mixup(x, y, 0.4, k, gen())
    assert t.shape == (8, k) and t.dtype == torch.float32
    assert torch.allclose(t.sum(1), torch.ones(8))
    assert torch.allclose(out.mean(dim=tuple(range(2, 2 + dims))), t, atol=1e-6)
    lam = float(out[0, y[0]].flatten()[0])  # sample 0 pairs with the last (class 2)
    assert 0 <= lam <= 1 and torch.allclose(t[0, [0, 2]], torch.tensor([lam, 1 - lam]), atol=1e-6)
    assert torch.allclose(out, lam * x + (1 - lam) * x.flip(0), atol=1e-6)  # one lam for the batch


@pytest.mark.parametrize("dims,size", [(1, (200,)), (2, (32, 24)), (3, (12, 10, 8))])
def test_cutmix_label_weight_is_the_pasted_area(dims, size):
    """Yun et al. 2019 §3.1: the label weight of the partner equals the share of its pixels."""
    y = torch.arange(8)
    x = onehot_images(y, 8, size)
    for seed in range(6):
        out, t = A.cutmix(x, y, 1.0, 8, gen(seed))
        assert torch.allclose(t.sum(1), torch.ones(8))
        own = out[torch.arange(8), y]  # 1 where the sample kept its own pixels
        partner = out[torch.arange(8), y.flip(0)]
        assert torch.equal(own + partner, torch.ones_like(own))  # every pixel from one of the two
        area = partner.flatten(1).mean(1)
        assert torch.allclose(t[torch.arange(8), y.flip(0)], area, atol=1e-6)
        assert torch.allclose(t[torch.arange(8), y], 1 - area, atol=1e-6)
        box = partner[0].bool()
        if box.any():  # the pasted region is one axis-aligned box, the same for all samples
            idx = box.nonzero()
            assert box.sum() == (idx.max(0).values - idx.min(0).values + 1).prod()
            assert torch.equal(partner, partner[:1].expand_as(partner))


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.0])
def test_sample_beta_moments(alpha):
    """Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))."""
    s = A.sample_beta(alpha, gen(), 20000)
    assert ((s >= 0) & (s <= 1)).all()
    assert abs(float(s.mean()) - 0.5) < 0.01
    assert abs(float(s.var()) / (1 / (4 * (2 * alpha + 1))) - 1) < 0.05
    assert torch.equal(A.sample_beta(alpha, gen(), 5), A.sample_beta(alpha, gen(), 5))


# ---------------------------------------------------------------------------------- policies

# RandAugment's magnitude at M on 0..30 (Cubuk et al. 2020; ranges of torchvision's autoaugment.py),
# written out by hand for M = 9 on a 32x32 image.
# Translation: int(150 / 331 * 32 * 9 / 30) = 4 pixels.
RA_M9 = {"identity": 0.0, "shear_x": 0.09, "shear_y": 0.09, "translate_x": 4.0, "translate_y": 4.0,
         "rotate": 9.0, "brightness": 0.27, "color": 0.27, "contrast": 0.27, "sharpness": 0.27,
         "posterize": 7.0, "solarize": 178.5, "autocontrast": 0.0, "equalize": 0.0}


def replay(x: torch.Tensor, ops: list[list[tuple[str, float]]]) -> torch.Tensor:
    out = []
    for i, seq in enumerate(ops):
        xi = x[i:i + 1]
        for name, m in seq:
            xi = A.apply_op(xi, name, m)
        out.append(xi)
    return torch.cat(out)


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_rand_augment_applies_n_ops_per_image(n):
    b = 300 if n == 1 else 40
    x = rand(b, 3, 32, 32)
    out, ops = A.rand_augment(x, n, 9.0, gen(n), return_ops=True)
    assert out.shape == x.shape and len(ops) == b
    assert all(len(seq) == n for seq in ops)
    if n == 0:
        assert torch.equal(out, x)
        return
    for seq in ops:  # each magnitude is the op's at M = 9, with a sign only where the op has one
        for name, m in seq:
            assert abs(abs(m) - RA_M9[name]) < 1e-5, (name, m)
            assert m >= 0 or name in A._SIGNED
    # Re-applying exactly the recorded ops one image at a time gives the batch's output.
    assert torch.allclose(replay(x, ops), out, atol=1e-5)
    if n == 1:  # ops uniform over the 14 (expected 300 / 14 ~ 21 each)
        counts = torch.bincount(torch.tensor([A.POLICY_OPS.index(s[0][0]) for s in ops]), minlength=14)
        assert counts.min() >= 5 and counts.max() <= 45


def test_rand_augment_magnitude_moves_with_m():
    x = rand(16, 3, 8, 8)
    _, ops = A.rand_augment(x, 12, 30.0, gen(), return_ops=True)
    rot = {abs(m) for seq in ops for name, m in seq if name == "rotate"}
    assert rot == {30.0}
    _, ops = A.rand_augment(x, 12, 0.0, gen(), return_ops=True)
    assert {m for seq in ops for name, m in seq if name == "posterize"} == {8.0}


def test_trivial_augment_one_op_per_image_on_the_wide_grid():
    x = rand(150, 3, 16, 16)
    out, ops = A.trivial_augment(x, gen(), return_ops=True)
    assert all(len(seq) == 1 for seq in ops)
    wide = {"shear_x": 0.99, "rotate": 135.0, "brightness": 0.99, "translate_x": 32.0}
    levels = set()
    for [(name, m)] in ops:
        if name in wide:  # magnitude = bin / 30 * range (the wide space of Müller & Hutter 2021)
            level = abs(m) / wide[name] * 30
            if name != "translate_x":
                assert abs(level - round(level)) < 1e-3 and level <= 30 + 1e-3
                levels.add(round(level))
    assert len(levels) > 8  # the magnitude is drawn, not fixed
    assert torch.allclose(replay(x, ops), out, atol=1e-5)


def test_auto_augment_follows_the_imagenet_sub_policies():
    x = rand(120, 3, 16, 16)
    out, ops = A.auto_augment(x, gen(), return_ops=True)
    pairs = {(a[0], b[0]) for a, b in A.AUTO_AUGMENT_IMAGENET}
    singles = {a[0] for a, _ in A.AUTO_AUGMENT_IMAGENET} | {b[0] for _, b in A.AUTO_AUGMENT_IMAGENET}
    for seq in ops:
        names = tuple(name for name, _ in seq)
        assert len(names) <= 2 and (len(names) < 2 or names in pairs) and set(names) <= singles
    assert sum(len(s) == 2 for s in ops) > 25 and sum(len(s) == 0 for s in ops) > 3
    rotations = {abs(m) for seq in ops for name, m in seq if name == "rotate"}
    allowed = torch.tensor([30.0 * b / 9 for b in (3, 8, 9)])  # the bins the policy uses for Rotate
    assert rotations and all((allowed - r).abs().min() < 1e-4 for r in rotations)
    assert torch.allclose(replay(x, ops), out, atol=1e-5)


@pytest.mark.parametrize("dims", [1, 3])
def test_policies_refuse_other_dimensionalities(dims):
    x = rand(2, 3, *SHAPES[dims])
    for fn, name in [(lambda: A.rand_augment(x, 2, 9, gen()), "RandAugment"),
                     (lambda: A.trivial_augment(x, gen()), "TrivialAugment"),
                     (lambda: A.auto_augment(x, gen()), "AutoAugment")]:
        with pytest.raises(ValueError, match=rf"{name}.*{dims} spatial dims"):
            fn()
    with pytest.raises(ValueError, match=rf"RandAugment.*spatial_dims={dims}"):
        A.BatchAugment(AugmentConfig(rand_augment_n=2), spatial_dims=dims, num_classes=3, mean=(0,), std=(1,))


def test_geometric_ops_by_hand():
    x = rand(2, 1, 8, 8)
    shifted = A.apply_op(x, "translate_x", 3)
    assert torch.allclose(shifted[..., 3:], x[..., :-3], atol=1e-6) and shifted[..., :3].abs().max() < 1e-6
    shifted = A.apply_op(x, "translate_y", -2)
    assert torch.allclose(shifted[..., :-2, :], x[..., 2:, :], atol=1e-6)
    assert torch.allclose(A.apply_op(x, "rotate", 90.0), torch.rot90(x, 1, (-2, -1)), atol=1e-5)
    # ShearX (PIL's (1, m, 0, 0, 1, 0)): output (u, v) = input (u + m v), on a ramp u + 1/2.
    ramp = (torch.arange(16.0) + 0.5).expand(1, 1, 16, 16)
    out = A.apply_op(ramp, "shear_x", 0.25)
    v = torch.arange(16.0) + 0.5
    expected = ramp + 0.25 * v.view(1, 1, 16, 1)
    inside = expected < 15.5
    assert torch.allclose(out[inside], expected[inside], atol=1e-4)


OPS_TV = [("brightness", 0.3, "adjust_brightness", (1.3,), False), ("color", -0.4, "adjust_saturation", (0.6,), False),
          ("contrast", 0.5, "adjust_contrast", (1.5,), False), ("sharpness", 0.7, "adjust_sharpness", (1.7,), False),
          ("autocontrast", 0.0, "autocontrast", (), False), ("posterize", 3, "posterize", (3,), True),
          ("solarize", 100.5, "solarize", (100.5,), True), ("equalize", 0.0, "equalize", (), True),
          ("invert", 0.0, "invert", (), True)]


@pytest.mark.parametrize("name,m,tv_name,args,uint8", OPS_TV, ids=[o[0] for o in OPS_TV])
@pytest.mark.parametrize("channels", [1, 3])
def test_apply_op_matches_torchvision(name, m, tv_name, args, uint8, channels):
    TF = _import("torchvision.transforms.functional")
    u8 = torch.randint(0, 256, (3, channels, 24, 23), dtype=torch.uint8, generator=gen())  # > 255 pixels: equalize acts
    u8[0] = u8[0] // 3 + 40  # a low-contrast image, so autocontrast and equalize have work to do
    x = u8.float() / 255
    ours = A.apply_op(x, name, m)
    fn = getattr(TF, tv_name)
    theirs = fn(u8, *args).float() / 255 if uint8 else fn(x, *args)
    assert torch.allclose(ours, theirs, atol=1e-5)


# ---------------------------------------------------------------------------------- BatchAugment

FULL = {"shift": 1.0, "scale": 0.1, "rotate": 10.0, "hflip": 0.5, "vflip": 0.5, "crop_padding": 2,
        "color_jitter": 0.4, "pca_lighting": 0.1, "erase": 0.5, "mixup": 0.2, "cutmix": 1.0, "mix_prob": 1.0}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_batch_augment_reproducible_and_shape_preserving(dims, device):
    kw = dict(FULL, vflip=0.5 if dims > 1 else 0.0)
    aug = A.BatchAugment(AugmentConfig(**kw, hue=0.1), spatial_dims=dims, num_classes=4,
                         mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    assert aug.enabled
    x = torch.randn(8, 3, *SHAPES[dims], generator=gen()).to(device)
    y = torch.randint(0, 4, (8,), generator=gen()).to(device)
    a, ta = aug(x, y, gen(5))
    b, tb = aug(x, y, gen(5))
    c, _ = aug(x, y, gen(6))
    assert torch.equal(a, b) and torch.equal(ta, tb)
    assert not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert ta.shape == (8, 4) and ta.dtype == torch.float32 and ta.device == x.device
    assert torch.allclose(ta.sum(1), torch.ones(8, device=device))


def test_batch_augment_targets_stay_labels_without_mixing():
    aug = A.BatchAugment(AugmentConfig(hflip=0.5, mixup=0.2, mix_prob=0.5), spatial_dims=2, num_classes=4,
                         mean=(0.5,), std=(0.5,))
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    kinds = set()
    for seed in range(20):
        _, t = aug(x, y, gen(seed))
        kinds.add(t.dtype)
        if t.dtype == torch.int64:
            assert torch.equal(t, y)
        else:
            assert t.shape == (4, 4)
    assert kinds == {torch.int64, torch.float32}  # mix_prob 1/2: both outcomes


def test_batch_augment_identity_at_zero_strength():
    off = {"shift": 0.0, "scale": 0.0, "shear": 0.0}
    aug = A.BatchAugment(AugmentConfig(**off), spatial_dims=2, num_classes=3, mean=(0.5,), std=(0.5,))
    assert not aug.enabled
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    out, t = aug(x, y, gen())
    assert torch.equal(out, x) and torch.equal(t, y)
    aug.mixup = 0.3  # progressive learning switches Mixup on at run time
    assert aug.enabled
    out, t = aug(x, y, gen())
    assert t.shape == (4, 3) and not torch.equal(out, x)


def test_batch_augment_policy_keeps_pixels_in_range_and_follows_m():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    aug = A.BatchAugment(AugmentConfig(shift=0, scale=0, shear=0, rand_augment_n=2), spatial_dims=2,
                         num_classes=3, mean=mean, std=std)
    v = rand(16, 3, 16, 16)
    x = (v - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    y = torch.zeros(16, dtype=torch.long)
    out, _ = aug(x, y, gen())
    pixels = out * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    assert pixels.min() > -1e-5 and pixels.max() < 1 + 1e-5 and not torch.allclose(out, x)
    aug.rand_augment_m = 20.0  # the same draws at another magnitude give another batch
    out2, _ = aug(x, y, gen())
    assert not torch.allclose(out, out2)


def test_batch_augment_rejects_bad_configs():
    kw = {"num_classes": 3, "mean": (0.0,), "std": (1.0,)}
    with pytest.raises(ValueError, match="vflip"):
        A.BatchAugment(AugmentConfig(vflip=0.5), spatial_dims=1, **kw)
    with pytest.raises(ValueError, match="one augmentation policy"):
        A.BatchAugment(AugmentConfig(rand_augment_n=2, trivial_augment=True), spatial_dims=2, **kw)
    with pytest.raises(ValueError, match="auto_augment"):
        A.BatchAugment(AugmentConfig(auto_augment="cifar"), spatial_dims=2, **kw)
    aug = A.BatchAugment(AugmentConfig(), spatial_dims=2, **kw)
    with pytest.raises(ValueError, match=r"2 spatial axes, got \(2, 1, 8\)"):
        aug(torch.zeros(2, 1, 8), torch.zeros(2, dtype=torch.long), gen())
