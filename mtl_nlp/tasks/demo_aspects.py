"""The embedded multilabel demo: which aspects of a film (acting, cast, ...) a review mentions.

A text names zero to three aspects; its `label` cell lists them separated by ", " (empty when it
names none). The files under `demo_data/demo_aspects/` are the output of `write_demo_aspects()`;
a test checks they match, so edit the templates here and regenerate with
`python -m mtl_nlp.tasks.demo_aspects`. Its words all occur in the other demo files.
"""

from __future__ import annotations

import random
from pathlib import Path

from mtl_nlp.tasks.demo_corpus import DEMO_DIR, NEGATIVE, POSITIVE

ASPECTS_DIR = DEMO_DIR / "demo_aspects"
ASPECTS = ("acting", "cast", "dialogue", "ending", "script", "soundtrack")
SPLIT_SIZES = {"train": 400, "validation": 80, "test": 80}
SEED = 4321
NO_ASPECT = ("the film", "this movie")  # subjects that name no aspect
TEMPLATES = {  # by the number of aspects they name
    0: ["{x} is {adj} .", "honestly , {x} was {adj} ."],
    1: ["the {a} is {adj} .", "i found the {a} {adj} ."],
    2: ["the {a} was {adj} and the {b} was {adj2} .", "the {a} is {adj} , the {b} felt {adj2} ."],
    3: ["the {a} , the {b} and the {c} all felt {adj} ."],
}


def aspect_examples(count: int, rng: random.Random) -> list[tuple[str, list[str]]]:
    """`count` (text, aspects) pairs; the aspects in the order the text names them."""
    rows = []
    for _ in range(count):
        size = rng.choice([0, 1, 1, 2, 2, 3])
        named = rng.sample(ASPECTS, size)
        adj, adj2 = rng.sample(rng.choice([POSITIVE, NEGATIVE]), 2)
        slots = dict(zip("abc", named))
        text = rng.choice(TEMPLATES[size]).format(x=rng.choice(NO_ASPECT), adj=adj, adj2=adj2, **slots)
        rows.append((text, named))
    return rows


def render(rows: list[tuple[str, list[str]]]) -> str:
    """TSV with a `text<TAB>label` header; the label cell joins the aspects with ", "."""
    return "text\tlabel\n" + "".join(f"{text}\t{', '.join(named)}\n" for text, named in rows)


def demo_aspects() -> dict[str, str]:
    """Each split's file name mapped to its content; deterministic for SEED."""
    rng = random.Random(SEED)
    return {f"{split}.tsv": render(aspect_examples(n, rng)) for split, n in SPLIT_SIZES.items()}


def write_demo_aspects(directory: Path = ASPECTS_DIR) -> None:
    """Write the demo files under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in demo_aspects().items():
        (directory / name).write_text(content)


if __name__ == "__main__":
    write_demo_aspects()
