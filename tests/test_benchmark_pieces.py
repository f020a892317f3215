import argparse

import numpy as np
import pytest
from benchmarks.answer_scores import score_answers, word_spans
from benchmarks.hf_baseline import CountingCollator, score
from benchmarks.inference_timing import time_call
from benchmarks.profile_breakdown import breakdown, parse_raw
from benchmarks.trainer_pair import limit_flags, limit_overrides, pair_table

from mtl_nlp import TaskSpec
from mtl_nlp.data.pipeline import TaskData, build_collator


def test_counting_collator_counts_real_and_padded_tokens(tiny_tokenizer):
    collator = CountingCollator(build_collator("classification", tiny_tokenizer))
    features = [{"input_ids": [2, 7, 3], "attention_mask": [1, 1, 1], "labels": 0},
                {"input_ids": [2, 7, 8, 9, 3], "attention_mask": [1] * 5, "labels": 1}]
    batch = collator(features)
    assert batch["input_ids"].shape == (2, 5)
    assert (collator.real_tokens, collator.padded_tokens) == (8, 10)


def test_score_uses_word_level_tags_for_tagging():
    spec = TaskSpec(name="ner", type="token_classification", dataset="x")
    data = TaskData(spec=spec, labels=["O", "B-PER", "I-PER"], splits=None)
    logits = np.zeros((1, 5, 3))
    for position, tag in enumerate([0, 1, 2, 2, 0]):
        logits[0, position, tag] = 1.0
    labels = np.array([[-100, 1, -100, 2, -100]])  # position 2 is a later subword: not scored
    assert score(data, logits, labels) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_time_call_warms_up_then_times_each_repeat():
    calls = []
    seconds = time_call(lambda: calls.append(1), repeats=3)
    assert len(calls) == 4 and len(seconds) == 3 and all(s >= 0 for s in seconds)


def test_profile_breakdown_puts_samples_into_training_phases():
    loop = ("<module> (cls_ner.py:97);main (cls_ner.py:82);"
            "MultiTaskTrainer.train (mtl_nlp/training/trainer.py:118)")
    step = (f"{loop};MultiTaskTrainer._loop (mtl_nlp/training/trainer.py:141);"
            "StepRunner.run (mtl_nlp/training/step.py:80);"
            "StepRunner._forward_backward (mtl_nlp/training/step.py:110)")  # forward and backward both
    lines = [
        "<module> (cls_ner.py:97);main (cls_ner.py:60);prepare_task_data (mtl_nlp/data/pipeline.py:43) 50",
        f"{step};Module._call_impl (torch/nn/modules/module.py:1789);MultiTaskModel.forward (m.py:61) 40",
        f"{step};Accelerator.backward (accelerate/accelerator.py:2861);backward (torch/_tensor.py:623) 45",
        f"{step};AcceleratedOptimizer.step (accelerate/optimizer.py:186);adamw (torch/optim/adam.py:248) 10",
        f"{step};Accelerator.clip_grad_norm_ (accelerate/accelerator.py:3048) 2",
        f"{step};send_to_device (accelerate/utils/operations.py:150) 1",
        f"{step};_BaseDataLoaderIter.__next__ (torch/utils/data/dataloader.py:725);"
        "DataCollatorForTokenClassification.torch_call (transformers/data/data_collator.py:330) 1",
        f"{step};MultiTaskBatches.__iter__ (mtl_nlp/data/multitask.py:40);"
        "TaskSampler.next_task (mtl_nlp/data/sampling.py:70) 1",
        # padding inside the model's forward is model work, not collation
        f"{step};Module._call_impl (torch/nn/modules/module.py:1789);pad (torch/nn/functional.py:5000) 4",
        f"{loop};tqdm.update (tqdm/std.py:1240) 2",
        f"{loop};MultiTaskTrainer.evaluate_and_checkpoint (mtl_nlp/training/trainer.py:170);"
        "Module._call_impl (torch/nn/modules/module.py:1789) 30",
        "",
    ]
    result = breakdown(parse_raw(lines))
    assert result["samples"] == {
        "outside the training loop": 50, "backward": 45, "forward": 44, "evaluation and checkpoints": 30,
        "optimizer": 10, "gradient clipping": 2, "logging": 2, "device transfer": 1, "collation": 1,
        "sampling and batching": 1,
    }
    assert result["share_of_step_time"]["forward"] == 44 / 106
    assert result["toolkit_overhead"] == 5 / 106  # device transfer, collation, sampling, logging


def test_profile_breakdown_refuses_a_profile_without_training_steps():
    with pytest.raises(ValueError, match="no samples of training steps"):
        breakdown(parse_raw(["<module> (cls_ner.py:97);main (cls_ner.py:60) 50"]))


