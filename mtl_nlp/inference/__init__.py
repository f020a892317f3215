"""Predictions from a trained checkpoint: the Predictor and what it reads and answers."""

from mtl_nlp.inference.engines import BACKENDS, build_engine, store_linear_weights
from mtl_nlp.inference.entities import bio_spans, entities, tokenizer_words, windowed_text_entities
from mtl_nlp.inference.errors import BackendError, PredictorInputError, UnknownTaskError
from mtl_nlp.inference.inputs import TextInput, check_known_tasks, input_from_line, task_list, to_json_line
from mtl_nlp.inference.predictor import Predictor

__all__ = [
    "BACKENDS", "BackendError", "Predictor", "PredictorInputError", "TextInput", "UnknownTaskError",
    "bio_spans", "build_engine", "check_known_tasks", "entities", "input_from_line", "store_linear_weights",
    "task_list", "to_json_line", "tokenizer_words", "windowed_text_entities",
]
