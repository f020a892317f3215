"""The kinds of task heads and what each reports: the task types, the sentence poolings, the
metrics each type reports and may select on, and its default main metric. One home for names the
registry validates, the heads build, training scores and the result readers interpret."""

from __future__ import annotations

TASK_TYPES = ("classification", "token_classification", "regression", "multilabel", "multiple_choice",
              "extractive_qa")
# the types whose examples carry no label set: a value, one of each example's own options, or a
# span of each example's own context
LABEL_FREE_TYPES = ("regression", "multiple_choice", "extractive_qa")
# the types no teacher teaches (distill): an extractive QA task trains on windows of its contexts,
# cut by the student's tokenizer, which no teacher's outputs (over its own windows) line up with
UNTAUGHT_TYPES = ("extractive_qa",)
SENTENCE_TYPES = ("classification", "regression", "multilabel")  # one prediction per input text
# The transformers class each type exports to (`export`, and the usage its cards show); the
# sentence types: AutoModelForSequenceClassification.
AUTO_MODEL_CLASSES = {"token_classification": "AutoModelForTokenClassification",
                      "multiple_choice": "AutoModelForMultipleChoice",
                      "extractive_qa": "AutoModelForQuestionAnswering"}
SENTENCE_AUTO_MODEL = "AutoModelForSequenceClassification"
# Sentence representations of the sentence-level heads: mean of token states, first token,
# first token through a dense + tanh pooler (the standard transformers classifiers' computation).
POOLINGS = ("mean", "cls", "pooler")
# The metrics a task may choose as its main one (`metric:`, model selection and the overall
# score), by task type; the first is the default. Classification `f1` is the second label's F1
# of a two-label task (GLUE's MRPC F1); mse is left out, as higher must be better.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1", "matthews_correlation", "f1"),
    "token_classification": ("f1", "precision", "recall"),
    "regression": ("pearson", "spearman"),
    "multilabel": ("micro_f1", "macro_f1"),
    "multiple_choice": ("accuracy",),
    "extractive_qa": ("f1", "exact_match"),  # SQuAD's token F1 and exact match
}
# Each task type's default main metric (a task entry may choose another: `metric:`).
MAIN_METRIC = {task_type: choices[0] for task_type, choices in TASK_METRICS.items()}
# The metric keys every task of a type reports (training.metrics), whatever its labels: result
# files carry metrics, not task types, so readers recognise the type by these keys.
REPORTED_METRICS: dict[str, frozenset[str]] = {
    "token_classification": frozenset({"precision", "recall", "f1"}),  # entity level
    "classification": frozenset({"accuracy", "macro_f1"}),
    "regression": frozenset({"pearson", "spearman", "mse"}),
    "multilabel": frozenset({"micro_f1", "macro_f1"}),
    "multiple_choice": frozenset({"accuracy"}),
    "extractive_qa": frozenset({"exact_match", "f1"}),
}
