"""Data: loading, label alignment, features, batching and the multi-task loader."""

from mtl_nlp.common.errors import DataError
from mtl_nlp.data.batching import LengthGroupedBatchSampler, SortedBatchSampler
from mtl_nlp.data.conll import ConllFormatError, read_conll
from mtl_nlp.data.features import IGNORE_INDEX, align_word_labels
from mtl_nlp.data.loading import load_task_splits
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.data.pipeline import TaskData, build_collator, prepare_task_data
from mtl_nlp.data.sampling import TaskSampler, task_probabilities

__all__ = [
    "IGNORE_INDEX",
    "ConllFormatError",
    "DataError",
    "LengthGroupedBatchSampler",
    "MultiTaskLoader",
    "TaskData",
    "TaskSampler",
    "align_word_labels",
    "build_collator",
    "load_task_splits",
    "prepare_task_data",
    "read_conll",
    "SortedBatchSampler",
    "task_probabilities",
]
