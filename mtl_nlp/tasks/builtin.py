"""Built-in task entries: the benchmark tasks and the embedded demo tasks.

The benchmark tasks load from the Hugging Face Hub by default; a run with `data_dir=PATH` reads
them from local files laid out as PATH/conll2003/{train,valid,test}.txt,
PATH/sst2/{train,dev,test}.tsv, PATH/ag_news/{train,test}.tsv, PATH/stsb/{train,dev,test}.tsv and
PATH/glue/<task>/{train,test}.tsv for the GLUE tasks cola, mrpc, rte, qnli and mnli,
PATH/commonsenseqa/{train,test}.jsonl and PATH/qa/{train,test}.jsonl (squad).
"""

from __future__ import annotations

from mtl_nlp.common.glue import GLUE_METRICS
from mtl_nlp.registry import TaskSpec, register_task
from mtl_nlp.tasks.demo_corpus import DEMO_DIR

CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
AG_NEWS_LABELS = ("World", "Sports", "Business", "Sci/Tech")
SST2_LABELS = ("negative", "positive")
DEMO_SPLITS = ("train", "validation", "test")
ENTAILMENT_LABELS = ("entailment", "not_entailment")


def glue_task(
    name: str, columns: tuple[str, ...], labels: tuple[str, ...], description: str,
    test_split: str = "validation",
) -> TaskSpec:
    """A GLUE task from the Hub's nyu-mll/glue (configuration `name`) or PATH/glue/<name>/ files.

    GLUE's test splits carry no labels, so its validation split is the test split (the usual
    "GLUE dev score"), and model selection uses a part held out of train, as SST-2 does. The
    labels are GLUE's class names in its order, so the Hub's class ids and the local files' 0/1
    (CoLA, MRPC) both read as them. The main metric is GLUE's (the first, for a task scored by two)."""
    return TaskSpec(
        name=name, type="classification", dataset="nyu-mll/glue", dataset_config=name,
        splits={"train": "train", "test": test_split},
        local_files={"train": f"glue/{name}/train.tsv", "test": f"glue/{name}/test.tsv"},
        local_format="tsv",  # MRPC holds an unbalanced `"`: quotes are plain text
        text_column=columns[0], text_pair_column=columns[1] if len(columns) > 1 else None,
        labels=labels, metric=GLUE_METRICS[name][0], description=description,
    )


GLUE_TASKS = (
    glue_task("cola", ("sentence",), ("unacceptable", "acceptable"),
              "GLUE CoLA linguistic acceptability (Matthews correlation)"),
    glue_task("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"),
              "GLUE MRPC paraphrase of a sentence pair (accuracy and F1)"),
    glue_task("rte", ("sentence1", "sentence2"), ENTAILMENT_LABELS,
              "GLUE RTE textual entailment of a sentence pair"),
    glue_task("qnli", ("question", "sentence"), ENTAILMENT_LABELS,
              "GLUE QNLI: does the sentence answer the question"),
    # MNLI's matched validation split is its test split (GLUE's "MNLI-m").
    glue_task("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
              "GLUE MNLI natural language inference (entailment, neutral, contradiction)",
              test_split="validation_matched"),
)


def demo_task(name: str, task_type: str, description: str) -> TaskSpec:
    """An embedded demo task: CoNLL files for tagging, TSV files for classification."""
    fmt, extension = ("conll", "txt") if task_type == "token_classification" else ("tsv", "tsv")
    files = {split: str(DEMO_DIR / name / f"{split}.{extension}") for split in DEMO_SPLITS}
    return TaskSpec(name=name, type=task_type, data_files=files, format=fmt, description=description)


