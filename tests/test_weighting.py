"""Loss-balancing formulas and gradient surgery, checked against hand computations."""

import math

import numpy as np
import pytest
import torch

from mtl_nlp.config import WeightingConfig
from mtl_nlp.training.weighting import (
    CAGrad,
    DynamicWeightAverage,
    LogSizeWeighting,
    RandomLossWeighting,
    TaskGradients,
    UncertaintyWeighting,
    build_weighting,
    cagrad_coefficients,
    cosine_matrix,
    dwa_weights,
    pcgrad_coefficients,
)
from mtl_nlp.training.weighting.gradient_methods import cagrad_simplex_weights, project_to_simplex


def no_reduce(tensor):
    return tensor


def test_equal_weights_keep_the_static_loss_weight():
    weighting = build_weighting(WeightingConfig(), {"a": 10, "b": 20}, {"a": 2.0, "b": 1.0})
    assert float(weighting.weigh("a", torch.tensor(3.0))) == 6.0
    assert weighting.current_weights() == {"a": 2.0, "b": 1.0}
    assert float(weighting.combine(torch.eye(2)).sum()) == 2.0


def test_log_size_weights():
    weighting = LogSizeWeighting(["a", "b"], {"a": 99, "b": 9999})
    # log(100) : log(10000) = 1 : 2, normalised to a mean of 1.
    assert weighting.current_weights() == pytest.approx({"a": 2 / 3, "b": 4 / 3})
    assert float(weighting.weigh("b", torch.tensor(1.5))) == pytest.approx(2.0)


def test_uncertainty_loss_and_gradient_move_only_the_task_s_log_variance():
    weighting = UncertaintyWeighting(["a", "b"])
    with torch.no_grad():
        weighting.log_variances.copy_(torch.tensor([0.5, -1.0]))
    loss = weighting.weigh("a", torch.tensor(2.0))
    assert float(loss.detach()) == pytest.approx(math.exp(-0.5) * 2.0 + 0.5)
    loss.backward()
    # d/ds (exp(-s) L + s) = 1 - exp(-s) L; the other task's s gets nothing.
    assert weighting.log_variances.grad.tolist() == pytest.approx([1 - math.exp(-0.5) * 2.0, 0.0])
    assert weighting.current_weights() == pytest.approx({"a": math.exp(-0.5), "b": math.exp(1.0)})


def test_dwa_updates_once_a_window_from_loss_ratios():
    weighting = DynamicWeightAverage(["a", "b"], window=2, temperature=2.0)
    losses = {1: (4.0, 1.0), 2: (4.0, 1.0), 3: (2.0, 1.0), 4: (2.0, 1.0), 5: (1.0, 2.0), 6: (1.0, 2.0)}
    for step, (a, b) in losses.items():
        weighting.observe("a", torch.tensor(a))
        weighting.observe("b", torch.tensor(b))
        weighting.end_step(step, no_reduce)
        if step == 2:  # one window seen: no ratio yet
            assert weighting.current_weights() == {"a": 1.0, "b": 1.0}
        if step == 4:  # ratios 2/4 and 1/1
            expected = 2 * np.exp([0.25, 0.5]) / np.exp([0.25, 0.5]).sum()
            assert list(weighting.current_weights().values()) == pytest.approx(list(expected))
        if step == 5:  # mid-window: unchanged
            assert list(weighting.current_weights().values()) == pytest.approx(list(expected))
    # ratios 1/2 and 2/1
    expected = 2 * np.exp([0.25, 1.0]) / np.exp([0.25, 1.0]).sum()
    assert list(weighting.current_weights().values()) == pytest.approx(list(expected))
    assert dwa_weights(torch.tensor([1.0, 1.0, 1.0]), 2.0).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_dwa_sums_window_losses_over_processes():
    weighting = DynamicWeightAverage(["a"], window=1, temperature=1.0)
    weighting.observe("a", torch.tensor(3.0))
    seen = []

    def reduce(tensor):  # two processes with the same losses
        seen.append(tensor.clone())
        return 2 * tensor

    weighting.end_step(1, reduce)
    assert float(weighting.last[0]) == 3.0 and len(seen) == 2


