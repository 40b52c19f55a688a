"""The seed engine: the four backpropagation equations by hand give autograd's gradients and weights."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from mlplab.nn import initializers
from mlplab.training.engines import AutogradEngine, SeedEngine
from mlplab.nn.backprop import SeedBackprop
from mlplab.nn.activations import ACTIVATIONS
from mlplab.config import InitializerConfig, OptimizerConfig, RegularizationConfig
from mlplab.nn.costs import COSTS
from mlplab.nn.model import MLP
from mlplab.training.optim import build_optimizer
from mlplab.nn.regularization import WeightPenalty
from mlplab.training.loop import train

N_TRAIN = 1000  # the n in λ/n
REGULARIZERS = {"none": {}, "l2": {"l2": 5.0}, "l1": {"l1": 3.0}, "dropout": {"dropout": 0.3}}


def network(activation: str, output: str, dropout: float = 0.0, seed: int = 0) -> MLP:
    net = MLP([12, 9, 7, 4], activation, output, dropout, leaky_slope=0.1).double()
    initializers.initialize(net, InitializerConfig("standard_normal", "standard_normal"), seed)
    return net


def batch(seed: int = 1, m: int = 16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, 12, generator=g, dtype=torch.float64), torch.randint(0, 4, (m,), generator=g)


def autograd_gradients(net, x, y, cost, penalty):
    net.zero_grad(set_to_none=True)
    COSTS[cost](net(x), y, net.output).backward()
    for w in net.weights():
        if w.grad is None:  # nothing reached it (a step layer above): its gradient is zero
            w.grad = torch.zeros_like(w)
    penalty.add_gradients(net.weights())
    return {name: (p.grad if p.grad is not None else torch.zeros_like(p)).clone() for name, p in net.named_parameters()}


def seed_gradients(net, x, y, cost, penalty):
    _, grads = SeedBackprop(net, cost, net.activation).gradients(x, F.one_hot(y, 4).double())
    for layer, w in enumerate(net.weights()):
        grads[f"layers.{layer}.weight"] = grads[f"layers.{layer}.weight"] + penalty.l2_over_n * w + penalty.l1_over_n * torch.sign(w)
    return grads


def assert_close(seed: dict, auto: dict, rel: float = 1e-6):
    assert seed.keys() == auto.keys()
    for name in auto:
        scale = max(auto[name].norm().item(), 1e-12)
        assert (seed[name] - auto[name]).norm().item() <= rel * scale, name


@pytest.mark.parametrize("activation,cost,output,regularizer",
                         [(a, c, o, r) for a, c, o, r in itertools.product(ACTIVATIONS, COSTS, ("sigmoid", "softmax"), REGULARIZERS)])
def test_seed_gradients_equal_autograd_to_one_in_a_million(activation, cost, output, regularizer):
    reg = RegularizationConfig(**REGULARIZERS[regularizer])
    net = network(activation, output, reg.dropout)
    penalty = WeightPenalty(reg, N_TRAIN)
    x, y = batch()
    torch.manual_seed(7)  # the same dropout masks for both: the seed engine draws them as F.dropout does
    auto = autograd_gradients(net, x, y, cost, penalty)
    torch.manual_seed(7)
    seed = seed_gradients(net, x, y, cost, penalty)
    assert_close(seed, auto)


def test_output_errors_are_the_seeds_formulas():
    z = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    a = torch.sigmoid(z)
    assert torch.allclose(COSTS["quadratic"].delta("sigmoid", z, a, y), (a - y) * a * (1 - a))
    assert torch.allclose(COSTS["cross_entropy"].delta("sigmoid", z, a, y), a - y)
    s = torch.softmax(z, dim=1)
    assert torch.allclose(COSTS["log_likelihood"].delta("softmax", z, s, y), s - y)


def test_backpropagation_matches_a_hand_computed_two_layer_example():
    """1-1-1 sigmoid network, quadratic cost: ∂C/∂w² = (a²−y)σ'(z²)a¹, ∂C/∂w¹ = (a²−y)σ'(z²)w²σ'(z¹)x."""
    net = MLP([1, 1, 1], "sigmoid", "sigmoid").double()
    with torch.no_grad():
        net.layers[0].weight.fill_(0.6), net.layers[0].bias.fill_(-0.2)
        net.layers[1].weight.fill_(1.5), net.layers[1].bias.fill_(0.1)
    x, y = torch.tensor([[2.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
    _, grads = SeedBackprop(net, "quadratic", "sigmoid").gradients(x, y)
    s = lambda v: 1 / (1 + torch.exp(-torch.as_tensor(v, dtype=torch.float64)))  # noqa: E731
    z1 = 0.6 * 2.0 - 0.2
    a1 = s(z1)
    z2 = 1.5 * a1 + 0.1
    a2 = s(z2)
    delta2 = (a2 - 1.0) * a2 * (1 - a2)
    delta1 = delta2 * 1.5 * a1 * (1 - a1)
    assert torch.isclose(grads["layers.1.weight"].squeeze(), delta2 * a1)
    assert torch.isclose(grads["layers.1.bias"].squeeze(), delta2)
    assert torch.isclose(grads["layers.0.weight"].squeeze(), delta1 * 2.0)
    assert torch.isclose(grads["layers.0.bias"].squeeze(), delta1)


@pytest.mark.parametrize("optimizer,regularizer,activation", [
    ("sgd", "l2", "sigmoid"), ("sgd", "l1", "relu"), ("sgd", "dropout", "tanh"), ("sgd", "none", "prelu"),
    ("nesterov", "l2", "leaky_relu"), ("adam", "dropout", "sigmoid")])
def test_k_steps_with_either_engine_give_the_same_weights(optimizer, regularizer, activation):
    reg = RegularizationConfig(**REGULARIZERS[regularizer])
    opt = OptimizerConfig(name=optimizer, lr=0.01 if optimizer == "adam" else 0.5,
                          momentum=0.9 if optimizer == "nesterov" else 0.0)
    nets = {}
    for name in ("seed", "autograd"):
        net = network(activation, "sigmoid", reg.dropout)
        penalty, optim = WeightPenalty(reg, N_TRAIN), build_optimizer(net.parameters(), opt)
        engine = (SeedEngine(net, COSTS["cross_entropy"], activation, penalty, optim, optimizer == "sgd")
                  if name == "seed" else AutogradEngine(net, COSTS["cross_entropy"], penalty, optim))
        torch.manual_seed(3)
        for k in range(8):
            engine.step(*batch(seed=10 + k))
        nets[name] = net
    seed, auto = dict(nets["seed"].named_parameters()), dict(nets["autograd"].named_parameters())
    assert_close({k: v.detach() for k, v in seed.items()}, {k: v.detach() for k, v in auto.items()}, rel=1e-9)
    assert not torch.equal(seed["layers.0.weight"], network(activation, "sigmoid").layers[0].weight)  # it learnt


def test_seed_engine_stops_before_a_non_finite_cost_touches_the_weights():
    net = network("sigmoid", "sigmoid")
    with torch.no_grad():
        net.layers[0].weight[0, 0] = float("nan")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    optim = build_optimizer(net.parameters(), OptimizerConfig(lr=0.5))
    engine = SeedEngine(net, COSTS["quadratic"], "sigmoid", WeightPenalty(RegularizationConfig(), N_TRAIN),
                        optim, True)
    _, loss = engine.step(*batch())
    assert loss != loss  # NaN
    assert all(torch.equal(before[k], v) or (before[k].isnan() == v.isnan()).all() for k, v in net.state_dict().items())


def test_trainer_with_the_seed_engine_learns_like_the_autograd_engine(tiny_config, tmp_path):
    results = {engine: train(tiny_config("trainer.epochs=2", "optimizer.lr=1.0", f"trainer.engine={engine}"),
                             tmp_path / engine) for engine in ("seed", "autograd")}
    seed, auto = results["seed"], results["autograd"]
    assert seed.test_accuracy > 0.9
    assert abs(seed.history[-1]["train_loss"] - auto.history[-1]["train_loss"]) < 1e-4
    a = torch.load(tmp_path / "seed" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "autograd" / "model.pt", weights_only=True)
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)  # float32, 24 steps: rounding only
