"""WaveNet: causality, receptive field, parameter count, and naive vs cached (Fast WaveNet) generation."""
import pytest
import torch
import torch.nn.functional as F

from convnet import create_model, model_info
from convnet.analysis import measure_receptive_field, receptive_field, summary
from convnet.data.audio import mu_law_decode, mu_law_encode
from convnet.models import get_entry
from convnet.models.wavenet import generate, time_generation

TINY = get_entry("wavenet").extra["tiny"]  # 2 blocks of dilations 1, 2, 4


def _tiny(**kw):
    return create_model("wavenet", **{**TINY, **kw}).eval()


def test_parameter_count_by_hand():
    """One-hot 1x1 input conv (Q -> R); per layer two kernel-2 convs R -> D (+ bias), 1x1 D -> S skip,
    1x1 D -> R residual except in the last layer; head 1x1 S -> S and S -> Q (all with bias)."""
    q, r, d, s, k, layers = 256, 32, 32, 512, 2, 30
    per_layer = 2 * (k * r * d + d) + (d * s + s) + (d * r + r)
    expected = (q * r + r) + layers * per_layer - (d * r + r) + (s * s + s) + (s * q + q)
    assert model_info("wavenet")["params"] == expected
    with torch.device("meta"):
        emb = create_model("wavenet", input_mode="embedding")
    assert sum(p.numel() for p in emb.parameters()) == expected - r  # an embedding has no bias


@pytest.mark.parametrize("blocks, layers", [(1, 10), (3, 10), (2, 4)])
def test_receptive_field_formula_and_tracer(blocks, layers):
    """(k - 1) x sum(dilations) x blocks + 1; convnet.analysis traces the causal padding (F.pad on
    the left) and the dilated convolutions to the same size, on the meta device."""
    spec = dict(blocks=blocks, layers_per_block=layers, residual_channels=4, dilation_channels=4, skip_channels=8)
    model = create_model("wavenet", **spec)
    expected = (2 - 1) * sum(2 ** i for i in range(layers)) * blocks + 1
    assert model.receptive_field == expected
    length = expected + 64
    rf = receptive_field(model, (256, length))
    assert rf.size == (expected,) and rf.jump == (1,) and rf.whole == (False,)
    # Causal: unit 0's field ends at input 0 (its centre sits (size - 1) / 2 before it).
    assert rf.start == (-(expected - 1) / 2,)
    if blocks == 3:
        assert expected == 1023 * 3 + 1


def test_measured_field_is_causal():
    """The input gradient of the centre output reaches exactly the receptive field before it."""
    model = _tiny()
    rf = model.receptive_field  # 2 x 7 + 1 = 15
    extent = measure_receptive_field(model, (256, 40))
    assert extent == ((20 - rf + 1, 20),)


def test_output_never_depends_on_the_future():
    model = _tiny(input_mode="embedding")
    codes = torch.randint(0, 256, (2, 30))
    changed = codes.clone()
    changed[:, 20:] = torch.randint(0, 256, (2, 10))
    with torch.no_grad():
        a, b = model(codes), model(changed)
    assert a.shape == (2, 256, 30)
    torch.testing.assert_close(a[:, :, :20], b[:, :, :20])
    assert not torch.allclose(a[:, :, 20:], b[:, :, 20:])


def test_one_hot_and_codes_agree_and_bad_input_is_named():
    model = _tiny()
    codes = torch.randint(0, 256, (2, 12))
    one_hot = F.one_hot(codes, 256).transpose(1, 2).float()
    with torch.no_grad():
        torch.testing.assert_close(model(codes), model(one_hot))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 256\), got \[0, 300\]"):
        model(torch.tensor([[0, 300]]))
    with pytest.raises(ValueError, match=r"one-hot \(B, 256, T\) float, got torch.float32 of shape \(2, 12\)"):
        model(torch.randn(2, 12))


def test_summary_counts_the_network():
    model = _tiny()
    s = summary(model, (256, 64), device="meta")
    assert s.uncounted == [] and s.total_params == sum(p.numel() for p in model.parameters())
    assert s.output_shape == (256, 64)


def test_naive_and_cached_generation_draw_identical_samples():
    model = _tiny().double()
    prime = torch.randint(0, 256, (2, 5))
    runs = {}
    for method in ("naive", "cached"):
        g = torch.Generator().manual_seed(123)
        runs[method] = generate(model, 24, prime, generator=g, method=method)  # 5 + 24 > the field of 15
    assert runs["naive"].shape == (2, 24)
    assert torch.equal(runs["naive"], runs["cached"])
    # Not a trivial agreement: another seed draws other samples.
    other = generate(model, 24, prime, generator=torch.Generator().manual_seed(7))
    assert not torch.equal(other, runs["cached"])


def test_cached_step_logits_equal_the_full_forward():
    model = _tiny().double()
    codes = torch.randint(0, 256, (2, 33))
    with torch.no_grad():
        full = model(codes)  # (B, 256, T)
        queues = model.init_queues(2)
        steps = torch.stack([model.step(codes[:, t], queues) for t in range(codes.shape[1])], -1)
    torch.testing.assert_close(steps, full, rtol=1e-10, atol=1e-10)


def test_generation_from_silence_and_timing_helper():
    model = _tiny()
    g = torch.Generator().manual_seed(0)
    samples = generate(model, 8, batch_size=2, generator=g)
    assert samples.shape == (2, 8) and samples.dtype == torch.int64 and 0 <= samples.min() <= samples.max() < 256
    audio = mu_law_decode(samples)
    assert audio.abs().max() <= 1
    timing = time_generation(model, 4, method="cached")
    assert timing["seconds"] > 0 and timing["samples_per_second"] > 0
    with pytest.raises(ValueError, match="method must be"):
        generate(model, 2, method="fast")


def test_trains_on_next_sample_prediction():
    """Cross-entropy of logits at t against the code at t + 1 goes down on a periodic signal."""
    model = _tiny(input_mode="embedding").train()
    wave_ = torch.sin(torch.arange(200) * 0.3)[None]
    codes = mu_law_encode(wave_)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(codes[:, :-1]), codes[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
