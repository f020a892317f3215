"""`mtl-nlp serve`'s API: answers equal to the Predictor's, the per-task endpoints equal to the
exported pipeline, dynamic batching, bounds and errors, the API key."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402
import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from test_export import sharpen  # noqa: E402
from transformers import BertModel, pipeline  # noqa: E402

from mtl_nlp import HeadConfig, MultiTaskModel, Predictor  # noqa: E402
from mtl_nlp.publish.export import export_task  # noqa: E402
from mtl_nlp.serving.app import ServeSettings, create_app  # noqa: E402
from mtl_nlp.serving.batching import DynamicBatcher, Overloaded  # noqa: E402

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TEXTS = ["anna schmidt lives in new york .", "the film was great", "peter went to paris"]
PAIR = ["the film was great", "the film was bad"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    directory = tmp_path_factory.mktemp("serve-checkpoint")
    heads = [HeadConfig(name="ner", type="token_classification", labels=TAGS),
             HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"],
                        pooling="pooler"),
             HeadConfig(name="similarity", type="regression", pooling="pooler", text_pair=True)]
    model = sharpen(MultiTaskModel(BertModel.from_pretrained(tiny_model_dir), heads))
    model.save_pretrained(directory, tokenizer=tiny_tokenizer, extra={"max_length": 64})
    return directory


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor.from_pretrained(checkpoint, mixed_precision="no")


def client_for(predictor, **settings) -> TestClient:
    return TestClient(create_app(predictor, ServeSettings(**settings)))


def test_predict_answers_as_the_predictor(predictor):
    with client_for(predictor) as client:
        assert client.get("/ready").json() == {"status": "ready"}
        response = client.post("/predict", json={"inputs": [*TEXTS, PAIR]})
        assert response.status_code == 200
        assert response.json() == predictor.predict([*TEXTS, tuple(PAIR)])  # JSON floats round-trip
        chosen = client.post("/predict", json={"inputs": TEXTS, "tasks": ["sentiment"]}).json()
        assert chosen == predictor.predict(TEXTS, tasks=["sentiment"])
        assert client.get("/tasks").json()["tasks"] == [
            {"name": "ner", "type": "token_classification", "labels": TAGS, "input": "text"},
            {"name": "sentiment", "type": "classification", "labels": ["negative", "positive"],
             "input": "text"},
            {"name": "similarity", "type": "regression", "labels": [], "input": "pair"}]


def test_task_endpoints_answer_as_the_exported_pipeline(predictor, checkpoint, tmp_path):
    tagger = pipeline("token-classification", model=str(export_task(checkpoint, "ner", tmp_path / "ner")),
                      aggregation_strategy="first")
    sentiment = export_task(checkpoint, "sentiment", tmp_path / "sentiment")
    classifier = pipeline("text-classification", model=str(sentiment))
    with client_for(predictor) as client:
        for inputs in (TEXTS[0], TEXTS):
            served = client.post("/tasks/ner", json={"inputs": inputs}).json()
            expected = tagger(inputs)
            assert_close(served, _plain(expected))
            served = client.post("/tasks/sentiment", json={"inputs": inputs}).json()
            assert_close(served, _plain(classifier(inputs)))


def assert_close(served, expected, tolerance=1e-4):
    """Equal JSON values, floats within `tolerance`."""
    if isinstance(expected, list):
        assert isinstance(served, list) and len(served) == len(expected)
        for mine, theirs in zip(served, expected):
            assert_close(mine, theirs, tolerance)
    elif isinstance(expected, dict):
        assert isinstance(served, dict) and served.keys() == expected.keys()
        for key in expected:
            assert_close(served[key], expected[key], tolerance)
    elif isinstance(expected, float):
        assert served == pytest.approx(expected, abs=tolerance)
    else:
        assert served == expected


def _plain(value):
    """Pipeline output as JSON values (numpy floats to float)."""
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value.item() if hasattr(value, "item") else value


@pytest.mark.parametrize(("path", "body", "status", "kind", "message"), [
    ("/predict", b"{not json", 400, "invalid_json", "not valid JSON"),
    ("/predict", b"[1, 2]", 400, "invalid_request", "must be a JSON object, got list"),
    ("/predict", b'{"inputs": ["a"], "task": ["ner"]}', 400, "invalid_request", "unknown field(s) task"),
    ("/predict", b'{"inputs": []}', 422, "invalid_inputs", "non-empty list"),
    ("/predict", b'{"inputs": [3]}', 422, "invalid_inputs", "input 0 is int"),
    ("/predict", b'{"inputs": ["a"], "tasks": ["nope"]}', 422, "unknown_task", "unknown task(s) ['nope']"),
    ("/predict", b'{"inputs": [["a", "b"]], "tasks": ["sentiment"]}', 422, "invalid_inputs",
     "task 'sentiment' takes single texts; input 0 is a (text, text_pair) pair"),
    ("/predict", b'{"inputs": ["a", "b", "c"]}', 413, "too_many_inputs", "3 inputs; the limit is 2"),
    ("/predict", b'{"inputs": ["' + b"a" * 300 + b'"]}', 413, "request_too_large", "the limit is 256"),
    ("/tasks/nope", b'{"inputs": "a"}', 404, "unknown_task", "no task 'nope'"),
    ("/predict", b'{"inputs": ["a"], "tasks": ["ner", "sentiment", "ner"]}', 422, "invalid_tasks",
     "task 'ner' is asked for more than once"),
    ("/predict", b'{"inputs": ["a", " \\n\\t"]}', 422, "empty_input", "input 1 has no text"),
    ("/tasks/sentiment", b'{"inputs": ["fine", ""]}', 422, "empty_input", "input 1 has no text"),
    ("/tasks/ner", b'{"inputs": "a", "parameters": {"top_k": 2}}', 422, "invalid_parameters",
     "top_k applies to text-classification tasks"),
    ("/tasks/sentiment", b'{"inputs": "a", "parameters": {"top_k": 0}}', 422, "invalid_parameters",
     "top_k must be an integer >= 1 or null, got 0"),
    ("/tasks/sentiment", b'{"inputs": "a", "parameters": {"top": 2}}', 422, "invalid_parameters",
     "unknown parameter(s) top"),
    ("/elsewhere", b"{}", 404, "not_found", "POST /elsewhere"),
])
def test_user_mistakes_get_a_4xx_naming_the_cause(predictor, path, body, status, kind, message):
    with client_for(predictor, max_inputs=2, max_request_bytes=256) as client:
        response = client.post(path, content=body)
        assert response.status_code == status
        error = response.json()["error"]
        assert error["type"] == kind and message in error["message"]


def test_the_page_is_served_whole_with_nothing_from_elsewhere(predictor):
    with client_for(predictor) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'call("predict"' in page.text and 'call("tasks")' in page.text
        assert "http://" not in page.text and "https://" not in page.text and "<script src" not in page.text


def test_an_api_key_guards_every_endpoint_but_the_page_and_the_probes(predictor):
    with client_for(predictor, api_key="s3cret") as client:
        assert client.get("/health").status_code == 200
        assert client.post("/predict", json={"inputs": ["a"]}).status_code == 401
        assert client.get("/tasks", headers={"X-API-Key": "wrong"}).json()["error"]["type"] == "unauthorized"
        assert client.get("/tasks", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        keyed = client.post("/predict", json={"inputs": ["a"]}, headers={"X-API-Key": "s3cret"})
        assert keyed.status_code == 200


def test_a_full_queue_answers_503_with_retry_after_and_metrics_count_it(predictor, monkeypatch):
    with client_for(predictor) as client:
        async def full(inputs, tasks, shape=None):
            raise Overloaded("the server's queue is full (512 requests)")

        monkeypatch.setattr(client.app.state.server.batcher, "submit", full)
        response = client.post("/predict", json={"inputs": ["a"]})
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.json()["error"]["type"] == "overloaded"
        metrics = client.get("/metrics").text
        assert 'mtl_nlp_requests_total{endpoint="/predict",status="503"} 1.0' in metrics
        assert "mtl_nlp_queue_depth 0.0" in metrics


def test_a_full_queue_sheds_model_requests_before_reading_them(predictor, monkeypatch):
    with client_for(predictor) as client:
        monkeypatch.setattr(client.app.state.server.batcher.queue, "full", lambda: True)
        for path in ("/predict", "/tasks/demo_ner"):
            response = client.post(path, content=b"not even JSON")  # refused before the body is read
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            assert response.json()["error"]["type"] == "overloaded"
        assert client.get("/tasks").status_code == 200 and client.get("/health").status_code == 200
        metrics = client.get("/metrics").text
        assert 'mtl_nlp_requests_total{endpoint="/predict",status="503"} 1.0' in metrics
        assert 'mtl_nlp_requests_total{endpoint="/tasks/{name}",status="503"} 1.0' in metrics


def run(coroutine):
    return asyncio.run(coroutine)


def count(inputs, tasks):
    """A batcher's cost of a request in tests: one token an input."""
    return len(inputs)


