"""The embedded demo corpus: small NER, sentiment and topic data built from templates with a seed.

The files under `demo_data/` are the output of `write_demo_corpus()`; a test checks they match,
so edit the templates here and regenerate with `python -m mtl_nlp.tasks.demo_corpus`.
"""

from __future__ import annotations

import random
from pathlib import Path

DEMO_DIR = Path(__file__).parent / "demo_data"
SPLIT_SIZES = {"train": 600, "validation": 100, "test": 200}
SEED = 1234

PEOPLE = [
    "Anna Schmidt", "John Smith", "Maria Garcia", "Kenji Tanaka", "Olivia Brown", "Ahmed Hassan",
    "Lucas Martin", "Sofia Rossi", "David Cohen", "Emma Wilson", "Ivan Petrov", "Chen Wei",
    "Laura Novak", "Peter Jones", "Fatima Khan", "Tom Baker", "Elena Popescu", "Marco Bianchi",
]
PLACES = [
    "Berlin", "Paris", "New York", "Tokyo", "Cairo", "Madrid", "Buenos Aires", "Toronto",
    "Nairobi", "Sydney", "Oslo", "Mumbai", "Lisbon", "San Francisco", "Warsaw", "Seoul",
]
ORGS = [
    "Acme Corp", "Globex", "United Nations", "Red Cross", "Nordic Bank", "Apex Motors",
    "Helix Labs", "Bluewave Media", "World Bank", "Orion Airlines", "Vertex Software", "FIFA",
]
NER_TEMPLATES = [
    "{PER} visited {LOC} last week .",
    "{PER} joined {ORG} in {LOC} .",
    "{ORG} opened a new office in {LOC} .",
    "Officials in {LOC} met {PER} on Tuesday .",
    "{PER} said {ORG} will grow next year .",
    "The mayor of {LOC} praised {ORG} .",
    "{PER} and {PER} flew to {LOC} .",
    "Shares of {ORG} fell after {PER} resigned .",
    "{ORG} signed a deal with {ORG} .",
    "According to {PER} , prices in {LOC} rose .",
    "{PER} lives in {LOC} .",
    "Talks between {ORG} and {LOC} ended .",
    # Sentences without entities teach the tagger that most text is O.
    "prices rose again on Monday .",
    "the weather was cold and wet all week .",
    "critics said the plan would fail .",
    "the film was dull and far too long .",
]

POSITIVE = ["wonderful", "brilliant", "delightful", "moving", "superb", "charming", "gripping",
            "excellent", "heartfelt", "funny", "beautiful", "smart"]
NEGATIVE = ["dull", "awful", "boring", "clumsy", "tedious", "dreadful", "shallow", "messy",
            "painful", "lifeless", "bland", "annoying"]
SUBJECTS = ["the film", "this movie", "the acting", "the script", "the story", "the soundtrack",
            "the ending", "the cast", "the direction", "the dialogue"]
SENTIMENT_TEMPLATES = [
    "{subj} is {adj} .",
    "{subj} was truly {adj} from start to finish .",
    "i found {subj} {adj} and {adj2} .",
    "what a {adj} experience , {subj} felt {adj2} .",
    "honestly , {subj} is {adj} .",
    "{subj} turned out {adj} , even {adj2} .",
]

TOPICS = {
    "World": ["election", "minister", "embassy", "ceasefire", "parliament", "refugees",
              "summit", "diplomats", "protest", "border"],
    "Sports": ["match", "goal", "coach", "season", "championship", "striker", "tournament",
               "league", "medal", "playoffs"],
    "Business": ["shares", "profit", "merger", "investors", "revenue", "bank", "stocks",
                 "earnings", "inflation", "market"],
    "Sci/Tech": ["software", "satellite", "researchers", "chip", "internet", "robot", "genome",
                 "smartphone", "laboratory", "algorithm"],
}
TOPIC_TEMPLATES = [
    "The {a} dominated headlines as the {b} drew attention in {loc} .",
    "Reports on the {a} and the {b} came out of {loc} on Monday .",
    "In {loc} , the {a} raised new questions about the {b} .",
    "Analysts said the {a} could change the {b} this year .",
    "A surprise {a} followed the {b} , sources in {loc} said .",
]


def _fill_entities(template: str, rng: random.Random) -> tuple[list[str], list[str]]:
    """Fill a NER template; return words and their BIO tags."""
    pools = {"PER": PEOPLE, "LOC": PLACES, "ORG": ORGS}
    words: list[str] = []
    tags: list[str] = []
    for piece in template.split():
        if piece.startswith("{") and piece.endswith("}"):
            label = piece[1:-1]
            entity = rng.choice(pools[label]).split()
            words.extend(entity)
            tags.extend([f"B-{label}"] + [f"I-{label}"] * (len(entity) - 1))
        else:
            words.append(piece)
            tags.append("O")
    return words, tags


def ner_examples(count: int, rng: random.Random) -> list[tuple[list[str], list[str]]]:
    """`count` NER sentences as (words, tags)."""
    return [_fill_entities(rng.choice(NER_TEMPLATES), rng) for _ in range(count)]


def sentiment_examples(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """`count` (text, label) pairs with label negative or positive."""
    rows = []
    for _ in range(count):
        label = rng.choice(["negative", "positive"])
        pool = POSITIVE if label == "positive" else NEGATIVE
        adj, adj2 = rng.sample(pool, 2)
        text = rng.choice(SENTIMENT_TEMPLATES).format(subj=rng.choice(SUBJECTS), adj=adj, adj2=adj2)
        rows.append((text, label))
    return rows


def topic_examples(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """`count` (text, label) pairs over four news topics."""
    rows = []
    for _ in range(count):
        label = rng.choice(sorted(TOPICS))
        a, b = rng.sample(TOPICS[label], 2)
        text = rng.choice(TOPIC_TEMPLATES).format(a=a, b=b, loc=rng.choice(PLACES))
        rows.append((text, label))
    return rows


def render_conll(examples: list[tuple[list[str], list[str]]]) -> str:
    """Two-column CoNLL text: `word tag` per line, a blank line after each sentence."""
    return "".join(
        "".join(f"{w} {t}\n" for w, t in zip(words, tags)) + "\n" for words, tags in examples
    )


def render_tsv(rows: list[tuple[str, str]]) -> str:
    """TSV with a `text<TAB>label` header."""
    return "text\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows)


def demo_corpus() -> dict[str, str]:
    """Every demo file's relative path mapped to its content; deterministic for SEED."""
    rng = random.Random(SEED)
    files: dict[str, str] = {}
    for split, count in SPLIT_SIZES.items():
        files[f"demo_ner/{split}.txt"] = render_conll(ner_examples(count, rng))
        files[f"demo_sentiment/{split}.tsv"] = render_tsv(sentiment_examples(count, rng))
        files[f"demo_topic/{split}.tsv"] = render_tsv(topic_examples(count, rng))
    return files


def write_demo_corpus(directory: Path = DEMO_DIR) -> None:
    """Write the demo corpus under `directory`."""
    for relative, content in demo_corpus().items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


if __name__ == "__main__":
    write_demo_corpus()
