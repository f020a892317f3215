import itertools
import math
import random
from collections import Counter

import pytest

from mtl_nlp.data.batching import LengthGroupedBatchSampler, SortedBatchSampler, cut_batches
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.data.pipeline import prepare_task_data
from mtl_nlp.data.sampling import TaskSampler, task_probabilities
from mtl_nlp.registry import get_task

SIZES = {"a": 900, "b": 90, "c": 10}


def test_proportional_probabilities():
    assert task_probabilities(SIZES, "proportional") == {"a": 0.9, "b": 0.09, "c": 0.01}


def test_uniform_probabilities():
    assert task_probabilities(SIZES, "uniform") == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


def test_temperature_probabilities():
    # T=2: weights sqrt(900)=30, sqrt(90)=9.4868, sqrt(10)=3.1623
    probabilities = task_probabilities(SIZES, "temperature", temperature=2.0)
    total = 30 + 90**0.5 + 10**0.5
    assert probabilities == pytest.approx({"a": 30 / total, "b": 90**0.5 / total, "c": 10**0.5 / total})
    assert task_probabilities(SIZES, "temperature", 1.0) == pytest.approx(task_probabilities(SIZES))


@pytest.mark.parametrize("strategy", ["proportional", "temperature", "uniform"])
def test_sampled_frequencies_follow_probabilities(strategy):
    probabilities = task_probabilities(SIZES, strategy, 2.0)
    sampler = TaskSampler(probabilities, seed=7)
    counts = Counter(next(sampler) for _ in range(20000))
    for task, p in probabilities.items():
        assert counts[task] / 20000 == pytest.approx(p, abs=0.012)


def test_same_seed_same_sequence_and_state_round_trip():
    first = TaskSampler(task_probabilities(SIZES), seed=3)
    second = TaskSampler(task_probabilities(SIZES), seed=3)
    assert [next(first) for _ in range(200)] == [next(second) for _ in range(200)]
    state = first.state_dict()
    upcoming = [next(first) for _ in range(50)]
    second.load_state_dict({"rng": list(state["rng"])})
    assert [next(second) for _ in range(50)] == upcoming
    assert [next(TaskSampler(task_probabilities(SIZES), seed=4)) for _ in range(200)] != upcoming


def test_unknown_strategy():
    with pytest.raises(ValueError, match="sampling strategy 'greedy' is not one of"):
        task_probabilities(SIZES, "greedy")


def test_cut_batches_by_rows_and_by_token_budget():
    lengths = [5, 5, 6, 6, 9, 20]
    assert cut_batches(range(6), lengths, batch_size=4, max_tokens=None) == [[0, 1, 2, 3], [4, 5]]
    # Budget 20 tokens: 3 x 6 = 18 fits, a 4th row would make 4 x 9 = 36; 20 alone fits.
    assert cut_batches(range(6), lengths, batch_size=4, max_tokens=20) == [[0, 1, 2], [3, 4], [5]]


def test_length_grouped_batches_cover_every_example_once_and_pad_little():
    rng = random.Random(0)
    lengths = [rng.randint(5, 60) for _ in range(1000)]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, seed=1)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert 1 - sum(lengths) / padded < 0.05
    # The shuffle changes with the epoch and is reproducible.
    sampler.set_epoch(1)
    assert list(sampler) != batches
    sampler.set_epoch(0)
    assert list(sampler) == batches


def test_a_window_of_one_batch_draws_the_batches_of_a_plain_shuffle():
    rng = random.Random(0)
    lengths = [rng.randint(5, 60) for _ in range(1000)]
    order = list(range(1000))
    random.Random("1-0").shuffle(order)  # the sampler's shuffle of seed 1, epoch 0
    plain = [order[begin:begin + 16] for begin in range(0, 1000, 16)]
    batches = list(LengthGroupedBatchSampler(lengths, batch_size=16, seed=1, window_batches=1))
    # each batch is a run of the shuffle (sorted inside itself, which its padding does not mind)
    assert sorted(map(sorted, batches)) == sorted(map(sorted, plain))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert 1 - sum(lengths) / padded > 0.3  # random lengths in a batch: much padding


def test_token_budget_is_respected():
    rng = random.Random(0)
    lengths = [rng.randint(5, 60) for _ in range(500)]
    batches = list(LengthGroupedBatchSampler(lengths, batch_size=32, max_tokens=256, seed=0))
    assert all(len(b) * max(lengths[i] for i in b) <= 256 for b in batches)
    assert sorted(i for batch in batches for i in batch) == list(range(500))