def test_concurrent_requests_share_a_batch_until_the_token_bound():
    calls = []

    def predict(inputs, tasks):
        calls.append((list(inputs), tasks))
        return [{"echo": item} for item in inputs]

    async def scenario(max_batch_tokens):
        batcher = DynamicBatcher(predict, count, max_batch_tokens, max_wait_ms=200, max_queue=16)
        batcher.start()
        answers = await asyncio.gather(*(batcher.submit([f"t{i}", f"u{i}"], None) for i in range(4)),
                                       batcher.submit(["v"], ["ner"]))
        await batcher.drain()
        return batcher.batches, answers

    batches, answers = run(scenario(max_batch_tokens=100))
    # one batch: the four requests asking for every task in one call, the one asking for ner in another
    assert batches == 2 and calls[0] == (["t0", "u0", "t1", "u1", "t2", "u2", "t3", "u3"], None)
    assert calls[1] == (["v"], ["ner"])
    assert answers[2] == [{"echo": "t2"}, {"echo": "u2"}] and answers[4] == [{"echo": "v"}]
    calls.clear()
    batches, _ = run(scenario(max_batch_tokens=4))  # 2 tokens a request: a batch closes at 2 requests
    assert [len(inputs) for inputs, _ in calls] == [4, 4, 1]