def test_rlw_weights_are_seeded_and_resumable():
    first, second = RandomLossWeighting(["a", "b", "c"], seed=5), RandomLossWeighting(["a", "b", "c"], seed=5)
    for step in range(1, 4):
        assert first.current_weights() == second.current_weights()
        assert sum(first.current_weights().values()) == pytest.approx(3.0)
        first.end_step(step, no_reduce)
        second.end_step(step, no_reduce)
    state = first.state_dict()
    restored = RandomLossWeighting(["a", "b", "c"], seed=99)
    restored.load_state_dict(state)
    first.end_step(4, no_reduce)
    restored.end_step(4, no_reduce)
    assert restored.current_weights() == first.current_weights()


def gram_of(*gradients):
    matrix = torch.tensor(gradients, dtype=torch.float64)
    return matrix, matrix @ matrix.T


def test_pcgrad_two_conflicting_tasks():
    g, gram = gram_of([1.0, 0.0], [-1.0, 1.0])
    # g1' = g1 - (g1.g2/|g2|^2) g2 = (0.5, 0.5); g2' = g2 - (g2.g1/|g1|^2) g1 = (0, 1).
    coefficients = pcgrad_coefficients(gram, [[1], [0]])
    assert coefficients.tolist() == pytest.approx([2.0, 1.5])
    assert (coefficients @ g).tolist() == pytest.approx([0.5, 1.5])


def test_pcgrad_aligned_tasks_are_just_added():
    _, gram = gram_of([1.0, 0.0], [1.0, 1.0])
    assert pcgrad_coefficients(gram, [[1], [0]]).tolist() == [1.0, 1.0]


def test_pcgrad_three_tasks_in_a_given_order():
    g, gram = gram_of([1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, -1.0, 1.0])
    orders = [[1, 2], [0, 2], [0, 1]]
    # g1: conflicts with g2 (dot -1): g1' = g1 + 0.5 g2 = (0.5, 0.5, 0); then g1'.g3 = -0.5:
    #     g1' += 0.25 g3 -> (0.5, 0.25, 0.25).
    # g2: g2.g1 = -1: g2' = g2 + g1 = (0, 1, 0); then g2'.g3 = -1: g2' += 0.5 g3 -> (0, 0.5, 0.5).
    # g3: g3.g1 = 0 (no conflict); g3.g2 = -1: g3' = g3 + 0.5 g2 = (-0.5, -0.5, 1).
    update = pcgrad_coefficients(gram, orders) @ g
    assert update.tolist() == pytest.approx([0.0, 0.25, 1.75])


def test_pcgrad_method_draws_orders_from_its_seed():
    from mtl_nlp.training.weighting import PCGrad

    _, gram = gram_of([1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, -1.0, 1.0])
    a, b = PCGrad(["x", "y", "z"], seed=3), PCGrad(["x", "y", "z"], seed=3)
    assert [a.combine(gram).tolist() for _ in range(5)] == [b.combine(gram).tolist() for _ in range(5)]


def test_simplex_projection():
    assert project_to_simplex(np.array([0.5, 0.5])).tolist() == [0.5, 0.5]
    assert project_to_simplex(np.array([2.0, 0.0])).tolist() == [1.0, 0.0]
    assert project_to_simplex(np.array([0.4, 0.3, 0.0])).tolist() == pytest.approx([0.5, 0.4, 0.1])
    assert project_to_simplex(np.array([1.0, 0.6, 0.0])).tolist() == pytest.approx([0.7, 0.3, 0.0])


def test_cagrad_orthogonal_equal_gradients():
    # Symmetric: w = (1/2, 1/2), g_w = g0 = (0.5, 0.5), lambda = c / |g_w| = alpha;
    # update (1 + alpha) g0 / (1 + alpha^2) = 1.2 g0 for alpha 0.5, times T = 2: (1.2, 1.2).
    g, gram = gram_of([1.0, 0.0], [0.0, 1.0])
    coefficients = cagrad_coefficients(gram, 0.5)
    assert coefficients.tolist() == pytest.approx([1.2, 1.2], abs=1e-6)
    assert (coefficients @ g).tolist() == pytest.approx([1.2, 1.2], abs=1e-6)