BUILTIN_TASKS = (
    TaskSpec(
        name="conll2003",
        type="token_classification",
        dataset="eriktks/conll2003",
        local_files={
            "train": "conll2003/train.txt",
            "validation": "conll2003/valid.txt",
            "test": "conll2003/test.txt",
        },
        local_format="conll",
        tokens_column="tokens",
        tags_column="ner_tags",
        labels=CONLL_TAGS,
        description="CoNLL-2003 English NER (PER, ORG, LOC, MISC), IOB2 tags",
    ),
    TaskSpec(
        name="sst2",
        type="classification",
        dataset="stanfordnlp/sst2",
        # The Hub's SST-2 test split carries no labels (-1): its validation split is the test
        # set (the usual "SST-2 dev accuracy"), and model selection uses a part held out of train.
        splits={"train": "train", "test": "validation"},
        local_files={"train": "sst2/train.tsv", "validation": "sst2/dev.tsv", "test": "sst2/test.tsv"},
        local_format="tsv",
        text_column="sentence",
        label_column="label",
        labels=SST2_LABELS,
        description="SST-2 binary movie-review sentiment",
    ),
    TaskSpec(
        name="ag_news",
        type="classification",
        dataset="fancyzhx/ag_news",
        local_files={"train": "ag_news/train.tsv", "test": "ag_news/test.tsv"},
        local_format="tsv",
        text_column="text",
        label_column="label",
        labels=AG_NEWS_LABELS,
        description="AG News topic classification (World, Sports, Business, Sci/Tech)",
    ),
    TaskSpec(
        name="stsb",
        type="regression",
        # mteb/stsbenchmark-sts has the local column names and scores from 0 to 5; its test split
        # is the official STS-B test set (1,379 pairs with public scores), its validation split
        # the STS-B dev set. The local files instead follow GLUE: train + dev split GLUE's train,
        # and test is GLUE's dev set (= STS-B dev), so Hub and local test scores differ.
        dataset="mteb/stsbenchmark-sts",
        splits={"train": "train", "validation": "validation", "test": "test"},
        local_files={"train": "stsb/train.tsv", "validation": "stsb/dev.tsv", "test": "stsb/test.tsv"},
        # Fields holding `"` are quoted CSV-style in these files (SST-2's must stay unquoted).
        local_format="tsv_quoted",
        text_column="sentence1",
        text_pair_column="sentence2",
        label_column="score",
        description="STS Benchmark sentence-pair similarity, a score from 0 to 5 (Pearson/Spearman)",
    ),
    *GLUE_TASKS,
    TaskSpec(
        name="commonsense_qa",
        type="multiple_choice",
        # The Hub's test split carries no answers: its validation split (the official dev set) is
        # the test set, and model selection uses a part held out of train.
        dataset="tau/commonsense_qa",
        splits={"train": "train", "test": "validation"},
        local_files={"train": "commonsenseqa/train.jsonl", "test": "commonsenseqa/test.jsonl"},
        local_format="json",
        description="CommonsenseQA: a question and five options (accuracy)",
    ),
    TaskSpec(
        name="squad",
        type="extractive_qa",
        # SQuAD v1.1: its validation split (every gold answer) is the test set. The local files
        # follow the benchmark data: qa/train.jsonl holds SQuADShifts (SQuAD's protocol on new
        # domains) and qa/test.jsonl SQuAD v1.1 dev, so Hub and local training data differ.
        dataset="rajpurkar/squad",
        splits={"train": "train", "test": "validation"},
        local_files={"train": "qa/train.jsonl", "test": "qa/test.jsonl"},
        local_format="json",
        description="SQuAD v1.1 extractive question answering (exact match and F1)",
    ),
    demo_task("demo_ner", "token_classification", "embedded demo NER (PER, ORG, LOC) from templates"),
    demo_task("demo_sentiment", "classification", "embedded demo review sentiment (negative, positive)"),
    demo_task("demo_topic", "classification", "embedded demo news topics (4 AG News classes)"),
)


def register_builtin_tasks() -> None:
    """Register every built-in entry (called once when mtl_nlp.tasks is imported)."""
    for spec in BUILTIN_TASKS:
        register_task(spec)
