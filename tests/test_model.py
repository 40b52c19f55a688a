"""The network computes a^ℓ = σ(W^ℓ a^{ℓ-1} + b^ℓ) with the named activations; dropout only in training."""

import pytest
import torch

from mlplab.nn.model import MLP, make_activation, resolve_output, side_by_side

Z = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])


@pytest.mark.parametrize("name, expected", [
    ("step", [0.0, 0.0, 0.0, 1.0, 1.0]),  # H(z) = 1_{z>0}
    ("sigmoid", (1 / (1 + torch.exp(-Z))).tolist()),
    ("tanh", (2 / (1 + torch.exp(-2 * Z)) - 1).tolist()),  # tanh(z) = 2σ(2z) − 1, as on the slide
    ("relu", [0.0, 0.0, 0.0, 0.5, 2.0]),
    ("leaky_relu", [-0.02, -0.005, 0.0, 0.5, 2.0]),
    ("prelu", [-0.02, -0.005, 0.0, 0.5, 2.0]),
])
def test_activation_values(name, expected):
    with torch.no_grad():
        out = make_activation(name, leaky_slope=0.01)(Z)
    torch.testing.assert_close(out, torch.tensor(expected), rtol=1e-6, atol=1e-7)


def test_feedforward_matches_the_slides_formula():
    torch.manual_seed(0)
    net = MLP([4, 3, 2], "sigmoid", "sigmoid")
    x = torch.rand(5, 4)
    w1, b1, w2, b2 = (p.detach() for p in (net.layers[0].weight, net.layers[0].bias, net.layers[1].weight, net.layers[1].bias))
    a1 = torch.sigmoid(x @ w1.T + b1)  # z¹ = W¹a⁰ + b¹, row j of W holds "j back to k"
    z2 = a1 @ w2.T + b2
    torch.testing.assert_close(net(x), z2)
    torch.testing.assert_close(net.output_activation(net(x)), torch.sigmoid(z2))


def test_output_auto_pairs_softmax_with_log_likelihood():
    assert resolve_output("auto", "log_likelihood") == "softmax"
    assert resolve_output("auto", "cross_entropy") == "sigmoid"
    assert resolve_output("auto", "quadratic") == "sigmoid"
    assert resolve_output("softmax", "quadratic") == "softmax"


def test_dropout_is_active_only_in_training():
    torch.manual_seed(0)
    net = MLP([20, 200, 3], "relu", "softmax", dropout=0.5)
    x = torch.rand(64, 20)
    net.eval()
    assert torch.equal(net(x), net(x))  # deterministic: no units dropped
    net.train()
    hidden = net.dropout(torch.ones(64, 200))
    dropped = (hidden == 0).float().mean().item()
    assert dropped == pytest.approx(0.5, abs=0.03)
    assert set(hidden.unique().tolist()) <= {0.0, 2.0}  # survivors scaled by 1/(1 − p)
    assert not torch.equal(net(x), net(x))


def test_dropout_never_touches_inputs_or_outputs():
    net = MLP([5, 4], "relu", "sigmoid", dropout=0.9)  # no hidden layer: nothing to drop
    net.train()
    x = torch.rand(8, 5)
    assert torch.equal(net(x), net(x))


@pytest.mark.parametrize("sizes, activation", [([784, 20, 15, 10], "relu"), ([784, 12, 10], "sigmoid"),
                                               ([784, 9, 7, 5, 10], "leaky_relu"), ([784, 6, 10], "tanh"), ([784, 10], "relu")])
def test_side_by_side_networks_are_one_mlp_whose_output_is_their_mean(sizes, activation):
    torch.manual_seed(0)
    nets = [MLP(sizes, activation, "softmax", dropout=0.3, leaky_slope=0.1) for _ in range(3)]
    merged = side_by_side(nets)
    assert merged.sizes == [784, *(3 * n for n in sizes[1:-1]), 10] and merged.output == "softmax"
    x = torch.randn(64, 784)
    for net in nets + [merged]:
        net.eval()
    expected = torch.stack([net(x) for net in nets]).mean(dim=0)
    torch.testing.assert_close(merged(x), expected, rtol=1e-5, atol=1e-5)


def test_side_by_side_refuses_networks_of_different_shapes_or_learnt_slopes():
    with pytest.raises(ValueError, match="one shape"):
        side_by_side([MLP([784, 20, 10], "relu", "softmax"), MLP([784, 30, 10], "relu", "softmax")])
    with pytest.raises(ValueError, match="prelu"):
        side_by_side([MLP([784, 20, 10], "prelu", "softmax")] * 2)
