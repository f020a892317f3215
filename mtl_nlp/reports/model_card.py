"""Model cards (README.md in the Hugging Face Hub's format) for checkpoints and task exports.

A card is YAML metadata (library, tags, datasets, metrics, base model, pipeline_tag for
exports, results as model-index) followed by markdown: the tasks with their labels, the
training data, the run's config, the per-task scores, and how to load the model. Everything
comes from the checkpoint's own files (mtl_nlp.json, metrics.json), so `push_to_hub` of an
output_dir or an export carries a complete card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCardData

from mtl_nlp.common.glue import GLUE_AVERAGE
from mtl_nlp.common.run_files import CHECKPOINT_CONFIG
from mtl_nlp.common.task_types import AUTO_MODEL_CLASSES, SENTENCE_AUTO_MODEL
from mtl_nlp.reports.run_results import OVERALL, main_metrics_of, read_metrics_if_written, task_entries

CARD = "README.md"
TASK_TAGS = {
    "classification": "text-classification",
    "token_classification": "token-classification",
    "regression": "text-classification",
    "multilabel": "text-classification",
    "multiple_choice": "multiple-choice",
    "extractive_qa": "question-answering",
}
TYPE_WORDS = {
    "classification": "text classification",
    "token_classification": "token tagging (BIO entities)",
    "regression": "regression (one score per text)",
    "multilabel": "multi-label classification",
    "multiple_choice": "multiple choice (one of each question's options)",
    "extractive_qa": "extractive question answering (a span of each question's context)",
}
MAX_LISTED_LABELS = 20
# transformers has no multiple-choice pipeline: the export's card shows the model called directly
CHOICE_USAGE = [
    "```python",
    "from transformers import AutoModelForMultipleChoice, AutoTokenizer",
    "",
    'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_HUB_ID")',
    'model = AutoModelForMultipleChoice.from_pretrained("PATH_OR_HUB_ID")',
    'question, choices = "Where do you keep the milk?", ["fridge", "oven", "garden"]',
    'rows = tokenizer([question] * len(choices), choices, padding=True, return_tensors="pt")',
    "logits = model(**{key: value.unsqueeze(0) for key, value in rows.items()}).logits",
    "print(choices[logits.argmax(-1).item()])",
    "```",
]
# transformers 5 has no question-answering pipeline either: the model called on a question
ANSWER_USAGE = [
    "```python",
    "from transformers import AutoModelForQuestionAnswering, AutoTokenizer",
    "",
    'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_HUB_ID")',
    'model = AutoModelForQuestionAnswering.from_pretrained("PATH_OR_HUB_ID")',
    'inputs = tokenizer("Where does Anna live?", "Anna lives in Berlin.", return_tensors="pt")',
    "outputs = model(**inputs)",
    "start, end = outputs.start_logits.argmax().item(), outputs.end_logits.argmax().item()",
    'print(tokenizer.decode(inputs["input_ids"][0, start : end + 1]))',
    "```",
]
OWN_USAGE = {"multiple_choice": CHOICE_USAGE, "extractive_qa": ANSWER_USAGE}


def write_checkpoint_card(
    directory: str | Path, metrics: dict[str, Any] | None = None, split: str = "test"
) -> Path:
    """Write README.md into a multi-task checkpoint from its mtl_nlp.json and `metrics`
    (per-task scores on `split`; read from metrics.json in the directory when not given)."""
    directory = Path(directory)
    config = json.loads((directory / CHECKPOINT_CONFIG).read_text())
    if metrics is None:
        metrics = read_metrics_if_written(directory)
    mains, glue = main_metrics_of(metrics), metrics.get(OVERALL, {}).get(GLUE_AVERAGE)
    metrics = task_entries(metrics)
    tasks = config["tasks"]
    base_model = config.get("run_config", {}).get("model")
    data = _card_data(
        tasks, config, metrics, mains, split, base_model, name=directory.resolve().name,
        library_name="mtl-nlp", pipeline_tag=None,
    )
    body = [
        f"# {directory.resolve().name}",
        "",
        f"A multi-task model trained with [mtl_nlp](https://pypi.org/project/mtl-nlp/): one "
        f"`{base_model or config.get('encoder_type')}` encoder shared by {len(tasks)} task heads, "
        f"{_passes(config)}.",
        "",
        *_tasks_section(tasks, config),
        *_results_section(tasks, metrics, mains, split, glue),
        *_teachers_section(config),
        "## How to use",
        "",
        "```python",
        "from mtl_nlp import Predictor",
        "",
        'predictor = Predictor.from_pretrained("PATH_OR_HUB_ID")',
        'predictor.predict(["Angela Merkel visited Paris."])  # every task\'s answer per text',
        "```",
        "",
        "or `mtl-nlp predict PATH < texts.txt`. Any task exports to a standard transformers "
        "model: `mtl-nlp export PATH --task NAME OUT`.",
        "",
        *_config_section(config),
    ]
    return _write(directory, data, body)


def write_export_card(
    directory: str | Path, checkpoint: str | Path, config: dict[str, Any], head: Any,
    adapter_base: str | None = None,
) -> Path:
    """Write README.md into a single-task export of `checkpoint` (whose mtl_nlp.json is
    `config`); `head` is the exported task's HeadConfig; `adapter_base`: the base encoder of an
    exported peft adapter."""
    directory, checkpoint = Path(directory), Path(checkpoint)
    task = head.to_dict()
    saved = read_metrics_if_written(checkpoint)
    metrics, mains = task_entries(saved), main_metrics_of(saved)
    metrics = {name: value for name, value in metrics.items() if name == head.name}
    base_model = config.get("run_config", {}).get("model")
    pipeline_tag = TASK_TAGS[head.type]
    data = _card_data(
        [task], config, metrics, mains, "test", base_model, name=directory.resolve().name,
        library_name="transformers", pipeline_tag=pipeline_tag,
    )
    call = '"Angela Merkel visited Paris."'
    options = ', aggregation_strategy="first"' if head.type == "token_classification" else ""
    if head.type == "regression":
        options = ', function_to_apply="none"'
    elif head.type == "multilabel":
        options = ", top_k=None"
    if task.get("text_pair"):
        call = '{"text": "A man is playing a guitar.", "text_pair": "A person plays music."}'
    if adapter_base is not None:
        data = _card_data([task], config, metrics, mains, "test", adapter_base,
                          name=directory.resolve().name, library_name="peft", pipeline_tag=pipeline_tag)
        return _write(directory, data, _adapter_body(directory, task, config, metrics, mains, adapter_base))
    body = [
        f"# {directory.resolve().name}",
        "",
        f"Task `{head.name}` ({TYPE_WORDS[head.type]}) of a multi-task model trained with "
        f"[mtl_nlp](https://pypi.org/project/mtl-nlp/), exported as a standard transformers "
        f"model: the `{base_model or config.get('encoder_type')}` encoder layers this task uses and "
        "its head. It needs only transformers.",
        "",
        *_tasks_section([task], config),
        *_results_section([task], metrics, mains, "test"),
        "## How to use",
        "",
        *(OWN_USAGE[head.type] if head.type in OWN_USAGE else [
            "```python",
            "from transformers import pipeline",
            "",
            f'model = pipeline("{pipeline_tag}", model="PATH_OR_HUB_ID"{options})',
            f"model({call})",
            "```",
        ]),
        "",
        *_config_section(config),
    ]
    return _write(directory, data, body)


def _passes(config: dict[str, Any]) -> str:
    """How the model answers its tasks, by its sharing shape."""
    adapters = (config.get("sharing") or {}).get("adapters")
    if not adapters:
        return "answered together from one encoder pass"
    what = f"each task through its own LoRA adapter (peft, rank {adapters['r']})"
    if adapters["layers"] == "all":
        return f"{what}: one encoder pass per task, the base encoder in memory once"
    return (f"{what} in the top {adapters['layers']} layers: the layers below them run once for every "
            "task, then each task's adapted top layers")


def _adapter_body(directory: Path, task: dict[str, Any], config: dict[str, Any],
                  metrics: dict[str, dict[str, float]], mains: dict[str, str], base: str) -> list[str]:
    """The card of a task's peft adapter: what it is, its scores, and loading it on its base."""
    auto = AUTO_MODEL_CLASSES.get(task["type"], SENTENCE_AUTO_MODEL)
    if task["type"] in ("multiple_choice", "extractive_qa"):  # no label set: options or spans
        base_lines = [f'base = {auto}.from_pretrained("{base}")']
    else:
        labels = ["value"] if task["type"] == "regression" else task["labels"]
        base_lines = [
            f"labels = {labels!r}",
            f'base = {auto}.from_pretrained("{base}", num_labels=len(labels),',
            "    id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})",
        ]
    return [
        f"# {directory.resolve().name}",
        "",
        f"Task `{task['name']}` ({TYPE_WORDS[task['type']]}) of a multi-task model trained with "
        "[mtl_nlp](https://pypi.org/project/mtl-nlp/): the task's LoRA adapter on the encoder "
        f"`{base}`, its head in `modules_to_save`. It needs transformers and peft.",
        "",
        *_tasks_section([task], config),
        *_results_section([task], metrics, mains, "test"),
        "## How to use",
        "",
        "```python",
        "from peft import PeftModel",
        f"from transformers import {auto}",
        "",
        *base_lines,
        'model = PeftModel.from_pretrained(base, "PATH_OR_HUB_ID")',
        "```",
        "",
        *_config_section(config),
    ]


