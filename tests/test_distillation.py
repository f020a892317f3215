"""Distillation: the annealing schedule, each head type's loss against a hand computation, the
teacher outputs (label reordering, refusals, per-word targets from another tokenizer, the cache),
and the step runner passing the gold weight of the step."""

from __future__ import annotations

import itertools
import json
import logging
import math

import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from mtl_nlp.config import ConfigError, DistillConfig, load_config
from mtl_nlp.data.pipeline import prepare_task_data
from mtl_nlp.data.teacher_columns import TEACHER_COLUMN, TeacherCollator, teacher_tensor
from mtl_nlp.distill import teacher_outputs as outputs_module
from mtl_nlp.distill.teacher_outputs import attach_teacher_outputs
from mtl_nlp.distill.teachers import teacher_assignments
from mtl_nlp.modeling.distillation import distillation_loss
from mtl_nlp.modeling.heads import HeadConfig, build_head
from mtl_nlp.modeling.model import MultiTaskModel
from mtl_nlp.registry import get_task
from mtl_nlp.training.setup import head_configs
from mtl_nlp.training.teacher_annealing import TeacherAnnealing

IGNORE = -100


# --- the schedule ---------------------------------------------------------------------------

def test_linear_annealing_moves_the_gold_weight_from_0_to_1_step_by_step():
    schedule = TeacherAnnealing("linear", 0.5, 2.0, total_steps=5)
    assert [schedule.gold_weight_at(step) for step in range(1, 6)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert schedule.loss_arguments(3) == {"gold_weight": 0.5, "temperature": 2.0}
    assert TeacherAnnealing("linear", 0.5, 1.0, total_steps=1).gold_weight_at(1) == 1.0


def test_no_annealing_keeps_the_configured_gold_weight():
    schedule = TeacherAnnealing.from_config(DistillConfig(anneal="none", gold_weight=0.3), total_steps=10)
    assert {schedule.gold_weight_at(step) for step in range(1, 11)} == {0.3}


def test_distill_keys_are_checked_and_teachers_take_a_key_per_task():
    config = load_config(None, ["distill.teachers.cola=/runs/cola", "distill.teachers.mnli=org/mnli-teacher",
                                "distill.temperature=2"])
    assert config.distill.teachers == {"cola": "/runs/cola", "mnli": "org/mnli-teacher"}
    assert config.distill.temperature == 2.0
    with pytest.raises(ConfigError, match="distill.anneal='cosine' is not one of: linear, none"):
        load_config(None, ["distill.anneal=cosine"])
    with pytest.raises(ConfigError, match=r"distill.gold_weight must be in \[0, 1\], got 1.5"):
        load_config(None, ["distill.gold_weight=1.5"])
    with pytest.raises(ConfigError, match="distill.temperature must be positive"):
        load_config(None, ["distill.temperature=0"])
    with pytest.raises(ConfigError, match="'distill.teachers' expects a mapping"):
        load_config(None, ["distill.teachers=[a, b]"])


# --- the losses against hand computations ---------------------------------------------------

def _softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def test_single_label_loss_is_cross_entropy_against_mixed_targets():
    logits = [[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]]
    teacher = [[0.0, 2.0, 0.0], [4.0, 0.0, 0.0]]
    labels = [0, 2]
    gold_weight, temperature = 0.25, 2.0
    expected = 0.0
    for row, label, taught in zip(logits, labels, teacher):
        soft = _softmax([v / temperature for v in taught])
        targets = [gold_weight * (k == label) + (1 - gold_weight) * soft[k] for k in range(3)]
        log_probabilities = [math.log(p) for p in _softmax(row)]
        expected -= sum(t * lp for t, lp in zip(targets, log_probabilities))
    expected /= 2
    loss = distillation_loss("classification", torch.tensor(logits), torch.tensor(labels),
                             torch.tensor(teacher), gold_weight, temperature)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_tagging_loss_averages_scored_positions_and_positions_without_a_teacher_learn_gold():
    logits = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]])
    labels = torch.tensor([[0, 1, IGNORE]])
    nan = float("nan")
    teacher = torch.tensor([[[0.0, 3.0], [nan, nan], [5.0, 5.0]]])  # a word start, a later piece, padding
    gold_weight = 0.5
    soft = _softmax([0.0, 3.0])
    first = -(sum((gold_weight * (k == 0) + (1 - gold_weight) * soft[k]) * math.log(p)
                  for k, p in enumerate(_softmax([1.0, 0.0]))))
    second = -math.log(_softmax([0.0, 1.0])[1])  # no teacher output: the gold label alone
    loss = distillation_loss("token_classification", logits, labels, teacher, gold_weight, 1.0)
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_multilabel_loss_is_binary_cross_entropy_against_mixed_probabilities():
    logits, labels = torch.tensor([[1.0, -1.0]]), torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 2.0]])
    gold_weight, temperature = 0.5, 2.0
    expected = 0.0
    for z, y, t in zip([1.0, -1.0], [1.0, 0.0], [0.0, 2.0]):
        target = gold_weight * y + (1 - gold_weight) / (1 + math.exp(-t / temperature))
        p = 1 / (1 + math.exp(-z))
        expected -= target * math.log(p) + (1 - target) * math.log(1 - p)
    loss = distillation_loss("multilabel", logits, labels, teacher, gold_weight, temperature)
    assert loss.item() == pytest.approx(expected / 2, rel=1e-6)


