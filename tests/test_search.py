"""Architecture search (convnet.search, issue 17): spaces, DARTS, regularized evolution, random
search, the compound grid, the resumable search directory and the CLI. Tiny sizes and budgets."""
from __future__ import annotations

import json
import math
import random
import zlib

import pytest
import torch
import torch.nn.functional as F

from convnet import create_model
from convnet.cli import main as convnet
from convnet.models.darts import DARTS_V2, PRIMITIVES, Genotype, load_genotype
from convnet.models.efficientnet import compound_scale
from convnet.models.mnas_space import MnasArch
from convnet.search import (Architect, Budget, Constraint, DartsSpace, EvalSettings, MixedOp, MobileNetSpace,
                            RandomSearch, RegularizedEvolution, SearchContext, SearchData, SearchNetwork,
                            SearchSettings, age, coefficient_grid, derive_genotype, finite_difference_hvp,
                            run_search, tournament)
from convnet.search.compound import DIGITS_BASE, CompoundSearch
from convnet.search.darts import constrained_genotype, edge_offset

TINY_SKELETON = {"stages": [{"kernel_size": 3, "expand_ratio": 3, "layers": 1, "out_channels": 8, "stride": 2},
                            {"kernel_size": 3, "expand_ratio": 3, "layers": 1, "out_channels": 8, "stride": 1}],
                 "stem_width": 4, "stem_stride": 2, "sep_width": 4, "head_width": 16}


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: on a CPU shared with other jobs, two threads wait on each other (20x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _spaces():
    return {"darts": DartsSpace(init_channels=2, layers=3), "mobilenet": MobileNetSpace(TINY_SKELETON)}


def _fake_data(spatial_dims: int = 2, size: int = 12, n: int = 16) -> SearchData:
    g = torch.Generator().manual_seed(0)
    shape = (1, *([size] * spatial_dims))
    return SearchData(torch.randn(n, *shape, generator=g), torch.arange(n) % 4, torch.randn(n, *shape, generator=g),
                      torch.arange(n) % 4, 4, "fake")


def _context(space, constraint: str = "", seed: int = 0, data: SearchData | None = None) -> SearchContext:
    return SearchContext(space, data or _fake_data(), Constraint.parse(constraint), seed, EvalSettings(),
                         torch.device("cpu"), Budget.parse("10"))


def _fake_score(ctx, arch, candidate):
    """A deterministic stand-in for training: a score from the architecture's JSON."""
    return {"score": zlib.crc32(json.dumps(arch, sort_keys=True).encode()) % 1000 / 1000, "train_s": 0.0}


# -- spaces ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("space_name", ["darts", "mobilenet"])
def test_spaces_build_models_that_train_in_every_dim(space_name, spatial_dims):
    space = _spaces()[space_name]
    arch = space.sample(random.Random(spatial_dims))
    model = space.build(arch, spatial_dims, in_channels=2, num_classes=3)
    size = 8 if spatial_dims == 3 else 12
    out = model(torch.randn(2, 2, *([size] * spatial_dims)))
    assert out.shape == (2, 3)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert space.check(arch) == arch  # the JSON form validates as it is


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_supernet_trains_in_every_dim(spatial_dims):
    net = SearchNetwork(spatial_dims, 2, 3, init_channels=2, layers=3, steps=2)  # normal, reduce, reduce
    size = 8 if spatial_dims == 3 else 12
    loss = F.cross_entropy(net(torch.randn(2, 2, *([size] * spatial_dims))), torch.tensor([0, 2]))
    loss.backward()
    assert net.alphas_normal.shape == (edge_offset(2), len(PRIMITIVES))  # 2 + 3 edges x 8 operations
    assert net.alphas_normal.grad.abs().sum() > 0 and net.alphas_reduce.grad.abs().sum() > 0


@pytest.mark.parametrize("space_name", ["darts", "mobilenet"])
def test_a_mutation_changes_exactly_one_choice_and_follows_the_seed(space_name):
    space = _spaces()[space_name]
    parent = space.sample(random.Random(0))
    for seed in range(20):
        child, note = space.mutate(parent, random.Random(seed))
        assert (child, note) == space.mutate(parent, random.Random(seed))
        if space_name == "darts":
            changed = [(c, k, i) for c in ("normal", "reduce") for k in range(8) for i in (0, 1)
                       if child[c][k][i] != parent[c][k][i]]
            assert len(changed) == 1, note
            cell, k, _ = changed[0]
            assert child[cell][k][1] != child[cell][k ^ 1][1]  # the two inputs of a node stay distinct
        else:
            changed = [(i, f) for i, (a, b) in enumerate(zip(child["stages"], parent["stages"]))
                       for f in a if a[f] != b[f]]
            assert len(changed) == 1, note
        space.check(child)


def test_genotype_round_trips_through_json_and_create_model(tmp_path):
    data = DARTS_V2.to_dict()
    assert Genotype.from_dict(json.loads(json.dumps(data))) == DARTS_V2
    path = tmp_path / "genotype.json"
    path.write_text(json.dumps(data))
    assert load_genotype(str(path)) == DARTS_V2
    torch.manual_seed(0)
    from_path = create_model("darts_cell", genotype=str(path), init_channels=4, layers=3, in_channels=1).eval()
    torch.manual_seed(0)
    from_dict = create_model("darts_cell", genotype=data, init_channels=4, layers=3, in_channels=1).eval()
    x = torch.randn(2, 1, 12, 12)
    torch.testing.assert_close(from_path(x), from_dict(x))
    assert from_path.genotype == DARTS_V2
    assert from_path.model_config["overrides"]["genotype"] == str(path)  # a path string is JSON-able


def test_mnas_arch_round_trips_through_json_and_create_model(tmp_path):
    arch = MobileNetSpace().sample(random.Random(3))
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch))
    model = create_model("mnas_space", arch=str(path), in_channels=1, num_classes=10)
    assert model.arch == MnasArch.from_dict(arch) and model.arch.to_dict() == arch
    assert model(torch.randn(2, 1, 12, 12)).shape == (2, 10)