def held_model(calls: list, release: threading.Event):
    """A model call that records its inputs and holds the model thread until `release` is set."""
    def predict(inputs, tasks):
        calls.append(list(inputs))
        release.wait(5)
        return [{} for _ in inputs]

    return predict


def test_requests_that_queue_while_the_model_runs_form_the_next_batch_without_waiting():
    release, calls = threading.Event(), []
    predict = held_model(calls, release)

    async def scenario():
        batcher = DynamicBatcher(predict, count, 100, max_wait_ms=0, max_queue=16)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(["a"], None))
        await asyncio.sleep(0.05)  # "a" alone in the model: nothing else had come
        queued = [asyncio.ensure_future(batcher.submit([x], None)) for x in ("b", "c", "d")]
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(first, *queued)
        await batcher.drain()

    run(scenario())
    assert calls == [["a"], ["b", "c", "d"]]


def test_a_full_queue_refuses_at_once():
    release = threading.Event()

    def predict(inputs, tasks):
        release.wait(5)
        return [{} for _ in inputs]

    async def scenario():
        batcher = DynamicBatcher(predict, count, 1, max_wait_ms=0, max_queue=2)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(["a"], None))
        await asyncio.sleep(0.05)  # the first is in the model; two more fill the queue
        waiting = [asyncio.ensure_future(batcher.submit([x], None)) for x in ("b", "c")]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded, match="queue is full"):
            await batcher.submit(["d"], None)
        release.set()
        answered = await asyncio.gather(running, *waiting)
        await batcher.drain()
        return answered

    assert run(scenario()) == [[{}], [{}], [{}]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(checkpoint, *options: str) -> tuple[subprocess.Popen, str]:
    """`mtl-nlp serve` on a free loopback port, once /ready answers; (process, base URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mtl_nlp.cli", "serve", str(checkpoint), "--port", str(port), *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise AssertionError(f"the server did not get ready: {server.communicate()[1][-2000:]}")


def test_sigterm_stops_accepting_answers_what_was_accepted_and_exits_0(checkpoint, predictor):
    server, url = start_server(checkpoint, "--precision", "no", "--max-wait-ms", "400")
    try:
        with ThreadPoolExecutor(len(TEXTS)) as pool:
            pending = [pool.submit(httpx.post, f"{url}/predict", json={"inputs": [text]}, timeout=30)
                       for text in TEXTS]
            time.sleep(0.15)  # accepted: waiting in the 400 ms batching window
            server.send_signal(signal.SIGTERM)
            responses = [future.result() for future in pending]
        assert [response.status_code for response in responses] == [200] * len(TEXTS)
        assert [response.json()[0] for response in responses] == predictor.predict(TEXTS)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()


@pytest.mark.browser
def test_the_page_in_a_real_browser_shows_labels_and_highlighted_entities(checkpoint, predictor, tmp_path):
    """Headless Chromium types a sentence, presses Predict and reads what a person would see."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, url = start_server(checkpoint, "--precision", "no")
    browser = headless_chromium(webdriver)
    try:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 20)
        wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#tasks input"))
        box = browser.find_element(By.ID, "text")
        box.clear()
        box.send_keys(TEXTS[0])
        browser.find_element(By.ID, "run").click()
        wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, '.answer[data-task="sentiment"]'))
        expected = predictor.predict(TEXTS[0])
        marks = browser.find_elements(By.CSS_SELECTOR, '.answer[data-task="ner"] mark')
        first_text = "return arguments[0].firstChild.textContent"  # the entity, before its tag
        shown = [(mark.get_attribute("data-label"), browser.execute_script(first_text, mark))
                 for mark in marks]
        assert shown == [(entity["label"], entity["text"]) for entity in expected["ner"]]
        sentiment = browser.find_element(By.CSS_SELECTOR, '.answer[data-task="sentiment"] p').text
        assert sentiment.startswith(expected["sentiment"]["label"])
        # MTL_NLP_SCREENSHOT=FILE keeps the picture (the README's is taken so)
        browser.save_screenshot(os.environ.get("MTL_NLP_SCREENSHOT", str(tmp_path / "serve-page.png")))
    finally:
        browser.quit()
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)


def test_the_docs_pages_and_their_scripts_come_from_the_server_with_or_without_a_key(predictor):
    """FastAPI's docs load Swagger UI and ReDoc from a CDN, blank on a closed network: here they
    are served from the installed package, and open without the API key (a browser sends none)."""
    with client_for(predictor, api_key="s3cret") as client:
        docs = client.get("/docs")
        assert docs.status_code == 200
        assert "/static-offline-docs/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text.lower()
        script = client.get("/static-offline-docs/swagger-ui-bundle.js")
        assert script.status_code == 200 and len(script.content) > 100_000
        assert client.get("/static-offline-docs/swagger-ui.css").status_code == 200
        redoc = client.get("/redoc")
        assert redoc.status_code == 200 and "/static-offline-docs/redoc.standalone.js" in redoc.text
        assert {"/predict", "/tasks/{name}"} <= set(client.get("/openapi.json").json()["paths"])
        assert client.post("/predict", json={"inputs": ["hi"]}).status_code == 401  # the API still needs it