def test_regression_loss_is_squared_error_against_the_mixed_value():
    loss = distillation_loss("regression", torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0]),
                             torch.tensor([1.0, 4.0]), 0.25, 5.0)
    targets = [0.25 * 3.0 + 0.75 * 1.0, 0.25 * 0.0 + 0.75 * 4.0]  # the temperature does not apply
    assert loss.item() == pytest.approx(((1.0 - targets[0]) ** 2 + (2.0 - targets[1]) ** 2) / 2)


@pytest.mark.parametrize("kind", ["classification", "token_classification", "multilabel", "regression"])
def test_at_gold_weight_one_every_loss_is_the_heads_own(kind):
    torch.manual_seed(0)
    labels_of = {"regression": []}
    head = build_head(8, HeadConfig(name="t", type=kind, labels=labels_of.get(kind, ["a", "b", "c"])))
    shape = {"token_classification": (2, 5, 3), "regression": (2,)}.get(kind, (2, 3))
    logits, teacher = torch.randn(shape), torch.randn(shape if kind != "regression" else (2,))
    labels = {"classification": torch.tensor([0, 2]), "regression": torch.tensor([0.5, -1.0]),
              "multilabel": torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]),
              "token_classification": torch.tensor([[0, 1, IGNORE, 2, IGNORE], [IGNORE, 2, 2, 0, 1]])}[kind]
    own = head.loss(logits, labels)
    distilled = distillation_loss(kind, logits, labels, teacher, 1.0, 3.0)
    assert distilled.item() == pytest.approx(own.item(), rel=1e-6)


# --- the collator -----------------------------------------------------------------------------

def test_tagging_teacher_rows_are_padded_with_nan_on_the_tokenizers_side():
    rows = [[[1.0, 2.0]], [[3.0, 4.0], [5.0, 6.0]]]
    right = teacher_tensor(rows, "token_classification", 3, "right")
    assert right[0, 0].tolist() == [1.0, 2.0] and torch.isnan(right[0, 1:]).all()
    assert right[1, :2].tolist() == [[3.0, 4.0], [5.0, 6.0]] and torch.isnan(right[1, 2]).all()
    left = teacher_tensor(rows, "token_classification", 3, "left")
    assert left[0, 2].tolist() == [1.0, 2.0] and torch.isnan(left[0, :2]).all()
    assert teacher_tensor([[0.5], [1.5]], "regression", 4, "right").tolist() == [0.5, 1.5]


def test_an_entrys_teacher_collates_to_one_tensor_per_head():
    def collate(features):
        return {"input_ids": torch.zeros(len(features), 2, dtype=torch.long)}

    collator = TeacherCollator(collate, {"intent": "classification", "slots": "token_classification"},
                               entry=True)
    batch = collator([{"input_ids": [1, 2], TEACHER_COLUMN: {"intent": [0.1, 0.9], "slots": [[1.0], [2.0]]}}])
    assert batch[TEACHER_COLUMN]["intent"].tolist() == [[pytest.approx(0.1), pytest.approx(0.9)]]
    assert batch[TEACHER_COLUMN]["slots"].tolist() == [[[1.0], [2.0]]]


# --- teacher outputs over real training data -----------------------------------------------------

