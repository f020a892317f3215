import numpy as np

from mtl_nlp import TaskSpec
from mtl_nlp.benchmark.hf_baseline import CountingCollator, score
from mtl_nlp.benchmark.inference_timing import time_call
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
