"""Checkpoints on the Hugging Face Hub: push_to_hub / `mtl-nlp push` publish a checkpoint without
its resumable state, and a repository id loads wherever a checkpoint directory does. The Hub is
replaced by a folder (`FakeHub`): uploads copy into it, downloads return its copy."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import BertModel

from mtl_nlp import HeadConfig, MultiTaskModel, Predictor, export_task, push_to_hub
from mtl_nlp.cli import main as cli_main
from mtl_nlp.modeling.checkpoint_files import PENDING, InconsistentCheckpointError, verify_files
from mtl_nlp.modeling.encoder import ModelLoadError
from mtl_nlp.publish.hub import PushError
from mtl_nlp.reports.model_card import write_checkpoint_card

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TEXTS = ["anna schmidt lives in new york .", "the film was great"]
# What a run leaves beside the checkpoint that a model repository should carry.
RUN_OUTPUTS = {"metrics.json": "{}", "trainer_state.json": "{}", "curves.png": "png",
               "logs/demo/events.out.tfevents.1.host": "events"}
# ... and what it must never carry: resumable states (pickles) and the ONNX engine cache.
NEVER_PUSHED = {"state/optimizer.bin": "pickle", "state/complete.json": "{}", "state-12/optimizer.bin": "old",
                "state.new/optimizer.bin": "half", "onnx/abc123/model.onnx": "graph"}


class FakeHub:
    """Model repositories as folders: upload_folder copies a folder in, snapshot_download returns it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: list[tuple[str, bool | None]] = []
        self.commits: list[dict] = []

    def repo(self, repo_id: str) -> Path:
        return self.root / repo_id

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        hub = self

        def create_repo(api, repo_id, private=None, exist_ok=False, repo_type=None, **kwargs):
            hub.created.append((repo_id, private))
            hub.repo(repo_id).mkdir(parents=True, exist_ok=True)

        def upload_folder(api, repo_id, folder_path, repo_type=None, revision=None, commit_message=None,
                          **kwargs):
            shutil.copytree(folder_path, hub.repo(repo_id), dirs_exist_ok=True)
            hub.commits.append({"repo_id": repo_id, "revision": revision, "message": commit_message})
            return type("CommitInfo", (), {"commit_url": f"https://hub.test/{repo_id}/commit/1"})()

        def snapshot_download(repo_id, revision=None, token=None, **kwargs):
            if not hub.repo(repo_id).is_dir():
                raise huggingface_hub.errors.LocalEntryNotFoundError(
                    f"Cannot find the requested files for {repo_id}\nsecond line"
                )
            return str(hub.repo(repo_id))

        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch) -> FakeHub:
    hub = FakeHub(tmp_path / "hub")
    hub.install(monkeypatch)
    return hub


def save_model(directory: Path, tiny_model_dir: Path, tiny_tokenizer, seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    heads = [HeadConfig(name="ner", type="token_classification", labels=TAGS),
             HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"],
                        pooling="pooler")]
    model = MultiTaskModel(BertModel.from_pretrained(tiny_model_dir), heads)
    with torch.no_grad():
        for head in model.heads.values():
            head.classifier.weight.normal_(0, 2.0)
    model.save_pretrained(directory, tokenizer=tiny_tokenizer, extra={"max_length": 32})
    return model


@pytest.fixture
def run_dir(tmp_path, tiny_model_dir, tiny_tokenizer) -> Path:
    """An output_dir as a run leaves it: checkpoint, card, run outputs, states and an ONNX cache."""
    directory = tmp_path / "run"
    save_model(directory, tiny_model_dir, tiny_tokenizer)
    write_checkpoint_card(directory, {"ner": {"f1": 0.5, "precision": 0.5, "recall": 0.5},
                                      "sentiment": {"accuracy": 0.75, "macro_f1": 0.7}})
    for name, text in {**RUN_OUTPUTS, **NEVER_PUSHED}.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return directory