def _card_data(
    tasks: list[dict[str, Any]], config: dict[str, Any], metrics: dict[str, dict[str, float]],
    mains: dict[str, str], split: str, base_model: str | None, name: str, library_name: str,
    pipeline_tag: str | None,
) -> ModelCardData:
    sources = config.get("data_sources", {})
    hub_datasets = sorted({source for task in tasks if (source := sources.get(task["name"], ""))
                           and not source.startswith("local")})
    results = [
        EvalResult(
            task_type=TASK_TAGS[task["type"]], dataset_type=sources.get(task["name"], task["name"]),
            dataset_name=task["name"], dataset_split=split,
            metric_type=(metric := mains[task["name"]]),
            metric_value=round(float(metrics[task["name"]][metric]), 4),
        )
        for task in tasks if task["name"] in metrics
    ]
    return ModelCardData(
        library_name=library_name, pipeline_tag=pipeline_tag,
        base_model=base_model if base_model and not Path(base_model).is_absolute() else None,
        tags=["mtl-nlp", "multi-task", *sorted({TASK_TAGS[task["type"]] for task in tasks})],
        datasets=hub_datasets or None,
        metrics=sorted({result.metric_type for result in results}) or None,
        model_name=name if results else None, eval_results=results or None,
    )


def _tasks_section(tasks: list[dict[str, Any]], config: dict[str, Any]) -> list[str]:
    sources = config.get("data_sources", {})
    lines = ["## Tasks", "", "| task | type | labels | training data |", "|---|---|---|---|"]
    for task in tasks:
        labels = task.get("labels") or []
        shown = ", ".join(f"`{label}`" for label in labels[:MAX_LISTED_LABELS])
        if len(labels) > MAX_LISTED_LABELS:
            shown += f", ... ({len(labels)} in all)"
        kind = TYPE_WORDS[task["type"]] + (" of text pairs" if task.get("text_pair") else "")
        lines.append(f"| {task['name']} | {kind} | {shown or '-'} | {sources.get(task['name'], '-')} |")
    return [*lines, ""]