@pytest.mark.parametrize("bad,match", [
    ({"normal": [["sep_conv_3x3", 0]], "normal_concat": [2], "reduce": [], "reduce_concat": [2]}, "even number"),
    ({**DARTS_V2.to_dict(), "normal": [["conv_9x9", 0], *DARTS_V2.to_dict()["normal"][1:]]}, r"normal\[0\].*conv_9x9"),
    ({**DARTS_V2.to_dict(), "normal": [["none", 0], *DARTS_V2.to_dict()["normal"][1:]]}, r"normal\[0\].*'none'"),
    ({**DARTS_V2.to_dict(), "reduce": [*DARTS_V2.to_dict()["reduce"][:7], ["skip_connect", 5]]},
     r"reduce\[7\].*input 5"),
    ({"normal": []}, "expected an object with keys"),
])
def test_a_bad_genotype_is_named(tmp_path, bad, match):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=match):
        create_model("darts_cell", genotype=str(path))
    with pytest.raises(FileNotFoundError, match="genotype file not found"):
        load_genotype(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_darts_average_pool_is_torchs_and_takes_inputs_smaller_than_its_kernel(spatial_dims):
    from convnet.models.darts import AvgPool

    for stride in (1, 2):
        pool = AvgPool(spatial_dims, stride)
        x = torch.randn(2, 3, *([5] * spatial_dims))
        torch.testing.assert_close(pool(x), pool.pool(x))
        pads = [1, 1] * spatial_dims  # the explicit path, forced on an input torch takes too
        explicit = pool.unpadded(F.pad(x, pads)) / pool.unpadded(F.pad(torch.ones_like(x[:1, :1]), pads))
        torch.testing.assert_close(explicit, pool.pool(x))
        small = torch.randn(1, 2, *([2] * spatial_dims))  # torch's 3-D pool refuses this one
        corner = small[(0, 0, *[slice(0, 2)] * spatial_dims)].mean()  # the first window: all 2^d real pixels
        assert pool(small).shape[2:] == (2 if stride == 1 else 1,) * spatial_dims
        torch.testing.assert_close(pool(small)[(0, 0, *[0] * spatial_dims)], corner)


def test_mnas_space_default_is_torchvision_mnasnet1_0():
    """MnasNet-B1 with torchvision's weights copied in order gives torchvision's output."""
    from oracle import torchvision_models

    theirs = torchvision_models().mnasnet1_0().eval()
    ours = create_model("mnas_space").eval()
    pairs = list(zip(theirs.state_dict().items(), ours.state_dict().items()))
    assert len(pairs) == len(ours.state_dict()) == len(theirs.state_dict())
    assert all(a.shape == b.shape for (_, a), (_, b) in pairs)
    ours.load_state_dict({k: v for (_, v), (k, _) in pairs})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


# -- DARTS ---------------------------------------------------------------------------------------------

def test_mixed_op_is_the_weighted_sum_of_its_operations():
    torch.manual_seed(0)
    op = MixedOp(2, 4, 1, PRIMITIVES).eval()
    x = torch.randn(2, 4, 8, 8)
    weights = torch.softmax(torch.randn(len(PRIMITIVES)), 0)
    expected = sum(w * o(x) for w, o in zip(weights, op.ops))
    torch.testing.assert_close(op(x, weights), expected)
    k = PRIMITIVES.index("sep_conv_3x3")
    torch.testing.assert_close(op(x, F.one_hot(torch.tensor(k), len(PRIMITIVES)).float()), op.ops[k](x))
    assert op(x, torch.zeros(len(PRIMITIVES))).abs().max() == 0


def test_discretisation_keeps_the_two_strongest_edges_and_their_strongest_operation():
    """Hand-made alphas, two nodes: node 0 has edges from inputs 0, 1; node 1 from 0, 1, 2."""
    P = {p: i for i, p in enumerate(PRIMITIVES)}
    a = torch.zeros(edge_offset(2), len(PRIMITIVES))
    a[0, P["sep_conv_5x5"]] = 3.0  # node 0 <- input 0
    a[1, P["max_pool_3x3"]] = 2.0  # node 0 <- input 1
    a[1, P["none"]] = 9.0  # "none" is never chosen, and does not make an edge strong
    a[2, P["none"]] = 8.0  # node 1 <- input 0: only "none" is strong: dropped
    a[3, P["dil_conv_3x3"]] = 1.0  # node 1 <- input 1
    a[3, P["skip_connect"]] = 1.5
    a[4, P["avg_pool_3x3"]] = 2.5  # node 1 <- node 0: the strongest edge of node 1
    genotype = derive_genotype(a, a, steps=2, primitives=PRIMITIVES)
    expected = [["sep_conv_5x5", 0], ["max_pool_3x3", 1], ["avg_pool_3x3", 2], ["skip_connect", 1]]
    assert genotype["normal"] == genotype["reduce"] == expected
    assert genotype["normal_concat"] == [2, 3]


def test_constrained_discretisation_steps_down_the_cheapest_loss():
    P = {p: i for i, p in enumerate(PRIMITIVES)}
    a = torch.zeros(edge_offset(1), len(PRIMITIVES))
    a[0, P["sep_conv_5x5"]], a[0, P["sep_conv_3x3"]] = 3.0, 2.9  # input 0: a small loss to step down to sep 3x3
    a[1, P["sep_conv_5x5"]], a[1, P["max_pool_3x3"]] = 3.0, 0.5  # input 1: a large loss to step down

    def fits(g):  # a stand-in for the cost: no 5x5 separable convolution on two edges
        return [op for op, _ in g["normal"]].count("sep_conv_5x5") < 2

    genotype, changes = constrained_genotype(a, a, 1, PRIMITIVES, fits, channels=16)
    by_input = {j: op for op, j in genotype["normal"]}
    assert by_input == {0: "sep_conv_3x3", 1: "sep_conv_5x5"}
    k = [j for _, j in genotype["normal"]].index(0)  # edges are listed strongest first
    assert changes == [f"normal edge {k}: sep_conv_5x5 -> sep_conv_3x3"]  # one step down was enough
    with pytest.raises(ValueError, match="no genotype of this supernet meets"):
        constrained_genotype(a, a, 1, PRIMITIVES, lambda g: False, channels=16)


def _tiny_architect():
    torch.manual_seed(0)
    net = SearchNetwork(2, 1, 3, init_channels=2, layers=3, steps=1,
                        primitives=("none", "avg_pool_3x3", "skip_connect", "sep_conv_3x3")).double()
    with torch.no_grad():
        net.alphas_normal.normal_(0, 0.5)
        net.alphas_reduce.normal_(0, 0.5)
    g = torch.Generator().manual_seed(1)
    train = (torch.randn(8, 1, 6, 6, generator=g, dtype=torch.float64), torch.arange(8) % 3)
    val = (torch.randn(8, 1, 6, 6, generator=g, dtype=torch.float64), (torch.arange(8) + 1) % 3)
    # A difference step inside the ReLUs' linear pieces (float64): at the paper's r = 0.01 this tiny
    # network's weights cross kinks (the second test's product is off by 0.26 at r = 1e-2, 1e-3 at
    # 1e-4, 5e-11 at 1e-5), which measures the nonlinearity, not the formula.
    return Architect(net, weight_decay_w=0.0, hvp_r=1e-6), net, train, val


def test_finite_difference_hessian_vector_product_matches_autograd():
    architect, net, train, _ = _tiny_architect()
    names, params = zip(*net.named_weights())
    g = torch.Generator().manual_seed(2)
    vector = {n: torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in zip(names, params)}
    alphas = net.arch_parameters()
    fd = finite_difference_hvp(lambda w: architect.loss(w, *train), {n: p.detach() for n, p in zip(names, params)},
                               alphas, vector, r=architect.hvp_r)
    # Exact: d/d alpha of <grad_w L(w, alpha), v>.
    grads = torch.autograd.grad(architect.loss(None, *train), params, create_graph=True)
    inner = sum((gw * vector[n]).sum() for n, gw in zip(names, grads))
    exact = torch.autograd.grad(inner, alphas)
    for a, b in zip(fd, exact):
        assert b.abs().max() > 1e-4  # not trivially zero
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)