@pytest.mark.browser
def test_the_docs_page_shows_the_endpoints_offline(checkpoint):
    """Headless Chromium, on a machine without internet, renders /docs with every endpoint."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, url = start_server(checkpoint, "--precision", "no")
    browser = headless_chromium(webdriver)
    try:
        browser.get(url + "/docs")
        paths = lambda page: [e.text for e in page.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")]  # noqa: E731
        WebDriverWait(browser, 20).until(lambda page: "/predict" in paths(page))
        assert {"/predict", "/tasks/{name}", "/tasks", "/health", "/ready", "/metrics"} <= set(paths(browser))
    finally:
        browser.quit()
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)


def headless_chromium(webdriver):
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,800"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options)


@pytest.mark.browser
def test_the_page_asks_a_keyed_server_for_its_key_and_then_answers(checkpoint, predictor, monkeypatch):
    """With an API key set, the page opens, asks for the key when the API answers 401, sends it
    (X-API-Key) once typed, and shows the answers."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.setenv("MTL_NLP_API_KEY", "s3cret")
    server, url = start_server(checkpoint, "--precision", "no")
    browser = headless_chromium(webdriver)
    try:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 20)
        wait.until(lambda page: page.find_element(By.ID, "key").is_displayed())
        assert browser.find_element(By.ID, "error").text == "type the server's API key"
        assert not browser.find_elements(By.CSS_SELECTOR, "#tasks input")
        browser.find_element(By.ID, "key").send_keys("wrong")
        browser.find_element(By.ID, "use-key").click()
        wait.until(lambda page: "refused this key" in page.find_element(By.ID, "error").text)
        key = browser.find_element(By.ID, "key")
        key.clear()
        key.send_keys("s3cret")
        browser.find_element(By.ID, "use-key").click()
        wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#tasks input"))
        assert not browser.find_element(By.ID, "key").is_displayed()
        box = browser.find_element(By.ID, "text")
        box.clear()
        box.send_keys(TEXTS[1])
        browser.find_element(By.ID, "run").click()
        wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, '.answer[data-task="sentiment"]'))
        sentiment = browser.find_element(By.CSS_SELECTOR, '.answer[data-task="sentiment"] p').text
        assert sentiment.startswith(predictor.predict(TEXTS[1])["sentiment"]["label"])
    finally:
        browser.quit()
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)


@pytest.fixture(scope="module")
def page_checkpoint(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    """For the page's tests: a pair task listed first (the page asks for it in a request of its own,
    so its answer must still come first) and a multilabel task beside a tagger and a classifier."""
    directory = tmp_path_factory.mktemp("page-checkpoint")
    heads = [HeadConfig(name="similarity", type="regression", pooling="pooler", text_pair=True),
             HeadConfig(name="topics", type="multilabel", labels=["film", "food", "sport", "travel"],
                        pooling="pooler"),
             HeadConfig(name="ner", type="token_classification", labels=TAGS),
             HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"],
                        pooling="pooler")]
    model = sharpen(MultiTaskModel(BertModel.from_pretrained(tiny_model_dir), heads))
    model.save_pretrained(directory, tokenizer=tiny_tokenizer, extra={"max_length": 64})
    return directory


@pytest.fixture(scope="module")
def page_browser(page_checkpoint):
    """(headless Chromium, URL of `mtl-nlp serve` page_checkpoint), shared by the page's tests.
    Every request waits out an 800 ms batching window: long enough to see the page while it waits."""
    webdriver = pytest.importorskip("selenium.webdriver")
    server, url = start_server(page_checkpoint, "--precision", "no", "--max-wait-ms", "800")
    try:
        browser = headless_chromium(webdriver)
        try:
            yield browser, url
        finally:
            browser.quit()
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)


COUNT_FETCHES = """const real = window.fetch; window.fetched = [];
window.fetch = (path, options) => { window.fetched.push(String(path)); return real(path, options); };"""


def open_page(page_browser, text: str = TEXTS[1], pair: str = "", ticked: list[str] | None = None):
    """The page loaded afresh with its tasks, `text` and `pair` typed and only the tasks `ticked`
    ticked (None: every task, as it opens); from then on window.fetched lists the API calls."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, url = page_browser
    browser.get(url + "/")
    WebDriverWait(browser, 20).until(lambda page: page.find_elements(By.CSS_SELECTOR, "#tasks input"))
    for box in browser.find_elements(By.CSS_SELECTOR, "#tasks input"):
        if ticked is not None and box.get_attribute("value") not in ticked:
            box.click()
    for field, value in (("text", text), ("pair", pair)):
        browser.execute_script("arguments[0].value = arguments[1]", browser.find_element(By.ID, field), value)
    browser.execute_script(COUNT_FETCHES)
    return browser


def shown_message(browser) -> str:
    """The page's message once one shows (a visible #error), or AssertionError after 5 s."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 5).until(lambda page: error.is_displayed() and error.text)
    return error.text


