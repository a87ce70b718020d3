"""The neocognitron's cells and learning rules (Fukushima 1980; 2003; 2013), checked one by one,
and a short unsupervised run on the digits."""
import functools

import pytest
import torch
import torch.nn.functional as F

from convnet import create_model, model_info
from convnet.models.neocognitron import Neocognitron, NeocognitronSpec, SCells

_SMALL = {"planes": (8, 16, 24), "kernels": (5, 5, 5)}


def _layer(planes: int, threshold: float = 0.5, competition: int = 3, **kw) -> SCells:
    """A 2-D S-layer of 5x5 connection areas over 2 input planes, with no planes yet."""
    layer = SCells(2, 2, planes, 5, threshold, competition=competition, **kw)
    layer.clear_planes()
    return layer


def _set_plane(layer: SCells, k: int, pattern: torch.Tensor) -> None:
    """Give plane k the weights it would learn from ``pattern`` (2, 5, 5) seen at a position."""
    layer.accumulated[k] = pattern * layer.sqrt_c
    layer.num_planes.fill_(max(int(layer.num_planes), k + 1))
    layer.sync_weights()


@functools.lru_cache(maxsize=1)
def _digits():
    from convnet.data.datasets import load_digits

    return load_digits()


def _centre(out: torch.Tensor) -> torch.Tensor:
    return out[..., 2, 2]  # on a 5x5 input the centre cell sees exactly the whole input


def test_s_cell_selectivity():
    torch.manual_seed(0)
    layer = _layer(1, threshold=0.5)
    pattern = torch.zeros(2, 5, 5)
    pattern[0] = torch.rand(5, 5) + 0.1  # all of its weight on the first input plane
    _set_plane(layer, 0, pattern)
    # Orthogonal input (the other input plane only): silent everywhere.
    orth = torch.zeros(1, 2, 5, 5)
    orth[0, 1] = torch.rand(5, 5) + 0.1
    assert layer(orth).abs().max() == 0
    # Proportional input: s = 1, so the response is the V-cell's norm |x|.
    x = 3.0 * pattern.unsqueeze(0)
    best = _centre(layer(x))[0, 0]
    v = _centre(layer.inhibition(x))[0, 0]
    torch.testing.assert_close(best, v)
    assert best > 0
    # Any other non-negative input of the same norm |x| responds less.
    others = torch.rand(200, 2, 5, 5)
    others = others / _centre(layer.inhibition(others)).view(-1, 1, 1, 1) * v
    assert (_centre(layer(others))[:, 0] < best - 1e-4).all()
    # The response is |x| phi[s - theta] / (1 - theta) for the cosine s in x = sqrt(c) u space:
    # silent below the selectivity threshold, graded above it.
    for t in (0.1, 0.5, 1.0, 2.0, 4.0):
        u = pattern + t * orth[0] / orth[0].norm() * pattern.norm()
        xs, w = (u * layer.sqrt_c).flatten(), layer.accumulated[0].flatten()
        cos = float(xs @ w / (xs.norm() * w.norm()))
        expected = xs.norm() * max(cos - 0.5, 0.0) / 0.5
        torch.testing.assert_close(_centre(layer(u.unsqueeze(0)))[0, 0], expected, rtol=1e-4, atol=1e-5)
    assert cos < 0.5  # the last mixture is beyond the threshold: silent


def test_c_cells_tolerate_a_one_pixel_shift():
    x = _digits().train[0][:40]
    model = create_model("neocognitron", planes=(8, 8, 8))
    model.fit_unsupervised(x, torch.Generator().manual_seed(0), stages=1)
    stage = model.stages[0]
    with torch.no_grad():
        def similarity(fn):
            a, b = fn(model.contrast(x)), fn(model.contrast(x.roll(1, dims=-1)))
            return F.cosine_similarity(a.flatten(1), b.flatten(1)).mean()

        s_sim = similarity(stage.s)
        c_sim = similarity(stage)
    assert c_sim > s_sim + 0.1, (float(s_sim), float(c_sim))
    assert c_sim > 0.9


def test_winner_take_all_updates_only_the_winner_of_each_area():
    torch.manual_seed(0)
    layer = _layer(2, threshold=0.2, competition=9)  # one area over the whole 5x5 input
    a = torch.rand(2, 5, 5)
    b = a.clone()
    b[1] = 0  # plane 1 matches a partly: both fire, plane 0 fires more
    _set_plane(layer, 0, a)
    _set_plane(layer, 1, b)
    x = a.unsqueeze(0)
    out = layer(x)
    assert out[0, 1].max() > 0 and out[0, 0].max() > out[0, 1].max()
    before = layer.accumulated.clone()
    stats = layer.learn(x)
    assert stats == {"added": 0, "reinforced": 1}
    assert torch.equal(layer.accumulated[1], before[1])  # the loser keeps its weights
    # The winner moved toward its input, by q x of the winning (centre) cell.
    torch.testing.assert_close(layer.accumulated[0] - before[0], layer.reinforcement * a * layer.sqrt_c)

    # Two competition areas, each with its own pattern: each area's winner learns.
    layer = _layer(2, threshold=0.2, competition=3)
    p, q = torch.zeros(2, 5, 5), torch.zeros(2, 5, 5)
    p[0, :, 2], q[1, 2, :] = 1.0, 1.0  # a vertical bar on plane 0, a horizontal one on plane 1
    _set_plane(layer, 0, p)
    _set_plane(layer, 1, q)
    x = torch.zeros(1, 2, 5, 20)
    x[0, :, :, :5], x[0, :, :, 15:] = p, q
    before = layer.accumulated.clone()
    stats = layer.learn(x)
    assert stats["added"] == 0
    assert not torch.equal(layer.accumulated[0], before[0])
    assert not torch.equal(layer.accumulated[1], before[1])