def test_second_order_gradient_matches_the_unrolled_gradient_by_brute_force():
    """The unrolled gradient against autograd through w' = w - xi grad_w L_train(w, alpha) (no momentum,
    no decay)."""
    architect, net, train, val = _tiny_architect()
    xi = 0.05
    approx = architect.second_order_grads(train, val, xi)
    names, params = zip(*net.named_weights())
    grads = torch.autograd.grad(architect.loss(None, *train), params, create_graph=True)
    unrolled = {n: p - xi * g for n, p, g in zip(names, params, grads)}
    exact = torch.autograd.grad(architect.loss(unrolled, *val), net.arch_parameters())
    first = architect.first_order_grads(val)
    for a, b, c in zip(approx, exact, first):
        torch.testing.assert_close(a, b, rtol=2e-3, atol=1e-6)
        assert (b - c).abs().max() > 1e-5  # the second-order term is not negligible here


# -- evolution, random search, constraints ----------------------------------------------------------

def _members(scores):
    return [{"id": i, "arch": {}, "score": s, "cost": {}} for i, s in enumerate(scores)]


def test_tournament_picks_the_best_of_its_sample_under_the_seed():
    population = _members([0.1, 0.9, 0.5, 0.7, 0.3])
    for seed in range(10):
        parent, sample = tournament(population, 3, random.Random(seed))
        assert len(sample) == 3 and parent is max(sample, key=lambda m: m["score"])
        again = tournament(population, 3, random.Random(seed))
        assert [m["id"] for m in again[1]] == [m["id"] for m in sample]
    rng = random.Random(0)
    drawn = [population[rng.randrange(5)]["id"] for _ in range(3)]  # with replacement, as Algorithm 1
    assert [m["id"] for m in tournament(population, 3, random.Random(0))[1]] == drawn