def shown_tasks(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return [block.get_attribute("data-task") for block in browser.find_elements(By.CSS_SELECTOR, ".answer")]


def wait_for_answers(browser, count: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 20).until(lambda page: len(shown_tasks(page)) == count)


@pytest.mark.browser
def test_the_page_asks_for_a_task_when_none_is_ticked_and_calls_nothing(page_browser):
    from selenium.webdriver.common.by import By

    browser = open_page(page_browser, ticked=[])
    browser.find_element(By.ID, "run").click()
    assert "tick at least one task" in shown_message(browser)
    assert browser.execute_script("return window.fetched") == []
    assert shown_tasks(browser) == []


@pytest.mark.browser
def test_the_page_names_the_pair_task_that_needs_the_second_text(page_browser):
    """A pair task ticked, the second text empty (or blank): the page names the task and the other
    tasks answer (only the pair task ticked: nothing is sent); with the second text every task does."""
    from selenium.webdriver.common.by import By

    for pair in ("", "  \n"):
        browser = open_page(page_browser, pair=pair)
        browser.find_element(By.ID, "run").click()
        assert shown_message(browser) == "similarity needs the second text"
        wait_for_answers(browser, 3)
        assert shown_tasks(browser) == ["topics", "ner", "sentiment"]
        assert browser.execute_script("return window.fetched") == ["predict"]
    browser = open_page(page_browser, ticked=["similarity"])
    browser.find_element(By.ID, "run").click()
    assert shown_message(browser) == "similarity needs the second text"
    assert browser.execute_script("return window.fetched") == []
    browser.execute_script("arguments[0].value = arguments[1]", browser.find_element(By.ID, "pair"), PAIR[1])
    browser.find_element(By.ID, "run").click()
    wait_for_answers(browser, 1)
    assert shown_tasks(browser) == ["similarity"]
    assert browser.find_element(By.ID, "error").text == ""


@pytest.mark.browser
def test_the_page_says_the_text_is_empty_instead_of_sending_it(page_browser):
    """The server answers 422 for a text with no words: the page says so before asking it."""
    from selenium.webdriver.common.by import By

    for text in ("", " \t\n "):
        browser = open_page(page_browser, text=text, pair=PAIR[1])
        browser.find_element(By.ID, "run").click()
        assert "the text is empty" in shown_message(browser)
        assert browser.execute_script("return window.fetched") == []
        assert shown_tasks(browser) == []


@pytest.mark.browser
def test_the_page_shows_each_multilabel_label_with_its_score(page_browser, page_checkpoint):
    from selenium.webdriver.common.by import By

    expected = Predictor.from_pretrained(page_checkpoint, mixed_precision="no").predict(TEXTS[1])["topics"]
    assert len(expected["labels"]) >= 2  # the tiny model predicts several topics: each needs its score
    browser = open_page(page_browser, text=TEXTS[1], ticked=["topics"])
    browser.find_element(By.ID, "run").click()
    wait_for_answers(browser, 1)
    line = browser.find_element(By.CSS_SELECTOR, '.answer[data-task="topics"] p').text
    shown = [(label, float(score)) for label, score in re.findall(r"(\w+) (\d\.\d{3})", line)]
    assert [label for label, _ in shown] == expected["labels"]
    for label, score in shown:
        assert score == pytest.approx(expected["scores"][label], abs=1e-3)


@pytest.mark.browser
def test_the_predict_button_shows_it_is_working_until_the_answer_or_an_error_arrives(page_browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def busy(button) -> bool:
        shows = button.get_attribute("aria-busy") == "true" and "working" in button.text.lower()
        return shows and not button.is_enabled()

    def back(button) -> bool:
        idle = button.get_attribute("aria-busy") != "true" and button.text == "Predict"
        return idle and button.is_enabled()

    browser = open_page(page_browser, pair=PAIR[1])
    button = browser.find_element(By.ID, "run")
    button.click()
    assert busy(button)  # the answer takes the 800 ms batching window at least
    wait_for_answers(browser, 4)
    assert back(button)
    # the network fails half a second after the click
    browser.execute_script("window.fetch = () => new Promise((_, fail) => "
                           "setTimeout(() => fail(new TypeError('Failed to fetch')), 500))")
    button.click()
    assert busy(button)
    assert "Failed to fetch" in shown_message(browser)
    WebDriverWait(browser, 5).until(lambda page: back(button))


@pytest.mark.browser
def test_the_page_shows_the_answers_in_the_order_of_the_task_checkboxes(page_browser):
    """The pair task is the first checkbox; its answer comes from a request of its own."""
    from selenium.webdriver.common.by import By

    browser = open_page(page_browser, pair=PAIR[1])
    boxes = [box.get_attribute("value") for box in browser.find_elements(By.CSS_SELECTOR, "#tasks input")]
    assert boxes == ["similarity", "topics", "ner", "sentiment"]
    browser.find_element(By.ID, "run").click()
    wait_for_answers(browser, 4)
    assert shown_tasks(browser) == boxes


def test_export_onnx_writes_a_standalone_graph_whose_logits_are_the_models(checkpoint, tmp_path, capsys):
    onnxruntime = pytest.importorskip("onnxruntime")
    from transformers import AutoTokenizer

    from mtl_nlp.cli import main as cli_main

    assert cli_main(["export-onnx", str(checkpoint), str(tmp_path / "onnx")]) == 0
    assert "manifest.json" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert manifest["inputs"] == ["input_ids", "attention_mask"] and manifest["max_length"] == 64
    assert [(o["task"], o["type"], o["labels"]) for o in manifest["outputs"]] == [
        ("ner", "token_classification", TAGS), ("sentiment", "classification", ["negative", "positive"]),
        ("similarity", "regression", [])]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "onnx")  # saved beside the graph
    encoded = tokenizer(TEXTS, padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / manifest["model"]))
    outputs = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, {name: encoded[name] for name in manifest["inputs"]})))
    model = MultiTaskModel.from_pretrained(checkpoint).eval()
    with torch.no_grad():
        expected = model.forward_all(**tokenizer(TEXTS, padding=True, return_tensors="pt"))
    for output in manifest["outputs"]:
        if output["text_pair"]:
            continue
        torch.testing.assert_close(torch.from_numpy(outputs[output["output"]]), expected[output["task"]],
                                   atol=1e-4, rtol=0)


