"""One optimizer step in both step modes: the update equals the hand-combined task gradients."""

import pytest
import torch
from accelerate import Accelerator

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.training.step import StepRunner
from mtl_nlp.training.weighting import EqualWeighting, LossWeighting

HEADS = [
    HeadConfig(name="a", type="classification", labels=["x", "y"], dropout=0.0),
    HeadConfig(name="b", type="classification", labels=["x", "y", "z"], dropout=0.0),
]


class FixedCoefficients(LossWeighting):
    needs_task_gradients = True

    def combine(self, gram):
        return torch.tensor([2.0, 0.5], dtype=gram.dtype)


def make_model(model_dir):
    torch.manual_seed(0)
    model = MultiTaskModel.from_encoder(str(model_dir), HEADS)
    model.encoder.config.hidden_dropout_prob = 0.0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def batches(tokenizer):
    a = tokenizer(["anna visited new york .", "the film is dull"], padding=True, return_tensors="pt")
    b = tokenizer(["acme corp bought schmidt", "a good film"], padding=True, return_tensors="pt")
    return [("a", {**a, "labels": torch.tensor([0, 1])}), ("b", {**b, "labels": torch.tensor([2, 0])})]


def run_one_step(model, weighting, tokenizer, grad_accum=1, conflict_every=0, max_grad_norm=0.0,
                 grad_norm_mode="clip"):
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.SGD(list(model.parameters()) + list(weighting.parameters()), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    runner = StepRunner(accelerator, model, optimizer, scheduler, weighting, grad_accum=grad_accum,
                        batches_per_step=2, max_grad_norm=max_grad_norm, conflict_every=conflict_every,
                        grad_norm_mode=grad_norm_mode)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    stream = iter(batches(tokenizer) * grad_accum)
    result = runner.run(stream, step=1)
    update = {name: before[name] - p.detach() for name, p in model.named_parameters()}  # = gradient
    return update, result


def task_gradient(model_dir, tokenizer, task):
    model = make_model(model_dir)
    batch = dict(batches(tokenizer))[task]
    model(task=task, **batch)["loss"].backward()
    return {name: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for name, p in model.named_parameters()}


def test_all_tasks_equal_weights_add_the_task_gradients(tiny_model_dir, tiny_tokenizer):
    update, result = run_one_step(make_model(tiny_model_dir), EqualWeighting(["a", "b"]), tiny_tokenizer)
    ga, gb = (task_gradient(tiny_model_dir, tiny_tokenizer, t) for t in ("a", "b"))
    for name in update:
        torch.testing.assert_close(update[name], ga[name] + gb[name], atol=1e-6, rtol=1e-5)
    assert [task for task, _ in result.losses] == ["a", "b"] and result.cosines is None


def test_gradient_method_combines_shared_gradients_and_leaves_heads_alone(tiny_model_dir, tiny_tokenizer):
    update, _ = run_one_step(make_model(tiny_model_dir), FixedCoefficients(["a", "b"]), tiny_tokenizer)
    ga, gb = (task_gradient(tiny_model_dir, tiny_tokenizer, t) for t in ("a", "b"))
    for name in update:
        if name.startswith("encoder."):
            expected = 2.0 * ga[name] + 0.5 * gb[name]
        else:  # each head keeps its own task's gradient
            expected = ga[name] + gb[name]
        torch.testing.assert_close(update[name], expected, atol=1e-6, rtol=1e-5)


def test_gradient_accumulation_averages_rounds(tiny_model_dir, tiny_tokenizer):
    once, _ = run_one_step(make_model(tiny_model_dir), FixedCoefficients(["a", "b"]), tiny_tokenizer)
    twice, result = run_one_step(make_model(tiny_model_dir), FixedCoefficients(["a", "b"]), tiny_tokenizer,
                                 grad_accum=2)
    assert len(result.losses) == 4
    for name in once:  # the same batches twice, each divided by grad_accum: the same update
        torch.testing.assert_close(twice[name], once[name], atol=1e-6, rtol=1e-5)


def test_conflict_cosines_from_the_step_s_task_gradients(tiny_model_dir, tiny_tokenizer):
    _, result = run_one_step(make_model(tiny_model_dir), EqualWeighting(["a", "b"]), tiny_tokenizer,
                             conflict_every=1)
    ga, gb = (task_gradient(tiny_model_dir, tiny_tokenizer, t) for t in ("a", "b"))
    flat_a = torch.cat([ga[n].reshape(-1) for n in ga if n.startswith("encoder.")])
    flat_b = torch.cat([gb[n].reshape(-1) for n in gb if n.startswith("encoder.")])
    expected = float(torch.nn.functional.cosine_similarity(flat_a, flat_b, dim=0))
    assert result.cosines[0][1] == result.cosines[1][0]
    assert abs(result.cosines[0][1] - expected) < 1e-4 and abs(result.cosines[0][0] - 1) < 1e-6


def norm_of(update, names):
    return float(torch.sqrt(sum((update[name].double() ** 2).sum() for name in names)))


def test_normalize_scales_the_encoder_gradient_to_the_norm_and_clips_heads(tiny_model_dir, tiny_tokenizer):
    ga, gb = (task_gradient(tiny_model_dir, tiny_tokenizer, t) for t in ("a", "b"))
    whole = {name: ga[name] + gb[name] for name in ga}
    encoder = [name for name in whole if name.startswith("encoder.")]
    heads = [name for name in whole if not name.startswith("encoder.")]
    for bound in (1e-3, 100.0):  # below and above the gradient's own norm: scaled down and up
        update, _ = run_one_step(make_model(tiny_model_dir), EqualWeighting(["a", "b"]), tiny_tokenizer,
                                 max_grad_norm=bound, grad_norm_mode="normalize")
        assert norm_of(update, encoder) == pytest.approx(bound, rel=1e-4)
        scale = bound / norm_of(whole, encoder)
        for name in encoder:  # the encoder's direction is kept
            expected = scale * whole[name]
            torch.testing.assert_close(update[name], expected, atol=1e-6 * max(scale, 1), rtol=1e-4)
        head_norm = norm_of(whole, heads)
        assert norm_of(update, heads) == pytest.approx(min(head_norm, bound), rel=1e-4)  # clipped only