def test_aging_removes_the_oldest_whatever_its_score(monkeypatch):
    from collections import deque

    population = deque(_members([0.99, 0.1, 0.2]))
    assert age(population)["id"] == 0 and [m["id"] for m in population] == [1, 2]

    monkeypatch.setattr("convnet.search.evolution.score_candidate", _fake_score)
    monkeypatch.setattr(SearchContext, "cost", lambda self, arch: {"macs": 0, "params": 0})  # no constraint here
    ctx = _context(_spaces()["darts"], seed=3)
    evo = RegularizedEvolution(ctx, population=3, sample=2)
    history = []
    for _ in range(8):
        history += evo.step(0.0)
    ids = [m["id"] for m in evo.population]
    assert ids == [5, 6, 7]  # the three youngest
    children = [r for r in history if r.get("parent") is not None]
    assert [r["removed"] for r in children] == [0, 1, 2, 3, 4]
    for r in children:
        scores = {h["id"]: h["score"] for h in history if h["kind"] == "candidate"}
        assert scores[r["parent"]] == max(scores[i] for i in r["tournament"])
    # Deterministic under the seed.
    evo2 = RegularizedEvolution(_context(_spaces()["darts"], seed=3), population=3, sample=2)
    assert [r for _ in range(8) for r in evo2.step(0.0)] == history