@pytest.fixture
def demo_tasks(tiny_tokenizer, tmp_path):
    def prepare(max_train: int | None = 24):
        return prepare_task_data([get_task("demo_ner"), get_task("demo_sentiment")], tiny_tokenizer,
                                 max_length=32, cache_dir=str(tmp_path / "cache"),
                                 max_train_examples=max_train)
    return prepare


def save_teacher(tiny_model_dir, tiny_tokenizer, tasks, folder, seed=0, relabel=None):
    """A (randomly initialised) teacher of the tasks, saved as a checkpoint; `relabel`: {head: labels}."""
    torch.manual_seed(seed)
    heads = head_configs(tasks)
    for head in heads:
        head.labels = (relabel or {}).get(head.name, head.labels)
    MultiTaskModel.from_encoder(str(tiny_model_dir), heads).save_pretrained(folder, tiny_tokenizer,
                                                                            extra={"max_length": 32})
    return MultiTaskModel.from_pretrained(folder).eval()


def test_sentence_teacher_outputs_are_its_logits_in_the_students_label_order(
        demo_tasks, tiny_model_dir, tiny_tokenizer, tmp_path):
    tasks = demo_tasks()
    labels = tasks["demo_sentiment"].labels
    teacher = save_teacher(tiny_model_dir, tiny_tokenizer, tasks, tmp_path / "teacher",
                           relabel={"demo_sentiment": labels[::-1]})
    attach_teacher_outputs(tasks, {"demo_sentiment": str(tmp_path / "teacher")}, tiny_tokenizer, 32, 8)
    train = tasks["demo_sentiment"].splits["train"]
    assert TEACHER_COLUMN not in tasks["demo_ner"].splits["train"].column_names
    for row in range(3):
        inputs = {key: torch.tensor([train[row][key]]) for key in ("input_ids", "attention_mask")}
        with torch.no_grad():
            logits = teacher.forward_all(**inputs, tasks=["demo_sentiment"])["demo_sentiment"][0]
        # the teacher's labels are the task's reversed: its outputs come back in the task's order
        assert train[row][TEACHER_COLUMN] == pytest.approx(logits.flip(0).tolist(), abs=1e-5)


