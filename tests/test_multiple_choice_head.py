"""The multiple-choice head: transformers' *ForMultipleChoice computation with copied weights, and
options that an example lacks."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForMultipleChoice

from mtl_nlp.modeling.heads import HeadConfig, build_head, option_scores


def test_the_head_computes_what_bert_for_multiple_choice_computes(tiny_tokenizer):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    reference = BertForMultipleChoice(config).eval()
    head = build_head(32, HeadConfig(name="mc", type="multiple_choice", pooling="pooler")).eval()
    head.pooler.load_state_dict(reference.bert.pooler.dense.state_dict())
    head.classifier.load_state_dict(reference.classifier.state_dict())
    questions = ["where do you keep milk ?", "what is hot ?"]
    options = [["fridge", "oven", "shelf"], ["ice", "sun", "snow"]]
    rows = tiny_tokenizer([q for q, choices in zip(questions, options) for _ in choices],
                          [option for choices in options for option in choices], padding=True,
                          return_tensors="pt")
    inputs = {key: value.view(2, 3, -1) for key, value in rows.items()}
    with torch.no_grad():
        expected = reference(**inputs).logits
        hidden = reference.bert(**rows).last_hidden_state
        ours = option_scores(head(hidden, rows["attention_mask"]), torch.ones(2, 3))
    torch.testing.assert_close(ours, expected)
    assert head.decode(ours).tolist() == expected.argmax(dim=-1).tolist()


def test_an_absent_option_is_never_chosen_and_has_no_probability():
    head = build_head(4, HeadConfig(name="mc", type="multiple_choice", pooling="mean"))
    logits = option_scores(torch.tensor([0.5, 0.1, 9.0, 0.2, 0.3, 0.4]), torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert head.decode(logits).tolist() == [0, 2]  # 9.0 belongs to the first example's absent third option
    probabilities = head.scores(logits)
    assert probabilities[0, 2].item() == 0.0
    torch.testing.assert_close(probabilities.sum(dim=-1), torch.ones(2))
    loss = head.loss(logits, torch.tensor([1, 2]))
    expected = -(torch.log_softmax(torch.tensor([0.5, 0.1]), 0)[1] + torch.log_softmax(
        torch.tensor([0.2, 0.3, 0.4]), 0)[2]) / 2
    torch.testing.assert_close(loss, expected)