def _results_section(
    tasks: list[dict[str, Any]], metrics: dict[str, dict[str, float]], mains: dict[str, str], split: str,
    glue: float | None = None,
) -> list[str]:
    """The scores table (each task's main metric in bold) and, for GLUE tasks, GLUE's average."""
    scored = [task["name"] for task in tasks if task["name"] in metrics]
    if not scored:
        return ["## Results", "", "Not scored yet.", ""]
    lines = [f"## Results ({split} split)", "", "| task | metric | value |", "|---|---|---|"]
    for name in scored:
        for metric, value in metrics[name].items():
            if isinstance(value, int | float):
                shown = f"**{value:.4f}**" if metric == mains[name] else f"{value:.4f}"
                lines.append(f"| {name} | {metric} | {shown} |")
    if glue is not None:
        lines.append(f"| GLUE average | (GLUE's metric per task) | {glue:.4f} |")
    return [*lines, ""]


def _teachers_section(config: dict[str, Any]) -> list[str]:
    """A distilled model's teachers: each task's, with its own test score where its folder has one."""
    distill = (config.get("run_config") or {}).get("distill") or {}
    teachers = distill.get("teachers") or {}
    if not teachers:
        return []
    if distill.get("anneal") == "none":
        schedule = f"a fixed weight of {distill.get('gold_weight')} on the gold labels"
    else:
        schedule = "teacher annealing: the gold labels' weight rising from 0 to 1 over the run"
    lines = ["## Teachers", "", "Distilled from single-task teachers (their outputs mixed with the gold "
             f"labels, {schedule}; teacher temperature {distill.get('temperature', 1.0)}):", "",
             "| task | teacher | teacher's test score |", "|---|---|---|"]
    for task, teacher in teachers.items():  # a task, or an entry of several heads
        heads = [head["name"] for head in config["tasks"] if task in (head["name"], head.get("entry"))]
        scores = read_metrics_if_written(teacher) if Path(teacher).is_dir() else {}
        mains = main_metrics_of(scores) if scores else {}
        shown = ", ".join(f"{name} {mains[name]} {scores[name][mains[name]]:.4f}"
                          for name in heads if name in mains) or "-"
        lines.append(f"| {task} | {teacher} | {shown} |")
    return [*lines, ""]


def _config_section(config: dict[str, Any]) -> list[str]:
    run_config = config.get("run_config")
    if not run_config:
        return []
    return ["## Training configuration", "", "```yaml",
            yaml.safe_dump(run_config, sort_keys=False).rstrip(), "```", ""]


def _write(directory: Path, data: ModelCardData, body: list[str]) -> Path:
    path = directory / CARD
    path.write_text(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))
    return path