def files_under(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def answers(checkpoint) -> list[dict]:
    return Predictor.from_pretrained(checkpoint, device="cpu", mixed_precision="no").predict(TEXTS)


def test_push_uploads_the_checkpoint_and_run_outputs_but_no_state(run_dir, fake_hub):
    url = push_to_hub(run_dir, "me/demo", private=True, commit_message="first model")
    assert url == "https://hub.test/me/demo/commit/1"
    assert fake_hub.created == [("me/demo", True)]
    assert fake_hub.commits == [{"repo_id": "me/demo", "revision": None, "message": "first model"}]
    pushed = files_under(fake_hub.repo("me/demo"))
    config = json.loads((run_dir / "mtl_nlp.json").read_text())
    expected = {*config["files"], "mtl_nlp.json", "README.md", *RUN_OUTPUTS}
    assert pushed == expected
    assert not pushed & set(NEVER_PUSHED)
    verify_files(fake_hub.repo("me/demo"), config)  # every file is the one its manifest names
    card = ModelCard.load(fake_hub.repo("me/demo") / "README.md")
    assert card.data.library_name == "mtl-nlp"


def test_a_pushed_checkpoint_loads_by_repository_id(run_dir, fake_hub):
    push_to_hub(run_dir, "me/demo")
    assert answers("me/demo") == answers(run_dir)
    model = MultiTaskModel.from_pretrained("me/demo")
    assert model.task_names == ["ner", "sentiment"]
    exported = export_task("me/demo", "sentiment", run_dir.parent / "export")
    assert (exported / "config.json").is_file()


def test_an_export_pushes_whole_and_the_default_message_names_the_folder(run_dir, fake_hub):
    exported = export_task(run_dir, "ner", run_dir.parent / "ner-export")
    push_to_hub(exported, "me/ner")
    assert files_under(fake_hub.repo("me/ner")) == files_under(exported)
    assert fake_hub.commits[-1]["message"] == "Upload ner-export with mtl_nlp"


def test_an_exported_peft_adapter_pushes_whole_with_a_card_naming_its_base(
        tmp_path, tiny_model_dir, tiny_tokenizer, fake_hub):
    pytest.importorskip("peft")
    from mtl_nlp.modeling.adapters import AdapterShape
    from mtl_nlp.modeling.sharing import SharingShape

    heads = [HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"],
                        pooling="pooler")]
    shape = SharingShape(adapters=AdapterShape(r=2, dropout=0.0))
    MultiTaskModel.from_encoder(str(tiny_model_dir), heads, shape).save_pretrained(
        tmp_path / "run", tokenizer=tiny_tokenizer)
    exported = export_task(tmp_path / "run", "sentiment", tmp_path / "sentiment-adapter")
    assert not (exported / "config.json").exists()  # a peft adapter folder, not a whole model
    push_to_hub(exported, "me/sentiment-adapter")
    pushed = fake_hub.repo("me/sentiment-adapter")
    assert files_under(pushed) == files_under(exported)
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= files_under(pushed)
    card = ModelCard.load(pushed / "README.md")
    assert card.data.library_name == "peft"
    base = json.loads((pushed / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert f'AutoModelForSequenceClassification.from_pretrained("{base}", num_labels' in card.text


def test_push_during_an_interrupted_save_uploads_the_new_save_whole(
    run_dir, fake_hub, tiny_model_dir, tiny_tokenizer, tmp_path
):
    """A save stopped half-way through moving files: the upload holds the new save's files only."""
    newer = tmp_path / "newer"
    save_model(newer, tiny_model_dir, tiny_tokenizer, seed=1)
    staging = run_dir / PENDING
    shutil.copytree(newer, staging)
    shutil.copy2(staging / "heads.safetensors", run_dir / "heads.safetensors")  # one file moved
    (staging / "heads.safetensors").unlink()
    push_to_hub(run_dir, "me/demo")
    remote = fake_hub.repo("me/demo")
    verify_files(remote, json.loads((newer / "mtl_nlp.json").read_text()))
    assert (remote / "model.safetensors").read_bytes() == (newer / "model.safetensors").read_bytes()
    assert answers("me/demo") == answers(newer)
    assert (staging / "mtl_nlp.json").is_file(), "pushing leaves the folder as it was"


def test_a_checkpoint_with_files_of_two_saves_is_not_pushed(run_dir, fake_hub, tiny_model_dir,
                                                            tiny_tokenizer, tmp_path):
    save_model(tmp_path / "other", tiny_model_dir, tiny_tokenizer, seed=1)
    shutil.copy2(tmp_path / "other" / "heads.safetensors", run_dir / "heads.safetensors")
    with pytest.raises(InconsistentCheckpointError, match="heads.safetensors is not the file"):
        push_to_hub(run_dir, "me/demo")
    assert fake_hub.commits == []


def test_pushing_a_folder_that_is_no_model(tmp_path, fake_hub):
    with pytest.raises(ModelLoadError, match=r"neither an mtl_nlp checkpoint .* nor a task export "
                                             r"\(config.json or adapter_config.json\)"):
        push_to_hub(tmp_path, "me/demo")
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*missing: there is no such folder$"):
        push_to_hub(tmp_path / "missing", "me/demo")


def test_a_refused_upload_is_one_clear_error(run_dir, monkeypatch):
    def create_repo(api, repo_id, **kwargs):
        raise huggingface_hub.errors.LocalTokenNotFoundError("Token is required (`token=True`)")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    with pytest.raises(PushError, match=r"cannot push .*run to 'me/demo': Token is required .*hf auth login"):
        push_to_hub(run_dir, "me/demo")


def test_an_unknown_repository_id_is_a_load_error_not_a_traceback(fake_hub, capsys, monkeypatch):
    message = ("no checkpoint at me/nothing: there is no such folder, and no Hugging Face Hub repository "
               "'me/nothing' could be downloaded \\(Cannot find the requested files for me/nothing\\)$")
    with pytest.raises(ModelLoadError, match=message):
        Predictor.from_pretrained("me/nothing")
    monkeypatch.setattr(sys, "stdin", io.StringIO("anna\n"))
    assert cli_main(["predict", "me/nothing"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no checkpoint at me/nothing: there is no such folder, and no" in err


def test_local_looking_paths_never_go_to_the_hub(fake_hub, tmp_path):
    for missing in ("./outputs/run", str(tmp_path / "run"), "a/b/c"):
        with pytest.raises(ModelLoadError, match="there is no such folder$"):
            MultiTaskModel.from_pretrained(missing)


def test_mtl_nlp_push_command(run_dir, fake_hub, capsys):
    assert cli_main(["push", str(run_dir), "me/demo", "--private", "--revision", "dev",
                     "--message", "from the CLI"]) == 0
    assert capsys.readouterr().out == f"pushed {run_dir} to me/demo: https://hub.test/me/demo/commit/1\n"
    assert fake_hub.created == [("me/demo", True)]
    assert fake_hub.commits == [{"repo_id": "me/demo", "revision": "dev", "message": "from the CLI"}]
    assert cli_main(["push", str(run_dir.parent / "missing"), "me/demo"]) == 2
    assert "there is no such folder" in capsys.readouterr().err
