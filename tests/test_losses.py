"""Each cost equals the seed's formula, checked against numbers worked out by hand."""

import math

import pytest
import torch

from mlplab.nn.costs import COSTS, cross_entropy, log_likelihood, quadratic

# Two examples, three output units. z chosen so that sigmoid and softmax values are easy to write down.
Z = torch.tensor([[0.0, math.log(3.0), -math.log(3.0)], [math.log(4.0), 0.0, 0.0]], dtype=torch.float64)
Y = torch.tensor([1, 0])
# sigmoid(0) = 1/2, sigmoid(log 3) = 3/4, sigmoid(−log 3) = 1/4, sigmoid(log 4) = 4/5
A_SIGMOID = [[0.5, 0.75, 0.25], [0.8, 0.5, 0.5]]
# softmax rows: [1, 3, 1/3] / (13/3) and [4, 1, 1] / 6
A_SOFTMAX = [[3 / 13, 9 / 13, 1 / 13], [4 / 6, 1 / 6, 1 / 6]]


def by_hand_quadratic(a):
    e = [[0, 1, 0], [1, 0, 0]]
    return sum(0.5 * sum((a[i][j] - e[i][j]) ** 2 for j in range(3)) for i in range(2)) / 2


def by_hand_cross_entropy(a):
    e = [[0, 1, 0], [1, 0, 0]]
    total = 0.0
    for i in range(2):
        total += sum(-e[i][j] * math.log(a[i][j]) - (1 - e[i][j]) * math.log(1 - a[i][j]) for j in range(3))
    return total / 2


def test_quadratic_is_half_squared_error_summed_over_units_and_averaged_over_examples():
    # by hand, sigmoid: example 1: ½(0.25 + 0.0625 + 0.0625) = 0.1875; example 2: ½(0.04 + 0.25 + 0.25) = 0.27
    assert by_hand_quadratic(A_SIGMOID) == pytest.approx((0.1875 + 0.27) / 2)
    assert quadratic(Z, Y, "sigmoid").item() == pytest.approx(0.22875, rel=1e-12)
    assert quadratic(Z, Y, "softmax").item() == pytest.approx(by_hand_quadratic(A_SOFTMAX), rel=1e-12)


def test_cross_entropy_sums_over_output_units():
    # example 1: −log ¾ − log ½ − log ¾ ; example 2: −log ⅘ − log ½ − log ½
    expected = (-2 * math.log(0.75) - math.log(0.5) - math.log(0.8) - 2 * math.log(0.5)) / 2
    assert by_hand_cross_entropy(A_SIGMOID) == pytest.approx(expected)
    assert cross_entropy(Z, Y, "sigmoid").item() == pytest.approx(expected, rel=1e-12)
    assert cross_entropy(Z, Y, "softmax").item() == pytest.approx(by_hand_cross_entropy(A_SOFTMAX), rel=1e-12)


def test_log_likelihood_is_minus_log_of_the_true_class_activation():
    expected_softmax = (-math.log(9 / 13) - math.log(4 / 6)) / 2
    assert log_likelihood(Z, Y, "softmax").item() == pytest.approx(expected_softmax, rel=1e-12)
    assert log_likelihood(Z, Y, "sigmoid").item() == pytest.approx((-math.log(0.75) - math.log(0.8)) / 2, rel=1e-12)


def test_cross_entropy_gradient_has_no_sigma_prime_term():
    """The slides: with cross-entropy, ∂Cᵢ/∂z_j^L = a_j − y_j (the learning slowdown is gone)."""
    z = Z.clone().requires_grad_(True)
    cross_entropy(z, Y, "sigmoid").backward()
    e = torch.tensor([[0, 1, 0], [1, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(z.grad, (torch.tensor(A_SIGMOID, dtype=torch.float64) - e) / 2)


def test_softmax_log_likelihood_gradient_is_a_minus_one_hot():
    """The slides: ∂Cᵢ/∂b_j^L = a_j − 1 for j = yᵢ and a_j otherwise."""
    z = Z.clone().requires_grad_(True)
    log_likelihood(z, Y, "softmax").backward()
    e = torch.tensor([[0, 1, 0], [1, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(z.grad, (torch.tensor(A_SOFTMAX, dtype=torch.float64) - e) / 2)


def test_quadratic_gradient_carries_sigma_prime():
    """The slides: ∂Cᵢ/∂z_j^L = (a_j − y_j) σ'(z_j), the source of the learning slowdown."""
    z = Z.clone().requires_grad_(True)
    quadratic(z, Y, "sigmoid").backward()
    a = torch.tensor(A_SIGMOID, dtype=torch.float64)
    e = torch.tensor([[0, 1, 0], [1, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(z.grad, (a - e) * a * (1 - a) / 2)


@pytest.mark.parametrize("name", sorted(COSTS))
@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_saturated_outputs_give_finite_costs(name, output):
    z = torch.tensor([[80.0, -80.0, 0.0]])
    for label in (0, 1):
        value = COSTS[name](z, torch.tensor([label]), output)
        assert torch.isfinite(value), (name, output, label, value)