def test_strategy_tables_mean_std_and_gain_over_single_task():
    from benchmarks.strategy_tables import strategy_tables

    def run(ner=None, cls=None, wall=10.0, steps=10, train=5.0):
        metrics = {}
        if ner is not None:
            metrics["ner"] = {"precision": 0, "recall": 0, "f1": ner}
        if cls is not None:
            metrics["cls"] = {"accuracy": cls, "macro_f1": 0}
        return {"metrics": metrics, "wall_seconds": wall, "steps": steps, "train_seconds": train}

    results = {
        "single_m_ner/seed1": run(ner=0.50, wall=20), "single_m_ner/seed2": run(ner=0.60, wall=30),
        "single_m_cls/seed1": run(cls=0.80, wall=40), "single_m_cls/seed2": run(cls=0.90, wall=50),
        "arm/seed1": run(ner=0.55, cls=0.82, wall=35, steps=20, train=10.0),
        "arm/seed2": run(ner=0.61, cls=0.90, wall=45, steps=20, train=12.0),
    }
    table = strategy_tables(results, {"arm": "m"}, {"m": {"single_m_ner": "ner", "single_m_cls": "cls"}})
    lines = table.splitlines()
    assert lines[0] == "### mix `m`"
    assert lines[4] == ("| single-task | 2 | 0.5500 ± 0.0707 | 0.8500 ± 0.0707 | 0.7000 | - | 70 | - |")
    # delta: ner (+0.05, +0.01) -> +0.03, cls (+0.02, 0) -> +0.01; mean +0.02 = +2.00 points.
    assert lines[5] == ("| arm | 2 | 0.5800 ± 0.0424 | 0.8600 ± 0.0566 | 0.7200 | +2.00 pts | 40 | 0.550 |")


def test_answer_scores_count_entities_by_label_and_character_span():
    words, tags = ["Anna", "Schmidt", "visited", "New", "York"], ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    text, gold = word_spans(words, tags)
    assert text == "Anna Schmidt visited New York"
    assert gold == {("PER", 0, 12), ("LOC", 21, 29)}
    found = [[{"label": "PER", "start": 0, "end": 12, "score": 0.9},  # right
              {"label": "LOC", "start": 21, "end": 24, "score": 0.8},  # boundary wrong
              {"label": "ORG", "start": 13, "end": 20, "score": 0.6}]]  # not an entity
    # precision 1/3, recall 1/2: F1 = 2 * (1/3 * 1/2) / (1/3 + 1/2) = 0.4
    assert score_answers("token_classification", found, [gold]) == pytest.approx(0.4)
    assert score_answers("token_classification", [[]], [set()]) == 0.0
    labels = [{"label": "positive"}, {"label": "negative"}, {"label": "negative"}]
    gold_labels = ["positive", "positive", "negative"]
    assert score_answers("classification", labels, gold_labels) == pytest.approx(2 / 3)


def test_joint_exact_match_needs_the_intent_and_exactly_the_gold_spans():
    from benchmarks.joint_scores import joint_exact_match

    gold_intents = ["flight", "flight", "fare", "fare"]
    gold_spans = [{("city", 10, 16)}, {("city", 10, 16)}, set(), {("city", 0, 4)}]
    intents = [{"label": "flight"}, {"label": "flight"}, {"label": "fare"}, {"label": "flight"}]
    entities = [
        [{"label": "city", "start": 10, "end": 16, "score": 0.9}],  # right
        [{"label": "city", "start": 10, "end": 16}, {"label": "date", "start": 0, "end": 3}],  # one extra
        [],  # right: no slots, none answered
        [{"label": "city", "start": 0, "end": 4}],  # wrong intent
    ]
    assert joint_exact_match(intents, entities, gold_intents, gold_spans) == 0.5
    assert joint_exact_match([], [], [], []) == 0.0


def test_machine_description_reads_the_cpu_model_and_its_bf16_flags():
    from benchmarks.machine import cpu_model_and_flags

    cpuinfo = ("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse avx512f avx512_bf16\n\n"
               "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
    assert cpu_model_and_flags(cpuinfo) == ("AMD EPYC 9R14", {"fpu", "sse", "avx512f", "avx512_bf16"})
    assert cpu_model_and_flags("") == ("", set())


def test_serve_load_statistics_and_loopback_only():
    from benchmarks.serve_load import check_loopback, parse_cores, percentile, summarize

    latencies = [0.010 * step for step in range(1, 101)]  # 10 ms .. 1000 ms
    assert percentile(latencies, 0.50) == pytest.approx(0.50)
    assert percentile(latencies, 0.99) == pytest.approx(0.99)
    summary = summarize(latencies, seconds=4.0)
    assert summary["texts_per_second"] == 25.0 and summary["p99_ms"] == pytest.approx(990.0)
    check_loopback("http://127.0.0.1:8000/predict")
    with pytest.raises(SystemExit, match="only sends to loopback"):
        check_loopback("http://example.org/predict")
    assert parse_cores("0") == {0} and parse_cores("0,2-4") == {0, 2, 3, 4}  # taskset's lists


def test_trainer_pair_passes_only_the_set_data_limits_to_each_arm():
    args = argparse.Namespace(max_train_examples=4000, max_eval_examples=None)
    assert limit_flags(args) == ["--max-train-examples", "4000"]
    assert limit_overrides(args) == ["max_train_examples=4000"]


def test_trainer_pair_table_gives_each_pair_its_ratio_and_both_scores():
    def arm(rate, exact):
        return {"real_tokens_per_second": rate, "test": {"exact_match": exact, "f1": exact + 0.1}}

    rows = [{"hf_trainer": arm(1000.0, 0.5), "mtl_nlp": arm(2000.0, 0.52)},
            {"hf_trainer": arm(1000.0, 0.5), "mtl_nlp": arm(1600.0, 0.51)},
            {"hf_trainer": arm(1000.0, 0.5), "mtl_nlp": arm(1800.0, 0.50)}]
    table = pair_table("squad", rows).splitlines()
    assert table[2] == "| 1 | 1000 | 2000 | 2.00 | 0.5000 | 0.5200 | 0.6000 | 0.6200 |"
    assert table[-1] == "median tokens/s ratio over 3 pair(s): 1.80"
