"""L2 and L1 in the seed's convention: one SGD step decays weights by exactly (1 − ηλ/n); biases untouched."""

import pytest
import torch

from mlplab.config import OptimizerConfig, RegularizationConfig
from mlplab.nn.costs import cross_entropy
from mlplab.nn.model import MLP
from mlplab.training.optim import build_optimizer
from mlplab.nn.regularization import WeightPenalty

ETA, LAMBDA, N_TRAIN = 0.5, 5.0, 1000


def one_step(reg: RegularizationConfig):
    torch.manual_seed(0)
    net = MLP([6, 5, 3], "sigmoid", "sigmoid").double()
    x, y = torch.rand(8, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    before = [p.detach().clone() for p in net.parameters()]
    # The data gradient alone, computed independently of the trainer's path.
    data_grads = torch.autograd.grad(cross_entropy(net(x), y, "sigmoid"), list(net.parameters()))
    optimizer = build_optimizer(net.parameters(), OptimizerConfig(name="sgd", lr=ETA))
    penalty = WeightPenalty(reg, N_TRAIN)
    optimizer.zero_grad()
    cross_entropy(net(x), y, "sigmoid").backward()
    penalty.add_gradients(net.weights())
    optimizer.step()
    return net, before, data_grads


def test_l2_step_decays_weights_by_1_minus_eta_lambda_over_n():
    net, before, grads = one_step(RegularizationConfig(l2=LAMBDA))
    decay = 1 - ETA * LAMBDA / N_TRAIN  # 0.9975
    names = [name for name, _ in net.named_parameters()]
    for name, p, p0, g in zip(names, net.parameters(), before, grads):
        if name.endswith("weight"):
            torch.testing.assert_close(p.detach(), decay * p0 - ETA * g, rtol=0, atol=1e-15)
        else:  # biases: the plain SGD step, no decay
            torch.testing.assert_close(p.detach(), p0 - ETA * g, rtol=0, atol=1e-15)


def test_l1_step_shrinks_weights_by_eta_lambda_over_n_toward_zero():
    net, before, grads = one_step(RegularizationConfig(l1=LAMBDA))
    names = [name for name, _ in net.named_parameters()]
    for name, p, p0, g in zip(names, net.parameters(), before, grads):
        expected = p0 - ETA * g - (ETA * LAMBDA / N_TRAIN) * torch.sign(p0) * name.endswith("weight")
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-15)


def test_penalty_value_is_lambda_over_2n_sum_of_squares_plus_lambda_over_n_sum_of_abs():
    w = [torch.tensor([[1.0, -2.0], [3.0, 0.0]]), torch.tensor([[-1.0]])]
    penalty = WeightPenalty(RegularizationConfig(l2=4.0, l1=2.0), n_train=10)
    # L2: 4/20 · (1 + 4 + 9 + 1) = 3.0 ; L1: 2/10 · (1 + 2 + 3 + 1) = 1.4
    assert penalty.value(w) == pytest.approx(4.4)