LONG = " ".join(["anna schmidt visited new york and peter went to paris ."] * 30)  # ~10 windows of 64


def test_tagging_and_predict_requests_at_once_never_fail(predictor, monkeypatch):
    """The per-task endpoint shapes a tagger's answers with the tokenizer; while the model thread
    tokenizes a batch at once, a fast tokenizer's shared truncation state broke both (500s)."""
    tokenizer = predictor.tokenizer
    set_state = tokenizer.set_truncation_and_padding

    def set_state_slowly(*args, **kwargs):
        set_state(*args, **kwargs)
        time.sleep(0.002)  # between setting the truncation and encoding, as on a busy machine

    monkeypatch.setattr(tokenizer, "set_truncation_and_padding", set_state_slowly)
    bodies = [("/predict", {"inputs": [LONG, TEXTS[0]]}), ("/tasks/ner", {"inputs": [LONG, TEXTS[0]]}),
              ("/tasks/ner", {"inputs": LONG})] * 8
    with client_for(predictor) as client, ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda job: client.post(job[0], json=job[1]).status_code, bodies * 2))
    assert statuses == [200] * len(statuses)


class TimeoutError310(Exception):
    """What `asyncio.wait_for` raises on Python 3.10: not the builtin TimeoutError."""


@pytest.fixture
def timeouts_of_python_310(monkeypatch):
    """asyncio as on Python 3.10, where asyncio.TimeoutError is a class of its own."""
    wait_for = asyncio.wait_for

    async def wait_for_310(awaitable, timeout):
        try:
            return await wait_for(awaitable, timeout)
        except TimeoutError:
            raise TimeoutError310 from None

    monkeypatch.setattr(asyncio, "wait_for", wait_for_310)
    monkeypatch.setattr(asyncio, "TimeoutError", TimeoutError310)


def test_the_batcher_survives_an_idle_wait_on_python_310(timeouts_of_python_310):
    calls = []

    def predict(inputs, tasks):
        calls.append(list(inputs))
        return [{} for _ in inputs]

    async def scenario():
        batcher = DynamicBatcher(predict, count, 100, max_wait_ms=20, max_queue=16)
        batcher.start()
        for text in ("a", "b"):  # each waits 20 ms for company that never comes
            answer = asyncio.ensure_future(batcher.submit([text], None))
            done, _ = await asyncio.wait({answer}, timeout=2)
            assert done, "the batcher stopped answering"
        await batcher.drain()

    run(scenario())
    assert calls == [["a"], ["b"]]


def test_a_request_not_answered_in_time_gets_504_on_python_310(predictor, timeouts_of_python_310):
    from mtl_nlp.serving.requests import ApiError
    from mtl_nlp.serving.server import Server

    release = threading.Event()

    async def scenario():
        server = Server(predictor, ServeSettings(timeout_s=0.1))
        await server.start()
        server.batcher.predict = lambda inputs, tasks: release.wait(5) and [{} for _ in inputs]
        with pytest.raises(ApiError) as refused:
            await server.answer(["the film was great"], None)
        release.set()
        await server.stop()
        return refused.value

    error = run(scenario())
    assert (error.status, error.kind, error.message) == (504, "timeout", "no answer within 0.1 s")


def test_a_request_costing_more_windows_than_the_limit_gets_413(predictor):
    windows = predictor.count_windows([LONG], ["ner"])[0]
    assert windows > 4
    with client_for(predictor, max_request_windows=4) as client:
        refused = client.post("/tasks/ner", json={"inputs": LONG})
        assert refused.status_code == 413
        message = refused.json()["error"]["message"]
        assert refused.json()["error"]["type"] == "request_too_costly"
        counted = re.match(r"the request costs at least (\d+) encoder windows \(input 0 (\d+): a tagging "
                           r"task reads a text longer than 64 tokens as overlapping windows\)", message)
        assert counted and 4 < int(counted[1]) == int(counted[2]) <= windows  # counted until over the limit
        assert message.endswith("the limit is 4 per request (--max-request-windows)")
        assert client.post("/predict", json={"inputs": [LONG], "tasks": ["ner"]}).status_code == 413
        # one window where no tagging task reads the text; four short texts are four windows
        assert client.post("/tasks/sentiment", json={"inputs": LONG}).status_code == 200
        assert client.post("/tasks/ner", json={"inputs": TEXTS + ["peter"]}).status_code == 200
        assert client.post("/tasks/ner", json={"inputs": TEXTS * 2}).status_code == 413


