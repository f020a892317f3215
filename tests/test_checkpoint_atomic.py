"""A checkpoint switches from one save to the next as a whole: a crash at any file move leaves a
checkpoint that loads as entirely the old or entirely the new save, and mixed files fail to load."""

import json
import os
import shutil

import pytest
import torch

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.inference import Predictor
from mtl_nlp.modeling import checkpoint_files
from mtl_nlp.modeling.checkpoint_files import PENDING, InconsistentCheckpointError
from mtl_nlp.modeling.model import is_checkpoint, read_checkpoint_config

HEADS = [
    HeadConfig(name="ner", type="token_classification", labels=["O", "B-PER", "I-PER"]),
    HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"]),
]


class Crash(Exception):
    """Stands for the process dying at this point."""


def model_with(tiny_model_dir, value: float) -> MultiTaskModel:
    """The tiny model with every head weight and the word embeddings filled with `value`."""
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), HEADS)
    with torch.no_grad():
        for parameter in model.heads.parameters():
            parameter.fill_(value)
        model.encoder.embeddings.word_embeddings.weight.fill_(value)
    return model


def saved_value(directory) -> float:
    """The single value of a loaded checkpoint, checking encoder and heads agree on it."""
    model = MultiTaskModel.from_pretrained(directory)
    values = {float(p.detach().flatten()[0]) for p in model.heads.parameters()}
    values.add(float(model.encoder.embeddings.word_embeddings.weight.detach()[0, 0]))
    assert len(values) == 1, f"encoder and heads from different saves: {values}"
    return values.pop()


def save(model, directory, tokenizer, step):
    model.save_pretrained(directory, tokenizer=tokenizer, extra={"selection": {"step": step}})


def crash_after(monkeypatch, moves: int) -> None:
    """Make the checkpoint's file moves die after `moves` of them have happened."""
    real_replace = os.replace
    done = [0]

    def replace(source, target):
        if done[0] == moves:
            raise Crash
        done[0] += 1
        real_replace(source, target)

    monkeypatch.setattr(checkpoint_files.os, "replace", replace)


def test_a_crash_at_every_file_move_leaves_one_whole_save(tiny_model_dir, tiny_tokenizer, tmp_path,
                                                          monkeypatch):
    old, new = model_with(tiny_model_dir, 0.25), model_with(tiny_model_dir, 0.75)
    crash_points = 0
    for moves in range(100):
        directory = tmp_path / f"crash-{moves}"
        save(old, directory, tiny_tokenizer, step=10)
        crash_after(monkeypatch, moves)
        try:
            save(new, directory, tiny_tokenizer, step=20)
            finished = True
        except Crash:
            finished = False
        monkeypatch.undo()
        if finished:  # past the last move: every crash point before it was tried
            break
        crash_points += 1
        # Moves 0: the staged mtl_nlp.json is not complete, the old save stands; from then on
        # the new save is complete and is what loads, wherever its files are.
        expected = 0.25 if moves == 0 else 0.75
        assert is_checkpoint(directory)
        assert saved_value(directory) == expected
        assert read_checkpoint_config(directory)["selection"]["step"] == (10 if moves == 0 else 20)
        predictor = Predictor.from_pretrained(directory, mixed_precision="no")
        assert float(predictor.model.heads["sentiment"].classifier.weight.detach()[0, 0]) == expected
        # The next save finishes or discards the interrupted one, then saves.
        save(model_with(tiny_model_dir, 0.5), directory, tiny_tokenizer, step=30)
        assert not (directory / PENDING).exists()
        assert saved_value(directory) == 0.5
    # The staged config, then each file: encoder config and weights, tokenizer files, heads.
    assert crash_points == len(json.loads((directory / "mtl_nlp.json").read_text())["files"]) + 2
    assert saved_value(directory) == 0.75


def test_files_of_two_saves_fail_to_load_naming_the_file(tiny_model_dir, tiny_tokenizer, tmp_path):
    save(model_with(tiny_model_dir, 0.25), tmp_path / "a", tiny_tokenizer, step=10)
    save(model_with(tiny_model_dir, 0.75), tmp_path / "b", tiny_tokenizer, step=20)
    shutil.copy(tmp_path / "b" / "heads.safetensors", tmp_path / "a" / "heads.safetensors")
    with pytest.raises(InconsistentCheckpointError,
                       match=r"heads\.safetensors is not the file its mtl_nlp\.json was saved with"):
        MultiTaskModel.from_pretrained(tmp_path / "a")
    (tmp_path / "b" / "model.safetensors").unlink()
    with pytest.raises(InconsistentCheckpointError, match=r"incomplete: model\.safetensors is missing"):
        Predictor.from_pretrained(tmp_path / "b")


def test_a_save_that_dies_while_writing_leaves_the_old_checkpoint(tiny_model_dir, tiny_tokenizer, tmp_path,
                                                                  monkeypatch):
    save(model_with(tiny_model_dir, 0.25), tmp_path, tiny_tokenizer, step=10)
    monkeypatch.setattr(checkpoint_files, "file_digest", lambda path: (_ for _ in ()).throw(Crash))
    with pytest.raises(Crash):
        save(model_with(tiny_model_dir, 0.75), tmp_path, tiny_tokenizer, step=20)
    monkeypatch.undo()
    assert (tmp_path / PENDING / "heads.safetensors").is_file()  # written, not complete
    assert saved_value(tmp_path) == 0.25
    save(model_with(tiny_model_dir, 0.5), tmp_path, tiny_tokenizer, step=30)
    assert saved_value(tmp_path) == 0.5 and not (tmp_path / PENDING).exists()


def test_the_manifest_lists_every_file_with_its_size_and_sha256(tiny_model_dir, tiny_tokenizer, tmp_path):
    save(model_with(tiny_model_dir, 0.25), tmp_path, tiny_tokenizer, step=10)
    manifest = json.loads((tmp_path / "mtl_nlp.json").read_text())["files"]
    assert {"config.json", "model.safetensors", "heads.safetensors", "tokenizer.json"} <= set(manifest)
    heads = manifest["heads.safetensors"]
    assert heads["size"] == (tmp_path / "heads.safetensors").stat().st_size
    assert heads == checkpoint_files.file_digest(tmp_path / "heads.safetensors")
