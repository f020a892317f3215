"""Distillation of the question task types: a multiple-choice teacher scores each example's options
(its own tokenizer reading them), its outputs pad to the batch's most options with -inf, the loss
against a hand computation, `mtl-nlp distill` training the teacher; an extractive QA task learns
from its gold answers alone, and a teacher named for it is refused with the reason."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from test_distillation import save_char_encoder
from test_extractive_qa import write_facts
from test_multiple_choice import QUESTIONS, write_questions

from mtl_nlp.config import ConfigError, load_config
from mtl_nlp.data.multitask import training_collator
from mtl_nlp.data.pipeline import prepare_task_data
from mtl_nlp.data.teacher_columns import TEACHER_COLUMN, teacher_tensor
from mtl_nlp.distill.teacher_outputs import attach_teacher_outputs
from mtl_nlp.modeling.distillation import distillation_loss
from mtl_nlp.modeling.heads import HeadConfig
from mtl_nlp.modeling.model import MultiTaskModel
from mtl_nlp.modeling.options import option_scores
from mtl_nlp.registry import TaskSpec
from mtl_nlp.workflows.distill import distill_tasks


def test_choice_loss_is_cross_entropy_against_mixed_option_targets():
    # two questions: three options, and two (the third padded in)
    teacher = teacher_tensor([[1.0, 2.0, 0.0], [0.5, -1.0]], "multiple_choice", 0, "right")
    assert teacher[1, 2].item() == -math.inf and not torch.isnan(teacher).any()
    scores = option_scores(torch.tensor([0.2, -0.3, 1.0, 0.7, 0.1, 5.0]),
                           torch.tensor([[1, 1, 1], [1, 1, 0]]))
    labels, gold_weight, temperature = torch.tensor([2, 0]), 0.25, 2.0
    loss = distillation_loss("multiple_choice", scores, labels, teacher, gold_weight, temperature)
    expected = 0.0
    for student, taught, gold in (([0.2, -0.3, 1.0], [1.0, 2.0, 0.0], 2), ([0.7, 0.1], [0.5, -1.0], 0)):
        soft = torch.softmax(torch.tensor(taught) / temperature, dim=-1)
        target = gold_weight * F.one_hot(torch.tensor(gold), len(taught)) + (1 - gold_weight) * soft
        expected += -(target * torch.log_softmax(torch.tensor(student), dim=-1)).sum().item() / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    plain = F.cross_entropy(scores, labels)  # gold weight 1: the head's own loss
    assert distillation_loss("multiple_choice", scores, labels, teacher, 1.0, temperature).item() == \
        pytest.approx(plain.item(), rel=1e-6)


@pytest.fixture
def choice_task(tiny_tokenizer, tmp_path):
    files = write_questions(tmp_path, "hub")
    spec = TaskSpec(name="quiz", type="multiple_choice", format="json", data_files=files)
    return prepare_task_data([spec], tiny_tokenizer, max_length=32, cache_dir=str(tmp_path / "cache"),
                             max_train_examples=9)


def test_a_choice_teacher_with_another_tokenizer_scores_each_examples_options(
        choice_task, tiny_tokenizer, tmp_path):
    teacher_tokenizer, encoder_dir = save_char_encoder(tmp_path / "char-bert")
    head = HeadConfig(name="quiz", type="multiple_choice", pooling="pooler")
    MultiTaskModel.from_encoder(str(encoder_dir), [head]).save_pretrained(
        tmp_path / "teacher", teacher_tokenizer, extra={"max_length": 128})
    teacher = MultiTaskModel.from_pretrained(tmp_path / "teacher").eval()
    attach_teacher_outputs(choice_task, {"quiz": str(tmp_path / "teacher")}, tiny_tokenizer, 32, 2)

    train = choice_task["quiz"].splits["train"]
    source = choice_task["quiz"].source_train
    for row in range(len(QUESTIONS)):
        question, options = source[row]["question"], source[row]["choices"]["text"]
        rows = teacher_tokenizer([question] * len(options), options, padding=True, truncation=True,
                                 max_length=128, return_tensors="pt")
        with torch.no_grad():
            inputs = {key: value.unsqueeze(0) for key, value in rows.items()}  # one question
            scores = teacher.forward_all(**inputs)["quiz"][0]
        assert train[row][TEACHER_COLUMN] == pytest.approx(scores.tolist(), abs=1e-5)
        assert len(train[row][TEACHER_COLUMN]) == len(options)

    # a batch of 3, 4 and 2 options: the teacher's scores pad to 4 with -inf where choice_mask is 0
    by_options = {len(train[row][TEACHER_COLUMN]): row for row in range(len(train))}
    assert sorted(by_options) == [2, 3, 4]
    collate = training_collator(choice_task["quiz"], tiny_tokenizer)
    batch = collate([train[by_options[count]] for count in (3, 4, 2)])
    assert batch["choice_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]]
    assert torch.equal(torch.isinf(batch[TEACHER_COLUMN]), batch["choice_mask"] == 0)


def test_distill_trains_a_multiple_choice_teacher_and_no_extractive_qa_teacher(tmp_path, tiny_model_dir):
    hub = json.dumps(write_questions(tmp_path, "hub"))
    facts = json.dumps(write_facts(tmp_path))
    tasks = (f"tasks=[{{name: few_csqa, type: multiple_choice, format: json, data_files: {hub}}}, "
             f"{{name: facts, type: extractive_qa, format: json, data_files: {facts}}}]")
    common = [f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}", "mixed_precision=no",
              "train.batch_size=4", "train.max_steps=2", "max_length=32", "stride=4",
              "max_eval_examples=4", "max_train_examples=12", f"output_dir={tmp_path / 'run'}", tasks]
    rows = {row["task"]: row for row in distill_tasks(load_config(None, common))["tasks"]}
    teachers = tmp_path / "run" / "teachers"
    assert rows["few_csqa"]["teacher_dir"] == str(teachers / "few_csqa")
    assert rows["few_csqa"]["teacher"] == json.loads((teachers / "few_csqa" / "metrics.json").read_text()
                                                     )["few_csqa"]["accuracy"]
    assert rows["facts"]["teacher_dir"] is None and not (teachers / "facts").exists()

    named = load_config(None, [*common[:-2], f"output_dir={tmp_path / 'named'}", tasks,
                               f"distill.teachers.facts={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match="facts is an extractive_qa task, which trains on windows of its "
                                          "contexts cut by the student's tokenizer"):
        distill_tasks(named)