def test_the_cost_constraint_rejects_candidates(monkeypatch):
    monkeypatch.setattr("convnet.search.random_search.score_candidate", _fake_score)
    space = _spaces()["darts"]
    costs = [_context(space).cost(space.sample(random.Random(s))) for s in range(4)]
    limit = sorted(c["params"] for c in costs)[1]
    search = RandomSearch(_context(space, f"params<={limit}", seed=1))
    rows = [r for _ in range(2) for r in search.step(0.0)]
    accepted = [r for r in rows if r["kind"] == "candidate"]
    rejected = [r for r in rows if r["kind"] == "rejected"]
    assert len(accepted) == 2 and rejected
    assert all(r["cost"]["params"] <= limit for r in accepted)
    assert all(r["cost"]["params"] > limit and r["violation"].startswith("params") for r in rejected)


def test_constraint_and_budget_parsing():
    c = Constraint.parse("macs<=5e6, params<1e5")
    assert c.violation({"macs": 5_000_000, "params": 10}) is None
    assert c.violation({"macs": 5_000_001, "params": 10}).startswith("macs 5,000,001")
    assert c.violation({"macs": 1, "params": 100_000}).startswith("params")
    assert Constraint.parse("flops<=10").violation({"macs": 6, "params": 0}).startswith("flops 12")
    for bad in ("latency<=3", "macs>=5", "macs<=-1", "macs<=abc"):
        with pytest.raises(ValueError, match="constraint"):
            Constraint.parse(bad)
    assert Budget.parse("200") == Budget(steps=200) == Budget.parse("200steps")
    assert Budget.parse("10m") == Budget(seconds=600.0) and Budget.parse("1.5h").seconds == 5400
    for bad in ("0", "ten", "2.5", "5 days"):
        with pytest.raises(ValueError, match="budget"):
            Budget.parse(bad)