def test_ranks_share_out_the_same_batches():
    lengths = [3 + i % 17 for i in range(103)]
    whole = LengthGroupedBatchSampler(lengths, batch_size=8, seed=5)
    ranks = [LengthGroupedBatchSampler(lengths, batch_size=8, seed=5, num_replicas=2, rank=r) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 7  # 13 batches, one repeated to even out
    assert list(ranks[0]) + list(ranks[1]) == list(whole)[0::2] + list(whole)[1::2] + [list(whole)[0]]


@pytest.mark.parametrize("examples, replicas", [(3, 4), (20, 8), (33, 4)])
def test_a_task_smaller_than_the_processes_gives_every_rank_a_batch(examples, replicas):
    lengths = [5] * examples
    whole = list(LengthGroupedBatchSampler(lengths, batch_size=16, seed=1))
    ranks = [list(LengthGroupedBatchSampler(lengths, batch_size=16, seed=1, num_replicas=replicas, rank=r))
             for r in range(replicas)]
    per_rank = -(-len(whole) // replicas)
    assert [len(batches) for batches in ranks] == [per_rank] * replicas
    # Rank r's batch i is the whole epoch's batch (i * replicas + r), counted round the epoch.
    assert ranks == [[whole[(i * replicas + r) % len(whole)] for i in range(per_rank)]
                     for r in range(replicas)]


def test_resume_mid_epoch_skips_batches():
    lengths = [3 + i % 7 for i in range(50)]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=4, seed=2)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, start=5)
    assert list(sampler) == full[5:] and len(sampler) == len(full) - 5


def test_sorted_eval_batches():
    sampler = SortedBatchSampler([4, 9, 1, 7, 3], batch_size=2)
    assert list(sampler) == [[1, 3], [0, 4], [2]]
    assert len(sampler) == 3 and sampler.batch_size == 2


def test_two_ranks_draw_the_same_task_sequence_over_their_own_batches(tiny_tokenizer, tmp_path):
    tasks = prepare_task_data([get_task("demo_ner"), get_task("demo_sentiment")], tiny_tokenizer,
                              max_length=32, cache_dir=str(tmp_path), max_train_examples=100)
    ranks = [MultiTaskLoader(tasks, tiny_tokenizer, batch_size=8, strategy="temperature", seed=3,
                             num_replicas=2, rank=rank) for rank in (0, 1)]
    assert ranks[0].sizes == ranks[1].sizes == {"demo_ner": 7, "demo_sentiment": 7}
    drawn = [[task for task, _ in itertools.islice(loader, 40)] for loader in ranks]
    assert drawn[0] == drawn[1] and set(drawn[0]) == {"demo_ner", "demo_sentiment"}
    for task, data in tasks.items():
        seen = [{i for batch in rank.batch_samplers[task].epoch_batches(0) for i in batch} for rank in ranks]
        assert seen[0] | seen[1] == set(range(len(data.splits["train"])))
        assert len(seen[0] & seen[1]) <= 8  # only the batch repeated to even out the ranks


def test_each_task_epoch_lasts_until_every_task_expects_its_whole_set(tiny_tokenizer, tmp_path):
    from mtl_nlp.config import TrainConfig
    from mtl_nlp.training.setup import count_optimizer_steps

    tasks = prepare_task_data([get_task("demo_ner"), get_task("demo_sentiment")], tiny_tokenizer,
                              max_length=32, cache_dir=str(tmp_path), max_train_examples=100)
    larger = prepare_task_data([get_task("demo_sentiment")], tiny_tokenizer, max_length=32,
                               cache_dir=str(tmp_path), max_train_examples=400)
    tasks["demo_sentiment"] = larger["demo_sentiment"]

    def loader(strategy, **options):
        return MultiTaskLoader(tasks, tiny_tokenizer, batch_size=8, strategy=strategy, **options)

    assert loader("proportional").sizes == {"demo_ner": 13, "demo_sentiment": 50}
    assert loader("proportional").batches_per_task_epoch == 63  # = batches_per_epoch
    # T=2: p = sqrt(13), sqrt(50) normalised; the large task needs 50 / p = 50 + sqrt(650) draws
    assert loader("temperature").batches_per_task_epoch == math.ceil(50 + math.sqrt(50 * 13))  # 76
    assert loader("uniform").batches_per_task_epoch == 100
    assert loader("temperature", step_mode="all_tasks").batches_per_task_epoch == 100
    # annealed up: the mean of p over 11 points of the schedule from exponent 1 to 1/2
    sizes = {"a": 13, "b": 50}
    mean = sum(task_probabilities(sizes, "annealed", 2.0, point / 10)["b"] for point in range(11)) / 11
    assert loader("annealed").batches_per_task_epoch == math.ceil(50 / mean - 1e-9)
    each = TrainConfig(epochs=2, epoch="each_task")
    assert count_optimizer_steps(each, loader("temperature")) == 2 * 76
    assert count_optimizer_steps(TrainConfig(epochs=2), loader("temperature")) == 2 * 63