def test_a_large_request_runs_in_a_model_call_of_its_own():
    """What queued before a large request is answered before it, not in the same (long) call."""
    release, calls = threading.Event(), []
    predict = held_model(calls, release)

    async def scenario():
        batcher = DynamicBatcher(predict, lambda inputs, tasks: sum(map(len, inputs)), 10, max_wait_ms=0,
                                 max_queue=16)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(["a"], None))
        while not calls:  # until "a" is in the model
            await asyncio.sleep(0.01)
        queued = [asyncio.ensure_future(batcher.submit([text], None)) for text in ("b", "B" * 100, "c")]
        release.set()
        await asyncio.gather(first, *queued)
        await batcher.drain()

    run(scenario())
    assert calls == [["a"], ["b"], ["B" * 100], ["c"]]


def test_a_request_whose_client_left_never_reaches_the_model(predictor):
    """A client that disconnects while its request waits for the model costs no model call."""
    app = create_app(predictor, ServeSettings())
    release, calls = threading.Event(), []

    async def request(text: str, leave: asyncio.Event | None) -> int:
        sent = [{"type": "http.request", "body": json.dumps({"inputs": [text]}).encode()}]
        statuses = []

        async def receive():
            if sent:
                return sent.pop()
            await (leave.wait() if leave else asyncio.Event().wait())
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [], "query_string": b"",
                 "root_path": "", "scheme": "http", "server": ("test", 80), "client": ("test", 1)}
        await app(scope, receive, send)
        return statuses[0]

    async def scenario():
        async with app.router.lifespan_context(app):
            batcher = app.state.server.batcher
            predict = batcher.predict

            def slow(inputs, tasks):
                calls.append(list(inputs))
                release.wait(5)
                return predict(inputs, tasks)

            batcher.predict = slow
            first = asyncio.ensure_future(request("the film was great", None))
            while not calls:  # until the first is in the model
                await asyncio.sleep(0.01)
            leave = asyncio.Event()
            gone = asyncio.ensure_future(request("peter went to paris", leave))
            while batcher.queue.empty():  # until the second is queued
                await asyncio.sleep(0.01)
            leave.set()
            status = await gone  # answered at once, while the model still runs the first
            release.set()
            return await first, status

    assert run(scenario()) == (200, 499)
    assert calls == [["the film was great"]]


def asgi_post(app, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, dict, int]:
    """POST /predict to `app` as ASGI, the body in `chunks`: (status, error, chunks read)."""
    read, statuses, bodies = [0], [], []

    async def receive():
        read[0] += 1
        more = read[0] < len(chunks)
        return {"type": "http.request", "body": chunks[read[0] - 1], "more_body": more}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
        elif message["type"] == "http.response.body":
            bodies.append(message.get("body", b""))

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers, "query_string": b"",
             "root_path": "", "scheme": "http", "server": ("test", 80), "client": ("test", 1)}
    run(app(scope, receive, send))
    return statuses[0], json.loads(b"".join(bodies))["error"], read[0]


def test_a_body_over_the_limit_is_refused_before_it_is_read(predictor):
    app = create_app(predictor, ServeSettings(max_request_bytes=1024))
    chunks = [b"x" * 512] * 100
    status, error, read = asgi_post(app, chunks, [(b"content-length", b"51200")])
    assert (status, error["type"], read) == (413, "request_too_large", 0)  # from its Content-Length
    assert error["message"] == "the request body has 51200 bytes; the limit is 1024"
    status, error, read = asgi_post(app, chunks, [(b"transfer-encoding", b"chunked")])
    assert (status, error["type"], read) == (413, "request_too_large", 3)  # once 1,536 bytes came
    assert error["message"] == "the request body has over 1024 bytes; the limit is 1024"


def test_deeply_nested_json_is_a_400(predictor):
    with client_for(predictor) as client:
        response = client.post("/predict", content=b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
        assert response.status_code == 400
        assert response.json()["error"] == {
            "type": "invalid_json", "message": "the request body nests JSON arrays or objects too deeply"}


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--max-queue", "0", "argument --max-queue: must be an integer >= 1, got 0"),
    ("--max-batch-tokens", "-5", "argument --max-batch-tokens: must be an integer >= 1, got -5"),
    ("--max-inputs", "many", "argument --max-inputs: must be an integer >= 1, got 'many'"),
    ("--max-request-windows", "0", "argument --max-request-windows: must be an integer >= 1, got 0"),
    ("--max-request-bytes", "0", "argument --max-request-bytes: must be an integer >= 1, got 0"),
    ("--workers", "0", "argument --workers: must be an integer >= 1, got 0"),
    ("--port", "70000", "argument --port: must be an integer in [0, 65535], got 70000"),
    ("--max-wait-ms", "-1", "argument --max-wait-ms: must be a number in [0, 10000], got -1"),
    ("--max-wait-ms", "nan", "argument --max-wait-ms: must be a number in [0, 10000], got nan"),
    ("--timeout", "0", "argument --timeout: must be a number in (0, 3600], got 0"),
    ("--timeout", "inf", "argument --timeout: must be a number in (0, 3600], got inf"),
])
def test_every_serve_option_is_range_checked(checkpoint, capsys, option, value, expected):
    from mtl_nlp.cli import main as cli_main

    with pytest.raises(SystemExit) as exited:
        cli_main(["serve", str(checkpoint), option, value])
    assert exited.value.code == 2 and expected in capsys.readouterr().err


