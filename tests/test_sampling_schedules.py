"""Sampling schedules, the cap and the epoch definition, checked against hand computations."""

import itertools
import math

import pytest

from mtl_nlp import get_task, prepare_task_data
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.data.sampling import TaskSampler, anneal_exponent, sampling_sizes, task_probabilities

SIZES = {"a": 400.0, "b": 100.0}


def test_annealed_moves_from_proportional_to_temperature():
    # T = 2: exponent 1 at the start, 0.75 half-way, 0.5 at the end.
    assert anneal_exponent(0.0, 2.0) == 1.0
    assert anneal_exponent(0.5, 2.0) == 0.75
    assert anneal_exponent(1.0, 2.0) == 0.5
    assert task_probabilities(SIZES, "annealed", 2.0, progress=0.0) == pytest.approx({"a": 0.8, "b": 0.2})
    # 400 ** 0.5 = 20, 100 ** 0.5 = 10.
    assert task_probabilities(SIZES, "annealed", 2.0, progress=1.0) == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    middle = 400**0.75 / (400**0.75 + 100**0.75)
    assert task_probabilities(SIZES, "annealed", 2.0, progress=0.5)["a"] == pytest.approx(middle)


def test_annealed_down_runs_the_other_way():
    assert anneal_exponent(0.0, 4.0, "down") == 0.25
    assert anneal_exponent(1.0, 4.0, "down") == 1.0
    with pytest.raises(ValueError, match="anneal direction 'sideways' is not one of: up, down"):
        anneal_exponent(0.5, 2.0, "sideways")


def test_annealed_sampler_follows_its_progress():
    sampler = TaskSampler(SIZES, "annealed", temperature=2.0, seed=0, total_draws=11)
    assert sampler.probabilities()["a"] == pytest.approx(0.8)
    for _ in range(10):
        next(sampler)
    assert sampler.probabilities()["a"] == pytest.approx(2 / 3)
    # Over a long run the realised share of "a" lies between the two ends (about 0.73).
    long = TaskSampler(SIZES, "annealed", temperature=2.0, seed=1, total_draws=20000)
    share = sum(next(long) == "a" for _ in range(20000)) / 20000
    expected = sum(400**e / (400**e + 100**e) for e in [1 - 0.5 * i / 999 for i in range(1000)]) / 1000
    assert share == pytest.approx(expected, abs=0.01)


def test_round_robin_visits_tasks_in_turn_and_resumes():
    sampler = TaskSampler({"a": 9.0, "b": 1.0, "c": 5.0}, "round_robin")
    assert [next(sampler) for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]
    state = sampler.state_dict()
    restored = TaskSampler({"a": 9.0, "b": 1.0, "c": 5.0}, "round_robin")
    restored.load_state_dict(state)
    assert next(restored) == "b"


def test_cap_limits_a_task_s_sampling_size():
    # 1,000 batches of 32 = 32,000 examples capped at 3,200: a tenth of its batches count.
    sizes = sampling_sizes({"big": 1000, "small": 20}, {"big": 32000, "small": 640}, cap=3200)
    assert sizes == {"big": 100.0, "small": 20.0}
    assert sampling_sizes({"big": 1000}, {"big": 32000}) == {"big": 1000.0}
    assert task_probabilities(sizes) == pytest.approx({"big": 100 / 120, "small": 20 / 120})


@pytest.fixture
def demo_tasks(tiny_tokenizer, tmp_path):
    return prepare_task_data([get_task("demo_ner"), get_task("demo_sentiment")], tiny_tokenizer,
                             max_length=32, cache_dir=str(tmp_path))


def test_loader_caps_sampling_sizes_and_counts_realised_batches(demo_tasks, tiny_tokenizer):
    loader = MultiTaskLoader(demo_tasks, tiny_tokenizer, batch_size=10, cap=200, seed=0)
    examples = {name: len(data.splits["train"]) for name, data in demo_tasks.items()}
    expected = {name: loader.sizes[name] * min(1.0, 200 / examples[name]) for name in examples}
    assert loader.sampling_sizes == pytest.approx(expected)
    assert loader.batches_per_epoch == sum(loader.sizes.values())  # the cap changes the mix only
    drawn = [task for task, _ in itertools.islice(loader, 50)]
    assert loader.drawn == {name: drawn.count(name) for name in demo_tasks}
    assert sum(loader.drawn.values()) == 50


def test_all_tasks_mode_yields_a_batch_of_every_task_per_round(demo_tasks, tiny_tokenizer):
    loader = MultiTaskLoader(demo_tasks, tiny_tokenizer, batch_size=10, step_mode="all_tasks")
    assert loader.batches_per_step == 2
    order = [task for task, _ in itertools.islice(loader, 6)]
    assert order == ["demo_ner", "demo_sentiment"] * 3
    assert loader.drawn == {"demo_ner": 3, "demo_sentiment": 3}
    with pytest.raises(ValueError, match="step mode 'some' is not one of: one_task, all_tasks"):
        MultiTaskLoader(demo_tasks, tiny_tokenizer, batch_size=10, step_mode="some")


def test_epochs_in_steps_for_both_step_modes(demo_tasks, tiny_tokenizer):
    from mtl_nlp.config import TrainConfig
    from mtl_nlp.training.setup import count_optimizer_steps

    one = MultiTaskLoader(demo_tasks, tiny_tokenizer, batch_size=10)
    every = MultiTaskLoader(demo_tasks, tiny_tokenizer, batch_size=10, step_mode="all_tasks")
    batches = one.batches_per_epoch
    assert count_optimizer_steps(TrainConfig(epochs=1), one) == batches
    assert count_optimizer_steps(TrainConfig(epochs=1), every) == math.ceil(batches / 2)
    assert count_optimizer_steps(TrainConfig(epochs=2, grad_accum=3), every) == math.ceil(2 * batches / 6)
    assert count_optimizer_steps(TrainConfig(epochs=2, max_steps=5), every) == 5


def test_train_sort_window_reaches_every_task_sampler(demo_tasks, tiny_tokenizer):
    from mtl_nlp.config import ConfigError, load_run_config

    config = load_run_config(None, ["train.sort_window=1"])
    loader = MultiTaskLoader(demo_tasks, tiny_tokenizer, batch_size=10, sort_window=config.train.sort_window)
    assert {name: sampler.window_batches for name, sampler in loader.batch_samplers.items()} == {
        "demo_ner": 1, "demo_sentiment": 1}
    assert load_run_config(None, []).train.sort_window == 64
    with pytest.raises(ConfigError, match="train.sort_window must be positive, got 0"):
        load_run_config(None, ["train.sort_window=0"])