def test_an_impossible_constraint_is_refused_before_training(tmp_path):
    settings = SearchSettings(algo="random", space="darts", budget="1", constraint="params<=10", image_size=12,
                              space_options={"init_channels": 2, "layers": 1})
    with pytest.raises(ValueError, match="cannot be met in this darts space"):
        run_search(settings, tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()  # a failed start leaves nothing


# -- compound scaling --------------------------------------------------------------------------------

def test_compound_grid_satisfies_the_resource_equation():
    for step, tol in ((0.1, 0.05), (0.05, 0.05), (0.05, 0.02)):
        grid = coefficient_grid(step, 1.5, 2.0, tol)
        assert grid and all(min(t) >= 1 for t in grid)
        assert all(abs(a * b * b * g * g - 2) <= tol * 2 + 1e-9 for a, b, g in grid)
        values = {round(1 + i * step, 6) for i in range(int(round(0.5 / step)) + 1)}
        everything = [(a, b, g) for a in values for b in values for g in values]
        assert len(grid) == sum(abs(a * b * b * g * g - 2) <= tol * 2 for a, b, g in everything)
    assert (1.2, 1.1, 1.15) in coefficient_grid(0.05)  # the paper's B0 coefficients (1.920, within 5%)


def test_compound_candidates_are_compound_scale_of_the_base():
    ctx = _context(None, data=_fake_data(size=12))
    search = CompoundSearch(ctx)
    scaling = search._scaling((1.2, 1.1, 1.15), 1)
    reference = compound_scale(1, 1.2, 1.1, 1.15, base=DIGITS_BASE, base_resolution=12, released=False)
    assert scaling == reference and scaling.resolution == round(12 * 1.15)
    model = search._build(scaling.spec)
    assert model(torch.randn(2, 1, 14, 14)).shape == (2, 4)


# -- the search directory -----------------------------------------------------------------------------

_TINY_RUN = dict(data="digits", image_size=12, threads=1, eval={"epochs": 1, "batch_size": 128})


def _comparable(history):
    return [{k: v for k, v in r.items() if k != "train_s"} for r in history]


@pytest.mark.parametrize("algo,settings", [
    ("evolution", dict(space="darts", budget="4", space_options={"init_channels": 2, "layers": 1, "steps": 2},
                       algo_options={"population": 2, "sample": 2})),
    ("darts", dict(space="darts", budget="5", space_options={"init_channels": 2, "layers": 1, "steps": 2},
                   algo_options={"batch_size": 8, "checkpoint_every": 2, "score_samples": 16})),
])
def test_kill_and_resume_gives_the_history_of_an_uninterrupted_search(tmp_path, algo, settings):
    s = SearchSettings(algo=algo, seed=1, **settings, **_TINY_RUN)
    whole = run_search(s, tmp_path / "whole", progress=False)
    history = [json.loads(line) for line in (tmp_path / "whole" / "history.jsonl").read_text().splitlines()]

    class Kill(Exception):
        pass

    def kill_at_3(step):
        if step == 3:
            raise Kill

    with pytest.raises(Kill):
        run_search(s, tmp_path / "cut", progress=False, on_step=kill_at_3)
    assert json.loads((tmp_path / "cut" / "failed.json").read_text())["step"] == 3
    resumed = run_search(s, tmp_path / "cut", resume=True, progress=False)
    again = [json.loads(line) for line in (tmp_path / "cut" / "history.jsonl").read_text().splitlines()]
    assert _comparable(again) == _comparable(history)
    assert resumed["score"] == whole["score"] and resumed["cost"] == whole["cost"]
    name = "genotype.json"
    assert (tmp_path / "cut" / name).read_text() == (tmp_path / "whole" / name).read_text()
    assert not (tmp_path / "cut" / "failed.json").exists()
    if algo == "darts":
        assert history[-1]["kind"] == "final" and history[-1]["alphas_normal"] == again[-1]["alphas_normal"]
    with pytest.raises(ValueError, match=r"settings differ .* \['seed'\]"):
        run_search(SearchSettings(algo=algo, seed=2, **settings, **_TINY_RUN), tmp_path / "cut", resume=True,
                   progress=False)


def test_cli_writes_the_search_directory_and_train_retrains_it(tmp_path, capsys):
    out = tmp_path / "search"
    args = ["search", "--algo", "random", "--space", "darts", "--data", "digits", "--budget", "1", "--image-size", "12",
            "--threads", "1", "--init-channels", "2", "--layers", "1", "--candidate-epochs", "1",
            "--constraint", "macs<=5e6", "--seed", "0", "--out", str(out), "--no-progress"]
    assert convnet(args) == 0
    printed = capsys.readouterr().out
    assert "retrain: convnet train --model darts_cell" in printed
    for name in ("config.json", "history.jsonl", "genotype.json", "architecture.png", "summary.json",
                 "report/index.html", "report/score_vs_cost.png", "report/architecture.png"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["candidate"] and set(rows[0]["cost"]) == {"macs", "params"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["score"] == rows[0]["score"] and summary["cost"] == rows[0]["cost"]
    genotype = load_genotype(str(out / "genotype.json"))
    assert genotype.to_dict() == rows[0]["arch"]

    assert convnet(args) == 2  # a finished search is not overwritten silently
    assert "already holds a finished search" in capsys.readouterr().err

    run = tmp_path / "retrain"
    assert convnet(["train", "--model", "darts_cell", "--epochs", "1", "--max-steps", "2", "--out", str(run),
                    "--no-progress", f"model.overrides.genotype={out / 'genotype.json'}",
                    "model.overrides.init_channels=2", "model.overrides.layers=1", "data.image_size=12",
                    "report=false"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["overrides"]["genotype"] == str(out / "genotype.json")
    assert math.isfinite(json.loads((run / "summary.json").read_text())["test_acc"])