@pytest.mark.parametrize(("settings", "message"), [
    ({"max_queue": 0}, "max_queue must be an integer >= 1, got 0"),
    ({"max_request_windows": -1}, "max_request_windows must be an integer >= 1, got -1"),
    ({"max_wait_ms": float("nan")}, "max_wait_ms must be in [0, 10000.0], got nan"),
    ({"timeout_s": 0}, "timeout_s must be in (0, 3600.0], got 0"),
])
def test_serve_settings_are_range_checked_in_python_too(settings, message):
    with pytest.raises(ValueError) as refused:
        ServeSettings(**settings)
    assert str(refused.value) == message


def test_cors_preflight_probes_and_the_page_pass_the_key_and_refusals_carry_cors(predictor):
    origin = {"Origin": "https://app.example"}
    with client_for(predictor, api_key="s3cret", cors_origins=("https://app.example",)) as client:
        preflight = client.options("/predict", headers={
            **origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key,content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        refused = client.post("/predict", json={"inputs": ["a"]}, headers=origin)
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == "https://app.example"
        for path in ("/health", "/ready", "/"):  # load balancers' probes, and the page that asks for the key
            assert client.get(path).status_code == 200
        assert client.get("/metrics").status_code == 401
        keyed = client.post("/predict", json={"inputs": ["a"]}, headers={**origin, "X-API-Key": "s3cret"})
        assert keyed.status_code == 200 and keyed.headers["access-control-allow-origin"] == "https://app.example"


def test_the_page_asks_for_the_key_on_401_and_sends_it(predictor):
    with client_for(predictor, api_key="s3cret") as client:
        page = client.get("/").text
        assert "response.status === 401" in page and '"X-API-Key"' in page and 'id="key"' in page


@pytest.fixture(scope="module")
def topic_checkpoint(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    """A classifier with three labels and a multilabel task with four."""
    directory = tmp_path_factory.mktemp("serve-topics")
    heads = [HeadConfig(name="mood", type="classification", labels=["sad", "calm", "glad"], pooling="pooler"),
             HeadConfig(name="topics", type="multilabel", labels=["film", "food", "sport", "travel"],
                        pooling="pooler")]
    model = sharpen(MultiTaskModel(BertModel.from_pretrained(tiny_model_dir), heads))
    model.save_pretrained(directory, tokenizer=tiny_tokenizer, extra={"max_length": 64})
    return directory


def test_task_endpoints_take_the_pipelines_top_k(topic_checkpoint, tmp_path):
    """{"parameters": {"top_k": k or null}} answers as the exported text-classification pipeline
    does with top_k: the k best labels, best first (null: every label), for one input or several."""
    predictor = Predictor.from_pretrained(topic_checkpoint, mixed_precision="no")
    with client_for(predictor) as client:
        for task in ("topics", "mood"):
            exported = pipeline("text-classification",
                                model=str(export_task(topic_checkpoint, task, tmp_path / task)))
            for inputs in (TEXTS[1], TEXTS):
                for parameters in ({"top_k": None}, {"top_k": 2}, {}):
                    served = client.post(f"/tasks/{task}", json={"inputs": inputs, "parameters": parameters})
                    assert served.status_code == 200
                    assert_close(served.json(), _plain(exported(inputs, **parameters)))
        # /predict answers as the Predictor does (no every-label scores for a classifier)
        assert client.post("/predict", json={"inputs": TEXTS}).json() == predictor.predict(TEXTS)


def test_entity_words_are_the_tokens_over_each_entity(predictor):
    """Found by bisection (a long text has tens of thousands of tokens and entities): the same
    words as scanning every token for each entity."""
    from mtl_nlp.serving.requests import entity_words

    tokenizer = predictor.tokenizer
    entities = predictor.predict(LONG, tasks="ner")["ner"]
    assert len(entities) > 20
    encoding = tokenizer(LONG, return_offsets_mapping=True, add_special_tokens=False)
    scanned = [tokenizer.convert_tokens_to_string(
        [token for token, (first, last) in zip(encoding.tokens(), encoding["offset_mapping"])
         if first < entity["end"] and last > entity["start"] and first != last]) for entity in entities]
    assert entity_words(tokenizer, LONG, entities) == scanned
    assert entity_words(tokenizer, LONG, []) == []


@pytest.mark.parametrize("head", [HeadConfig(name="qa", type="extractive_qa"),
                                  HeadConfig(name="mc", type="multiple_choice")])
def test_a_model_of_question_tasks_only_warms_up_and_serves(tiny_model_dir, tiny_tokenizer, head):
    model = MultiTaskModel(BertModel.from_pretrained(tiny_model_dir), [head])
    predictor = Predictor(model, tiny_tokenizer, max_length=32, stride=4, mixed_precision="no")
    question = ({"question": "where ?", "context": "anna lives in paris ."} if head.type == "extractive_qa"
                else {"question": "what barks ?", "choices": ["cat", "dog"]})
    with TestClient(create_app(predictor, ServeSettings())) as client:
        assert client.get("/ready").json() == {"status": "ready"}
        answer = client.post(f"/tasks/{head.name}", json={"inputs": question}).json()
    assert answer == pytest.approx(predictor.predict(question)[head.name])