def test_cagrad_aligned_gradients_scale_like_the_sum():
    _, gram = gram_of([1.0, 1.0], [1.0, 1.0])
    # Every w gives g_w = g: update (1 + alpha) g / (1 + alpha^2) per task mean, times T.
    assert cagrad_coefficients(gram, 0.5).sum().item() == pytest.approx(2 * 1.5 / 1.25)


def test_cagrad_inner_problem_matches_a_grid_search_on_conflicting_tasks():
    _, gram = gram_of([1.0, 0.0], [-0.8, 0.6])
    matrix = gram.numpy()
    c = 0.5 * math.sqrt(matrix.mean())
    x = cagrad_simplex_weights(matrix, c)
    grid = np.linspace(0, 1, 100001)
    values = [w * (matrix @ [0.5, 0.5])[0] + (1 - w) * (matrix @ [0.5, 0.5])[1]
              + c * math.sqrt(np.array([w, 1 - w]) @ matrix @ np.array([w, 1 - w])) for w in grid]
    best = grid[int(np.argmin(values))]
    assert x[0] == pytest.approx(best, abs=1e-3) and x.sum() == pytest.approx(1.0)


def test_cagrad_three_tasks_improves_the_worst_task_over_the_mean_gradient():
    g, gram = gram_of([1.0, 0.0, 0.0], [-0.9, 0.3, 0.0], [0.0, 0.0, 1.0])
    update = cagrad_coefficients(gram, 0.5) @ g
    mean = g.mean(dim=0)
    # CAGrad maximises the worst task's decrease within a ball around the mean gradient.
    assert float((g @ update).min()) > float((g @ mean).min())
    assert CAGrad(["a", "b", "c"], c=0.5).combine(gram).tolist() == cagrad_coefficients(gram, 0.5).tolist()


def test_task_gradients_take_accumulate_and_write_back():
    weight = torch.nn.Parameter(torch.zeros(2))
    bias = torch.nn.Parameter(torch.zeros(1))
    rows = TaskGradients([weight, bias], ["a", "b"])
    for task, (w, b) in [("a", ([1.0, 2.0], [3.0])), ("b", ([0.0, 1.0], [1.0])), ("a", ([1.0, 0.0], [0.0]))]:
        weight.grad, bias.grad = torch.tensor(w), torch.tensor(b)
        rows.take(task)
        assert weight.grad is None and bias.grad is None
    assert rows.matrix.tolist() == [[2.0, 2.0, 3.0], [0.0, 1.0, 1.0]]
    assert rows.gram().tolist() == [[17.0, 5.0], [5.0, 2.0]]
    rows.write(torch.tensor([1.0, 2.0]))
    assert weight.grad.tolist() == [2.0, 4.0] and bias.grad.tolist() == [5.0]
    assert rows.filled == set()  # the next take overwrites the rows


def test_task_gradients_record_keeps_each_batch_s_own_gradient():
    weight = torch.nn.Parameter(torch.zeros(2))
    rows = TaskGradients([weight], ["a", "b"])
    weight.grad = torch.tensor([1.0, 0.0])
    rows.record("a")
    weight.grad = torch.tensor([1.0, 3.0])  # accumulated: b added (0, 3)
    rows.record("b")
    assert rows.matrix.tolist() == [[1.0, 0.0], [0.0, 3.0]]
    assert weight.grad.tolist() == [1.0, 3.0]


def test_cosine_matrix_from_gram():
    _, gram = gram_of([1.0, 0.0], [-1.0, 1.0], [0.0, 0.0])
    cosines = cosine_matrix(gram)
    assert cosines[0][1] == pytest.approx(-1 / math.sqrt(2)) and cosines[0][0] == pytest.approx(1.0)
    assert cosines[2] == [None, None, None]