def test_a_teacher_with_other_labels_or_without_the_task_is_refused_with_both_lists(
        demo_tasks, tiny_model_dir, tiny_tokenizer, tmp_path):
    tasks = demo_tasks()
    save_teacher(tiny_model_dir, tiny_tokenizer, tasks, tmp_path / "teacher",
                 relabel={"demo_sentiment": ["bad", "good"]})
    with pytest.raises(ConfigError, match=r"teacher .* has labels \[bad, good\], the task's data has "
                                          r"\[negative, positive\]: a teacher must know the same labels"):
        attach_teacher_outputs(tasks, {"demo_sentiment": str(tmp_path / "teacher")}, tiny_tokenizer, 32, 8)
    only_ner = {"demo_ner": tasks["demo_ner"]}
    save_teacher(tiny_model_dir, tiny_tokenizer, only_ner, tmp_path / "ner_teacher")
    with pytest.raises(ConfigError, match="has no task 'demo_sentiment'; its tasks are: demo_ner"):
        attach_teacher_outputs(tasks, {"demo_sentiment": str(tmp_path / "ner_teacher")}, tiny_tokenizer,
                               32, 8)
    with pytest.raises(ConfigError, match="distill.teachers.demo_sentiment: no checkpoint at .*missing"):
        attach_teacher_outputs(tasks, {"demo_sentiment": str(tmp_path / "missing")}, tiny_tokenizer, 32, 8)
    with pytest.raises(ConfigError, match="distill.teachers: cola is not a task of this run; its tasks and "
                                          "heads are: demo_ner, demo_sentiment"):
        teacher_assignments(tasks, {"cola": "x"})


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer that knows single characters only: every word is split into letters."""
    letters = "abcdefghijklmnopqrstuvwxyz0123456789.,'-"
    vocab = {token: index for index, token in enumerate(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{ch}" for ch in letters)])}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def save_char_encoder(folder) -> tuple[PreTrainedTokenizerFast, object]:
    """A tiny random BERT reading single characters (another tokenizer than the student's), saved
    to `folder` with its tokenizer."""
    tokenizer = char_tokenizer()
    torch.manual_seed(1)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=256)
              ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return tokenizer, folder


def test_a_tagging_teacher_with_another_tokenizer_teaches_each_words_first_token(
        demo_tasks, tiny_tokenizer, tmp_path):
    tasks = demo_tasks(8)
    teacher_tokenizer, encoder_dir = save_char_encoder(tmp_path / "char-bert")
    heads = [config for config in head_configs(tasks) if config.name == "demo_ner"]
    MultiTaskModel.from_encoder(str(encoder_dir), heads).save_pretrained(
        tmp_path / "teacher", teacher_tokenizer, extra={"max_length": 256})
    teacher = MultiTaskModel.from_pretrained(tmp_path / "teacher").eval()
    attach_teacher_outputs(tasks, {"demo_ner": str(tmp_path / "teacher")}, tiny_tokenizer, 32, 4)

    data = tasks["demo_ner"]
    train, words = data.splits["train"], data.source_train["tokens"]
    for row in range(4):
        student = tiny_tokenizer(words[row], is_split_into_words=True, truncation=True, max_length=32)
        taught = teacher_tokenizer(words[row], is_split_into_words=True, truncation=True, max_length=256,
                                   return_tensors="pt")
        with torch.no_grad():
            logits = teacher.forward_all(taught["input_ids"], taught["attention_mask"],
                                         tasks=["demo_ner"])["demo_ner"][0]
        teacher_first = {}
        for position, word in enumerate(taught.word_ids(0)):
            teacher_first.setdefault(word, position)
        values = train[row][TEACHER_COLUMN]
        assert len(values) == len(student["input_ids"])
        previous, starts = None, 0
        for position, word in enumerate(student.word_ids()):
            if word is not None and word != previous:
                assert values[position] == pytest.approx(logits[teacher_first[word]].tolist(), abs=1e-5)
                starts += 1
            else:  # special tokens and later pieces of a word: no teacher output
                assert all(math.isnan(value) for value in values[position])
            previous = word
        assert starts == len({w for w in student.word_ids() if w is not None})


def test_teacher_outputs_are_cached_and_a_changed_teacher_or_data_set_is_a_miss(
        demo_tasks, tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch, caplog):
    loads = []  # each teacher the pass loads (its tokenizer is loaded with it)
    real_load = outputs_module.load_tokenizer

    def counted(directory):
        loads.append(directory)
        return real_load(directory)

    monkeypatch.setattr(outputs_module, "load_tokenizer", counted)
    teachers = {"demo_ner": str(tmp_path / "teacher"), "demo_sentiment": str(tmp_path / "teacher")}
    save_teacher(tiny_model_dir, tiny_tokenizer, demo_tasks(), tmp_path / "teacher")
    caplog.set_level(logging.INFO, logger="mtl_nlp.distill.teacher_outputs")

    first = demo_tasks()
    attach_teacher_outputs(first, teachers, tiny_tokenizer, 32, 8)
    assert len(loads) == 2  # one pass per task
    cached = sorted((tmp_path / "cache").rglob("teacher-outputs-*.arrow"))
    assert len(cached) == 2 and all(path.with_suffix(".json").is_file() for path in cached)

    again = demo_tasks()
    attach_teacher_outputs(again, teachers, tiny_tokenizer, 32, 8)
    assert len(loads) == 2  # read from the cache: no teacher loaded
    assert sum("teacher outputs read from" in record.message for record in caplog.records) == 2
    for task in ("demo_ner", "demo_sentiment"):  # as text: NaN equals NaN
        assert str(list(again[task].splits["train"][TEACHER_COLUMN])) == str(
            list(first[task].splits["train"][TEACHER_COLUMN]))

    save_teacher(tiny_model_dir, tiny_tokenizer, demo_tasks(), tmp_path / "teacher", seed=5)  # retrained
    changed = demo_tasks()
    attach_teacher_outputs(changed, teachers, tiny_tokenizer, 32, 8)
    assert len(loads) == 4
    assert list(changed["demo_sentiment"].splits["train"][TEACHER_COLUMN]) != list(
        first["demo_sentiment"].splits["train"][TEACHER_COLUMN])
    attach_teacher_outputs(demo_tasks(16), teachers, tiny_tokenizer, 32, 8)  # other training examples
    assert len(loads) == 6
    assert len(list((tmp_path / "cache").rglob("teacher-outputs-*.arrow"))) == 6


def test_a_streamed_task_is_refused_with_the_reason(tiny_tokenizer, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": f"film {i}", "label": "pos" if i % 2 else "neg"}) + "\n"
                            for i in range(10)))
    from mtl_nlp.registry import resolve_tasks

    (spec,) = resolve_tasks([{"name": "reviews", "type": "classification", "format": "json",
                              "streaming": True,
                              "data_files": {"train": str(rows), "validation": str(rows)}}])
    tasks = prepare_task_data([spec], tiny_tokenizer, 32, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="task 'reviews' is streamed"):
        attach_teacher_outputs(tasks, {"reviews": "somewhere"}, tiny_tokenizer, 32, 8)


# --- mtl-nlp distill end to end -----------------------------------------------------------------

def test_distill_trains_the_missing_teachers_then_reuses_them(tiny_model_dir, tmp_path, capsys, caplog):
    from mtl_nlp.cli import main as cli_main

    out = tmp_path / "distilled"
    common = ["distill", f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}", "mixed_precision=no",
              "train.batch_size=8", "train.lr=1e-3", "train.max_steps=2", "max_train_examples=24",
              "max_eval_examples=8", "tasks=[demo_ner, demo_sentiment, demo_topic]", f"output_dir={out}"]
    given = tmp_path / "given"  # demo_topic's teacher is named: its own run, not trained by distill
    assert cli_main(["train", *common[1:-2], "tasks=[demo_topic]", f"output_dir={given}"]) == 0
    assert cli_main([*common, f"distill.teachers.demo_topic={given}"]) == 0
    table = capsys.readouterr().out
    assert "| task | metric | teacher | student | difference | teacher checkpoint |" in table
    assert "the student takes 1 encoder pass per text; the teachers take 3" in table
    summary = json.loads((out / "distill.json").read_text())
    rows = {row["task"]: row for row in summary["tasks"]}
    assert set(rows) == {"demo_ner", "demo_sentiment", "demo_topic"}
    for task in ("demo_ner", "demo_sentiment"):
        teacher_dir = out / "teachers" / task
        assert rows[task]["teacher_dir"] == str(teacher_dir) and rows[task]["teacher_trained_here"] is True
        teacher_metrics = json.loads((teacher_dir / "metrics.json").read_text())
        assert rows[task]["teacher"] == teacher_metrics[task][rows[task]["metric"]]
        assert json.loads((teacher_dir / "teacher.json").read_text())["run_config"]["tasks"] == [task]
    assert rows["demo_topic"]["teacher_dir"] == str(given)
    assert rows["demo_topic"]["teacher_trained_here"] is None  # named by the user
    student = json.loads((out / "metrics.json").read_text())
    assert all(rows[task]["student"] == student[task][rows[task]["metric"]] for task in rows)
    card = (out / "README.md").read_text()
    assert "## Teachers" in card and "teacher annealing" in card
    ner_score = rows["demo_ner"]["teacher"]
    assert f"| demo_ner | {out / 'teachers' / 'demo_ner'} | demo_ner f1 {ner_score:.4f} |" in card
    assert cli_main(["compare", str(given), str(out)]) == 0
    assert f"{out} was distilled: demo_topic from {given}, demo_ner from" in capsys.readouterr().out
    saved = json.loads((out / "mtl_nlp.json").read_text())["run_config"]["distill"]["teachers"]
    assert saved == {"demo_topic": str(given), "demo_ner": str(out / "teachers" / "demo_ner"),
                     "demo_sentiment": str(out / "teachers" / "demo_sentiment")}

    # A second call: the student is refused by name, then replaced while the teachers are reused.
    assert cli_main([*common, f"distill.teachers.demo_topic={given}"]) == 2
    assert "already holds a student" in capsys.readouterr().err
    modified = (out / "teachers" / "demo_ner" / "model.safetensors").stat().st_mtime_ns
    (out / "notes.txt").write_text("mine")  # a file of the user's beside the student
    caplog.set_level(logging.INFO, logger="mtl_nlp.workflows.distill")
    assert cli_main([*common, f"distill.teachers.demo_topic={given}", "--overwrite"]) == 0
    assert "(reused)" in capsys.readouterr().out
    assert (out / "teachers" / "demo_ner" / "model.safetensors").stat().st_mtime_ns == modified
    assert (out / "notes.txt").read_text() == "mine"
    assert sum("reusing the teacher" in record.message for record in caplog.records) == 2
    again = {row["task"]: row for row in json.loads((out / "distill.json").read_text())["tasks"]}
    assert again["demo_ner"]["student"] == rows["demo_ner"]["student"]  # the same run again

    # Other settings: the teachers trained with the old ones are refused, and the student kept,
    # until --retrain-teachers replaces them.
    other = [*common, f"distill.teachers.demo_topic={given}", "train.lr=5e-4", "--overwrite"]
    assert cli_main(other) == 2
    assert "holds a teacher of other settings (train.lr)" in capsys.readouterr().err
    assert (out / "metrics.json").is_file()
    assert cli_main([*other, "--retrain-teachers"]) == 0
    retrained = json.loads((out / "teachers" / "demo_ner" / "teacher.json").read_text())
    assert retrained["run_config"]["train"]["lr"] == 5e-4


def test_each_head_of_an_entry_learns_from_its_own_teacher_and_pair_tasks_read_both_texts(
        tiny_model_dir, tiny_tokenizer, tmp_path):
    from mtl_nlp.data.multitask import MultiTaskLoader
    from mtl_nlp.registry import resolve_tasks

    rows = [{"tokens": ["anna", "visited", "york"], "tags": ["B-PER", "O", "B-LOC"], "intent": "travel",
             "pair": "anna went to york", "score": 4.5, "aspects": "plot,acting"},
            {"tokens": ["acme", "corp", "won"], "tags": ["B-ORG", "I-ORG", "O"], "intent": "business",
             "pair": "the film is dull", "score": 0.5, "aspects": "plot"}] * 4
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({**row, "text": " ".join(row["tokens"])}) + "\n" for row in rows))
    files = {"train": str(path), "validation": str(path)}
    specs = resolve_tasks([
        {"name": "nlu", "format": "json", "data_files": files, "heads": [
            {"name": "intent", "type": "classification", "label_column": "intent"},
            {"name": "slots", "type": "token_classification"}]},
        {"name": "similarity", "type": "regression", "format": "json", "data_files": files,
         "text_pair_column": "pair", "label_column": "score"},
        {"name": "aspects", "type": "multilabel", "format": "json", "data_files": files,
         "label_column": "aspects"}])
    tasks = prepare_task_data(specs, tiny_tokenizer, 32, cache_dir=str(tmp_path / "cache"))
    heads = {config.name: config for config in head_configs(tasks)}
    torch.manual_seed(3)
    teachers = {}
    owned = {"intent": ["intent"], "slots": ["slots"], "sentences": ["similarity", "aspects"]}
    for folder, names in owned.items():
        model = MultiTaskModel.from_encoder(str(tiny_model_dir), [heads[name] for name in names])
        model.save_pretrained(tmp_path / folder, tiny_tokenizer, extra={"max_length": 32})
        teachers[folder] = MultiTaskModel.from_pretrained(tmp_path / folder).eval()
    attach_teacher_outputs(tasks, {"intent": str(tmp_path / "intent"), "slots": str(tmp_path / "slots"),
                                   "similarity": str(tmp_path / "sentences"),
                                   "aspects": str(tmp_path / "sentences")}, tiny_tokenizer, 32, 4)

    first = {**rows[0], "text": " ".join(rows[0]["tokens"])}
    words = tiny_tokenizer([first["tokens"]], is_split_into_words=True, return_tensors="pt")
    pair = tiny_tokenizer([first["text"]], [first["pair"]], return_tensors="pt")
    text = tiny_tokenizer([first["text"]], return_tensors="pt")
    with torch.no_grad():
        intent = teachers["intent"].forward_all(words["input_ids"], words["attention_mask"])["intent"][0]
        slots = teachers["slots"].forward_all(words["input_ids"], words["attention_mask"])["slots"][0]
        similarity = teachers["sentences"].forward_all(pair["input_ids"], pair["attention_mask"],
                                                        tasks=["similarity"])["similarity"][0]
        aspects = teachers["sentences"].forward_all(text["input_ids"], text["attention_mask"],
                                                     tasks=["aspects"])["aspects"][0]
    entry_row = tasks["nlu"].splits["train"][0][TEACHER_COLUMN]
    assert set(entry_row) == {"intent", "slots"}
    assert entry_row["intent"] == pytest.approx(intent.tolist(), abs=1e-5)  # the entry reads words
    assert entry_row["slots"][1] == pytest.approx(slots[1].tolist(), abs=1e-5)  # "anna": its first token
    assert all(math.isnan(value) for value in entry_row["slots"][0])  # [CLS]
    train = {task: tasks[task].splits["train"][0][TEACHER_COLUMN] for task in ("similarity", "aspects")}
    assert train["similarity"] == pytest.approx([similarity.item()], abs=1e-5)
    assert train["aspects"] == pytest.approx(aspects.tolist(), abs=1e-5)

    student = MultiTaskModel.from_encoder(str(tiny_model_dir), list(heads.values()))
    loader = MultiTaskLoader(tasks, tiny_tokenizer, batch_size=4, strategy="round_robin")
    for task, batch in itertools.islice(iter(loader), 3):
        loss = student(task=task, **batch, gold_weight=0.5, temperature=2.0)["loss"]
        plain = student.eval()(task=task, **{k: v for k, v in batch.items() if k != TEACHER_COLUMN})["loss"]
        student.train()
        assert torch.isfinite(loss) and loss.item() != pytest.approx(plain.item())


def tiny_run(model_dir, folder) -> list[str]:
    """The settings of a few-step run of the demo tasks on the tiny encoder."""
    return ["train", f"model={model_dir}", f"cache_dir={folder / 'cache'}", "mixed_precision=no",
            "train.batch_size=8", "max_train_examples=24", "max_eval_examples=8"]


@pytest.fixture(scope="module")
def demo_teacher(tiny_model_dir, tmp_path_factory):
    """A multi-task checkpoint of the three demo tasks, trained for 2 steps: a teacher of each."""
    from mtl_nlp.cli import main as cli_main

    folder = tmp_path_factory.mktemp("teacher")
    run = [*tiny_run(tiny_model_dir, folder), "train.max_steps=2", f"output_dir={folder / 'run'}"]
    assert cli_main(run) == 0
    return folder / "run"


@pytest.mark.parametrize("overrides", [
    ["train.step_mode=all_tasks", "weighting.method=pcgrad", "sharing.private_layers=1",
     "train.grad_accum=2"],
    ["weighting.method=uncertainty", "tasks=[{name: demo_ner, layer_mix: true}, demo_sentiment, demo_topic]",
     "train.layer_lr_decay=0.8", "distill.anneal=none", "distill.gold_weight=0.3", "distill.temperature=2"],
], ids=["all_tasks-pcgrad-private-accum", "uncertainty-layer_mix-decay-fixed_weight"])
def test_distillation_composes_with_weighting_surgery_and_sharing_shapes(
        demo_teacher, tiny_model_dir, tmp_path, overrides):
    from mtl_nlp.cli import main as cli_main

    tasks = ("demo_ner", "demo_sentiment", "demo_topic")
    teachers = [f"distill.teachers.{task}={demo_teacher}" for task in tasks]
    out = tmp_path / "student"
    assert cli_main([*tiny_run(tiny_model_dir, tmp_path), "train.max_steps=3", f"output_dir={out}",
                     *teachers, *overrides]) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["step"] == 3
    assert all(math.isfinite(value) for entry in state["loss_history"] for value in entry["losses"].values())


def test_finetune_of_a_distilled_run_keeps_each_tasks_own_teacher(demo_teacher, tiny_model_dir, tmp_path):
    from mtl_nlp.cli import main as cli_main

    tasks = ("demo_ner", "demo_sentiment", "demo_topic")
    out = tmp_path / "student"
    assert cli_main([*tiny_run(tiny_model_dir, tmp_path), "train.max_steps=2", f"output_dir={out}",
                     *(f"distill.teachers.{task}={demo_teacher}" for task in tasks)]) == 0
    assert cli_main(["finetune", str(out), "--tasks", "demo_sentiment", "--compare-alone",
                     "train.max_steps=2"]) == 0
    stage = json.loads((out / "finetuned" / "demo_sentiment" / "mtl_nlp.json").read_text())["run_config"]
    assert stage["distill"]["teachers"] == {"demo_sentiment": str(demo_teacher)}
    alone = json.loads((out / "finetuned" / "alone" / "demo_sentiment" / "mtl_nlp.json").read_text())
    assert alone["run_config"]["distill"]["teachers"] == {}  # single-task training as it is
