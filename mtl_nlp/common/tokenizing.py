"""Encoding shared by training data and prediction: a leaf module, so that modeling and the
Predictor need neither `datasets` nor the data pipeline."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100  # label of positions that carry no loss: special tokens and non-first subwords


def encode_texts(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], pairs: list[str] | None, max_length: int,
    **kwargs,
) -> dict[str, list]:
    """Tokenize texts, or (text, text_pair) pairs with the tokenizer's pair encoding (segment ids
    1 on the second text for BERT-style models); an over-long pair loses tokens from its longer
    text first."""
    if pairs is None:
        return tokenizer(texts, truncation=True, max_length=max_length, **kwargs)
    return tokenizer(texts, pairs, truncation="longest_first", max_length=max_length, **kwargs)


def option_pairs(question: str, options: list[str], context: str | None) -> tuple[list[str], list[str]]:
    """The (first, second) texts of a multiple-choice question's rows, one per option: (question,
    option), or with a context (context, question + option), as transformers' multiple-choice
    example recipe pairs them."""
    if context:
        return [context] * len(options), [f"{question} {option}" for option in options]
    return [question] * len(options), list(options)


def context_room(tokenizer: PreTrainedTokenizerBase, questions: list[str], max_length: int) -> list[int]:
    """The tokens each question leaves its context in a (question, context) window of max_length
    (special tokens counted): a context's windows need more than the stride they share."""
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True)
    return [room - len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
