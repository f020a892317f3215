"""The served page with question tasks, in headless Chromium (-m browser): a context box whose
answer span is marked in the context, an options box whose chosen option is marked, and a message
naming what a ticked question task still needs."""

from __future__ import annotations

import signal

import pytest
import torch
from transformers import BertModel

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.inference import Predictor

pytest.importorskip("fastapi")
from test_serving import headless_chromium, shown_message, start_server  # noqa: E402

QUESTION = "where does anna live ?"
CONTEXT = "anna lives in berlin and works in paris ."
OPTIONS = ["berlin", "paris", "rome"]


@pytest.fixture(scope="module")
def question_checkpoint(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    directory = tmp_path_factory.mktemp("question-page")
    heads = [HeadConfig(name="squad", type="extractive_qa"),
             HeadConfig(name="csqa", type="multiple_choice", pooling="pooler"),
             HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"],
                        pooling="pooler")]
    model = MultiTaskModel(BertModel.from_pretrained(tiny_model_dir), heads)
    torch.manual_seed(1)
    with torch.no_grad():  # random heads with opinions: answers that differ by input
        model.heads["squad"].qa_outputs.weight.normal_(0, 2.0)
        model.heads["csqa"].classifier.weight.normal_(0, 2.0)
    model.save_pretrained(directory, tokenizer=tiny_tokenizer, extra={"max_length": 64})
    return directory


@pytest.mark.browser
def test_the_page_answers_questions_with_a_context_and_with_options(question_checkpoint):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    predictor = Predictor.from_pretrained(question_checkpoint, mixed_precision="no")
    server, url = start_server(question_checkpoint, "--precision", "no")
    browser = headless_chromium(webdriver)
    try:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 20)
        wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#tasks input"))
        assert browser.find_element(By.ID, "context").is_displayed()
        assert browser.find_element(By.ID, "choices").is_displayed()
        assert not browser.find_element(By.ID, "pair").is_displayed()  # no pair task here
        text = browser.find_element(By.ID, "text")
        text.clear()
        text.send_keys(QUESTION)
        browser.find_element(By.ID, "run").click()  # no context, no options yet
        assert shown_message(browser) == "squad needs a context; csqa needs options"
        wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, '.answer[data-task="sentiment"]'))
        assert not browser.find_elements(By.CSS_SELECTOR, '.answer[data-task="squad"]')
        browser.find_element(By.ID, "context").send_keys(CONTEXT)
        browser.find_element(By.ID, "choices").send_keys("\n".join(OPTIONS))
        browser.find_element(By.ID, "run").click()
        wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, '.answer[data-task="squad"]'))
        span = predictor.predict({"question": QUESTION, "context": CONTEXT})["squad"]
        marked = browser.find_element(By.CSS_SELECTOR, '.answer[data-task="squad"] mark').text
        assert marked == span["answer"] == CONTEXT[span["start"]:span["end"]]
        chosen = predictor.predict({"question": QUESTION, "choices": OPTIONS})["csqa"]["label"]
        items = browser.find_elements(By.CSS_SELECTOR, '.answer[data-task="csqa"] li')
        assert [item.text.split(" score")[0] for item in items] == OPTIONS
        classes = [item.get_attribute("class") for item in items]
        assert classes == ["chosen" if option == chosen else "" for option in OPTIONS]
        assert browser.find_element(By.ID, "error").text == ""
    finally:
        browser.quit()
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