def test_add_if_silent_recruits_a_plane_for_a_novel_pattern():
    layer = _layer(3, threshold=0.6, competition=5)  # every area covers the whole 5x5 input
    bar = torch.zeros(1, 2, 5, 5)
    bar[0, 0, :, 2] = 1.0
    assert layer.learn(bar)["added"] == 1  # nothing there yet: the first plane is recruited
    assert int(layer.num_planes) == 1
    assert layer.learn(bar)["added"] == 0  # a familiar pattern: its plane fires, none added
    novel = torch.zeros(1, 2, 5, 5)
    novel[0, 1, 2, :] = 1.0  # on the other input plane: orthogonal to the first plane
    assert layer(novel)[0, 0].max() == 0
    assert layer.learn(novel)["added"] == 1
    assert int(layer.num_planes) == 2
    assert _centre(layer(novel))[0, 1] > 0  # the new plane answers its pattern
    assert layer(bar)[0, 1].max() == 0  # and not the old one
    # A full layer recruits no more.
    layer.num_planes.fill_(3)
    other = torch.zeros(1, 2, 5, 5)
    other[0, 0, 2, :] = 1.0
    assert layer.learn(other)["added"] == 0


def test_parameters_buffers_and_counts():
    model = create_model("neocognitron")
    spec = model.spec
    assert model.learning == "unsupervised"
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["head.fc.weight", "head.fc.bias"]
    # At the maximum plane counts: UG's on/off pair feeds S1; every S-layer's 5x5 planes.
    competitive = 2 * 25 * 16 + 16 * 25 * 32 + 32 * 25 * 64
    assert sum(p.numel() for n, p in model.named_parameters() if not p.requires_grad) == competitive
    assert model_info("neocognitron")["params"] == 64 * 4 * 4 * 10 + 10
    assert spec.planes == (16, 32, 64)


def test_unsupervised_learning_on_digits_beats_chance():
    data = _digits()
    (x, y), (xt, yt) = data.train, data.test
    x, y = x[:300], y[:300]
    model = create_model("neocognitron", **_SMALL)
    stats = model.fit_unsupervised(x, torch.Generator().manual_seed(0))  # no labels
    assert all(0 < p <= m for p, m in zip(stats["planes"], _SMALL["planes"]))
    model.fit_readout(x, y)
    acc = model.evaluate_readouts(xt, yt)
    assert acc["probe_acc"] > 0.7 and acc["prototype_acc"] > 0.6, acc  # chance is 0.1
    # forward is the linear probe; head.prototype_logits the other readout.
    with torch.no_grad():
        logits = model(xt)
        f = model.head(model.forward_features(xt), pre_logits=True)
    assert abs((logits.argmax(1) == yt).float().mean().item() - acc["probe_acc"]) < 1e-6
    proto = (model.head.prototype_logits(f).argmax(1) == yt).float().mean().item()
    assert abs(proto - acc["prototype_acc"]) < 1e-6


def test_deterministic_under_a_seed_and_saved_planes_reload():
    x = torch.rand(24, 1, 32, 32)
    spec = {"planes": (4, 6, 6)}
    a, b = create_model("neocognitron", **spec), create_model("neocognitron", **spec)
    a.fit_unsupervised(x, torch.Generator().manual_seed(3))
    b.fit_unsupervised(x, torch.Generator().manual_seed(3))
    learned = [n for n in a.state_dict() if n.startswith("stages.")]
    assert learned
    for n in learned:
        assert torch.equal(a.state_dict()[n], b.state_dict()[n]), n
    c = create_model("neocognitron", **spec)
    c.load_state_dict(a.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(c.forward_features(x[:2]), a.forward_features(x[:2]))


@pytest.mark.parametrize("spatial_dims", [1, 3])
def test_learning_in_other_dims(spatial_dims):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, *([16] * spatial_dims), generator=g)
    model = Neocognitron(NeocognitronSpec(planes=(3, 4, 4), kernels=(3, 3, 3), contrast_kernel=5, c_kernel=3,
                                          readout_grid=1), spatial_dims, 1, 3)
    stats = model.fit_unsupervised(x, g)
    assert all(p > 0 for p in stats["planes"])
    model.fit_readout(x, torch.arange(8) % 3)
    assert set(model.evaluate_readouts(x, torch.arange(8) % 3)) == {"prototype_acc", "probe_acc"}
