"""Inter-task affinity (TAG): the lookahead measurement against a hand computation, the exhaustive
grouping search on given matrices, and the probe end to end on the tiny encoder."""

import json
import math

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch.func import functional_call

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.common.run_files import AFFINITY_FILE, AFFINITY_PLOT
from mtl_nlp.config import ConfigError, RunConfig, load_config
from mtl_nlp.reports import plots
from mtl_nlp.reports.plots import affinity_scale, plot_affinity
from mtl_nlp.reports.task_groups import (
    advice,
    best_grouping,
    best_partition,
    format_affinity,
    lookahead_affinity,
    named_matrix,
    noise_estimate,
    off_diagonal,
    recommend,
    set_partitions,
    standard_error,
    task_groupings,
    window_means,
)
from mtl_nlp.workflows.affinity import lookahead_matrix, measure_affinity

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADS = [  # dropout left on: the measurement must switch it off itself
    HeadConfig(name="tag", type="token_classification", labels=["O", "B-ORG", "I-ORG"]),
    HeadConfig(name="two", type="classification", labels=["x", "y"]),
    HeadConfig(name="three", type="classification", labels=["x", "y", "z"], pooling="cls"),
]


# --- the measurement ---------------------------------------------------------------------------

@pytest.fixture
def model_and_batches(tiny_model_dir, tiny_tokenizer):
    torch.manual_seed(0)
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), HEADS)
    texts = ["anna visited new york .", "acme corp bought schmidt", "the film is dull"]
    encoded = tiny_tokenizer(texts, padding=True, return_tensors="pt")
    tags = torch.randint(0, 3, encoded["input_ids"].shape)
    tags[encoded["attention_mask"] == 0] = -100
    batches = {
        "tag": {**encoded, "labels": tags},
        "two": {**encoded, "labels": torch.tensor([0, 1, 1])},
        "three": {**tiny_tokenizer(["a good film", "acme corp"], padding=True, return_tensors="pt"),
                  "labels": torch.tensor([2, 0])},
    }
    return model, batches


def reference_affinity(model, batches, lr):
    """Z(i->j) = 1 - L_j(theta - lr * grad L_i) / L_j(theta) on the encoder's weights, computed
    with functional calls: the model's own parameters are never written."""
    model.eval()
    theta = {name: p.detach() for name, p in model.named_parameters() if name.startswith("encoder.")}

    def loss(task, weights):
        return functional_call(model, weights, args=(), kwargs={"task": task, **batches[task]})["loss"]

    tasks = list(batches)
    before = {task: loss(task, theta).item() for task in tasks}
    matrix = []
    for source in tasks:
        weights = {name: value.clone().requires_grad_() for name, value in theta.items()}
        grads = torch.autograd.grad(loss(source, weights), list(weights.values()), allow_unused=True)
        stepped = {name: value - lr * grad if grad is not None else value
                   for (name, value), grad in zip(theta.items(), grads)}
        matrix.append([1 - loss(target, stepped).item() / before[target] for target in tasks])
    return matrix


def test_lookahead_matrix_equals_the_hand_computed_affinity_and_restores_everything(model_and_batches):
    model, batches = model_and_batches
    model.train()
    shared = list(model.shared_parameters())
    assert len(shared) == len(list(model.encoder.parameters()))  # the whole encoder is shared
    saved = {name: value.clone() for name, value in model.state_dict().items()}

    measured = lookahead_matrix(model, shared, batches, lr=0.01)

    # Parameters bit for bit, the train mode and the (absent) gradients as they were.
    assert all(torch.equal(value, saved[name]) for name, value in model.state_dict().items())
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    expected = reference_affinity(model, batches, lr=0.01)
    for row, expected_row in zip(measured, expected):
        assert row == pytest.approx(expected_row, abs=1e-6)
    assert all(measured[i][i] > 0 for i in range(3))  # a small step on a task lowers its own loss
    assert max(abs(value) for row in measured for value in row) > 1e-3  # not a vacuous comparison
    # Without dropout the measurement is a function of the weights and batches alone.
    assert lookahead_matrix(model, shared, batches, lr=0.01) == measured


def test_lookahead_runs_in_fp32_under_a_bf16_prepared_model(model_and_batches, fresh_accelerator_state):
    # At a fine-tuning lr the step changes a loss by about 1e-4 of itself, below bf16's resolution
    # (8 bits of mantissa): under the autocast Accelerate wraps around the forward, Z was rounding
    # noise. The lookahead must bypass that autocast, and any autocast around it too.
    model, batches = model_and_batches
    shared = list(model.shared_parameters())
    expected = lookahead_matrix(model, shared, batches, lr=1e-4)
    # Every affinity between tasks is below bf16's relative resolution, 2**-8.
    assert max(abs(value) for value in off_diagonal(expected)) < 2**-8
    prepared = Accelerator(mixed_precision="bf16", cpu=True).prepare(model)
    assert hasattr(prepared, "_original_forward")  # the forward is wrapped in bf16 autocast
    for row, expected_row in zip(lookahead_matrix(prepared, shared, batches, lr=1e-4), expected):
        assert row == pytest.approx(expected_row, rel=1e-4, abs=1e-9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        measured = lookahead_matrix(model, shared, batches, lr=1e-4)
    for row, expected_row in zip(measured, expected):
        assert row == pytest.approx(expected_row, rel=1e-4, abs=1e-9)


def test_affinity_of_one_loss_pair():
    assert lookahead_affinity(2.0, 1.5) == 0.25
    assert lookahead_affinity(2.0, 3.0) == -0.5
    assert lookahead_affinity(0.0, 0.1) == 0.0  # nothing left to lower: no ratio


# --- the grouping search -----------------------------------------------------------------------

def test_partitions_come_in_canonical_order_and_stirling_numbers():
    assert list(set_partitions(3, 2)) == [[[0, 1], [2]], [[0, 2], [1]], [[0], [1, 2]]]
    assert list(set_partitions(3, 1)) == [[[0, 1, 2]]]
    assert list(set_partitions(3, 3)) == [[[0], [1], [2]]]
    assert [len(list(set_partitions(4, g))) for g in range(1, 5)] == [1, 7, 6, 1]
    assert sum(len(list(set_partitions(8, g))) for g in range(1, 9)) == 4140  # Bell(8)
    with pytest.raises(ValueError, match="cannot split 3 tasks into 4"):
        list(set_partitions(3, 4))


# Row = the task stepped on, column = the task whose loss is measured.
THREE = [
    [0.5, -0.1, 0.2],
    [0.1, 0.5, 0.3],
    [0.0, 0.4, 0.5],
]


def test_three_tasks_best_pair_and_recommendation():
    # Two groups: a+b scores 0.1 - 0.1 = 0, a+c 0.0 + 0.2, b+c 0.4 + 0.3; one group: a receives
    # (0.1 + 0.0) / 2, b (-0.1 + 0.4) / 2, c (0.2 + 0.3) / 2, together 0.45.
    groupings = task_groupings(["a", "b", "c"], THREE)
    assert [entry["groups"] for entry in groupings] == [[["a", "b", "c"]], [["a"], ["b", "c"]],
                                                         [["a"], ["b"], ["c"]]]
    assert [entry["score"] for entry in groupings] == pytest.approx([0.45, 0.7, 0.0])
    assert [entry["advice"] for entry in groupings] == [
        "train together: a, b, c", "train together: b, c; alone: a", "alone: a, b, c"]
    assert best_grouping(groupings) == groupings[1]
    # The diagonal (self-affinity) takes no part in the search.
    diagonal = [[100.0 if i == j else value for j, value in enumerate(row)] for i, row in enumerate(THREE)]
    assert task_groupings(["a", "b", "c"], diagonal) == groupings


def test_four_tasks_find_the_interleaved_clusters():
    # w and y help each other (0.3), x and z too (0.2); every step across the clusters hurts (-0.1).
    helps = {frozenset({0, 2}): 0.3, frozenset({1, 3}): 0.2}
    matrix = [[0.9 if i == j else helps.get(frozenset({i, j}), -0.1) for j in range(4)] for i in range(4)]
    groupings = task_groupings(["w", "x", "y", "z"], matrix)
    assert [entry["groups"] for entry in groupings] == [
        [["w", "x", "y", "z"]], [["w", "y"], ["x", "z"]], [["w", "y"], ["x"], ["z"]],
        [["w"], ["x"], ["y"], ["z"]]]
    assert [entry["score"] for entry in groupings] == pytest.approx([0.2 / 3, 1.0, 0.6, 0.0])
    assert best_grouping(groupings)["advice"] == "train together: w, y; train together: x, z"
    assert groupings[2]["advice"] == "train together: w, y; alone: x, z"


def test_ties_go_to_the_first_partition_and_to_fewer_groups():
    # All zero: every partition ties; the first in canonical order wins, and one group is advised.
    zeros = [[0.0] * 3 for _ in range(3)]
    groupings = task_groupings(["a", "b", "c"], zeros)
    assert groupings[1]["groups"] == [["a", "b"], ["c"]]
    assert best_grouping(groupings)["num_groups"] == 1
    # a+c sums to 0.1 + 0.2 = 0.30000000000000004 in floating point, a+b to 0.3 + 0.0: a tie
    # that rounding must not decide.
    matrix = [[0.0, 0.0, 0.2], [0.3, 0.0, 0.0], [0.1, 0.0, 0.0]]
    partition, score = best_partition(matrix, 2)
    assert partition == [[0, 1], [2]] and score == 0.3
    # A tie across group counts goes to fewer groups: a gives 0.2 to b and to c, b and c give 0.2
    # back to a; one group scores 0.2 + 0.1 + 0.1, two groups (a with b) 0.2 + 0.2.
    symmetric = [[0.0, 0.2, 0.2], [0.2, 0.0, 0.0], [0.2, 0.0, 0.0]]
    groupings = task_groupings(["a", "b", "c"], symmetric)
    assert groupings[0]["score"] == pytest.approx(0.4) and groupings[1]["score"] == pytest.approx(0.4)
    assert groupings[1]["groups"] == [["a", "b"], ["c"]]
    assert best_grouping(groupings)["num_groups"] == 1


def test_advice_text():
    assert advice([["a", "b"], ["c"]]) == "train together: a, b; alone: c"
    assert advice([["a", "b", "c"]]) == "train together: a, b, c"
    assert advice([["a"], ["b"], ["c"]]) == "alone: a, b, c"
    assert advice([["a", "d"], ["b"], ["c", "e"]]) == "train together: a, d; train together: c, e; alone: b"


def test_too_many_or_too_few_tasks_and_bad_matrices_are_refused():
    names = [f"t{i}" for i in range(11)]
    with pytest.raises(ConfigError, match="at most 10 tasks; the config has 11"):
        task_groupings(names, [[0.0] * 11 for _ in range(11)])
    with pytest.raises(ConfigError, match="at least 2 tasks"):
        task_groupings(["a"], [[0.0]])
    with pytest.raises(ValueError, match="3 tasks need a 3 x 3"):
        task_groupings(["a", "b", "c"], [[0.0] * 3, [0.0] * 3])
    with pytest.raises(ConfigError, match="not finite for b->a"):
        task_groupings(["a", "b"], [[0.0, 0.0], [math.nan, 0.0]])
    # The probe refuses before loading anything.
    with pytest.raises(ConfigError, match="at most 10 tasks; the config has 11"):
        measure_affinity(RunConfig(tasks=names))
    with pytest.raises(ConfigError, match="give at least 5 steps"):
        measure_affinity(RunConfig(), steps=4, every=5)


# --- the noise and what it supports ------------------------------------------------------------

def test_window_means_and_standard_errors():
    # Seven measurements in three consecutive windows of 3, 2 and 2.
    measurements = [[[float(k), 10.0 * k]] for k in range(7)]
    assert window_means(measurements, 3) == [[[1.0, 10.0]], [[3.5, 35.0]], [[5.5, 55.0]]]
    assert window_means(measurements, 1) == [[[3.0, 30.0]]]
    assert window_means(measurements[:2], 5) == [[[0.0, 0.0]], [[1.0, 10.0]]]  # at most one per window
    assert standard_error([1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(5 / 3) / 2)
    windows = [[[0.0, 1.0], [3.0, 0.0]], [[0.0, 3.0], [3.0, 0.0]], [[9.0, 2.0], [3.0, 0.0]]]
    noise = noise_estimate(["a", "b"], windows)
    errors = {"a": {"a": pytest.approx(3.0), "b": pytest.approx(1 / math.sqrt(3))}, "b": {"a": 0.0, "b": 0.0}}
    # level: the median of the two between tasks
    assert noise == {"windows": 3, "factor": 2.0, "standard_error": errors,
                     "level": pytest.approx(1 / (2 * math.sqrt(3)))}
    assert noise_estimate(["a", "b"], windows[:1]) is None  # one window has no spread


def shifted(delta):
    """THREE with Z(b -> c) moved by delta."""
    return [[value + (delta if (i, j) == (1, 2) else 0.0) for j, value in enumerate(row)]
            for i, row in enumerate(THREE)]


def test_a_split_is_recommended_only_when_it_leads_both_plain_choices_beyond_the_noise():
    # b+c with a alone leads one group by 0.25 and all alone by 0.7 (see the test above). Moving
    # Z(b -> c) by +-d between four windows moves the first lead by d/2 (c receives it averaged
    # with a's) and the second by d: standard errors d / (2 sqrt 3) and d / sqrt 3.
    groupings = task_groupings(["a", "b", "c"], THREE)
    steady = recommend(["a", "b", "c"], groupings, [shifted(d) for d in (0.3, -0.3, 0.3, -0.3)])
    assert steady == {**groupings[1], "supported": True, "leads": [
        {"over": "one model of all tasks", "lead": pytest.approx(0.25),
         "standard_error": pytest.approx(0.3 / (2 * math.sqrt(3)))},
        {"over": "every task alone", "lead": pytest.approx(0.7),
         "standard_error": pytest.approx(0.3 / math.sqrt(3))},
    ]}
    # At d = 0.6 the lead over one group, 0.25, is within 2 standard errors (2 x 0.173).
    noisy = recommend(["a", "b", "c"], groupings, [shifted(d) for d in (0.6, -0.6, 0.6, -0.6)])
    assert noisy["supported"] is False
    assert noisy["num_groups"] == 1 and noisy["groups"] == [["a", "b", "c"]]  # the default: one model
    assert noisy["score"] == groupings[0]["score"]
    assert noisy["best"] == {key: groupings[1][key] for key in ("num_groups", "groups", "score", "advice")}
    assert noisy["advice"] == (
        "no grouping is supported by the data: the best grouping (train together: b, c; alone: a) leads "
        "one model of all tasks by +0.2500 ± 0.1732 (standard error), within 2 standard errors of the "
        "probe's noise; keep one model of all tasks (the default), or probe longer")


def test_affinities_near_1e4_within_their_noise_recommend_no_split():
    # The case of the issue: a short probe whose affinities are all slightly negative on average
    # (-1e-5) but swing by 1e-4 between windows; their mean says "alone: a, b, c".
    windows = [[[0.0 if i == j else -1e-5 + sign * 1e-4 for j in range(3)] for i in range(3)]
               for sign in (1, -1, 1, -1)]
    mean = window_means(windows, 1)[0]
    groupings = task_groupings(["a", "b", "c"], mean)
    assert best_grouping(groupings)["advice"] == "alone: a, b, c"
    recommended = recommend(["a", "b", "c"], groupings, windows)
    assert recommended["supported"] is False and recommended["groups"] == [["a", "b", "c"]]
    assert recommended["advice"] == (
        "no grouping is supported by the data: the best grouping (alone: a, b, c) leads one model of "
        "all tasks by +3.00e-05 ± 1.73e-04 (standard error), within 2 standard errors of the probe's "
        "noise; keep one model of all tasks (the default), or probe longer")
    # A single measurement has no noise estimate, so nothing is supported either; nor is a tie.
    single = recommend(["a", "b", "c"], task_groupings(["a", "b", "c"], THREE), [THREE])
    assert single["supported"] is False and single["leads"][0]["standard_error"] is None
    assert single["advice"] == ("no grouping is supported by the data: one measurement gives no estimate "
                                "of its noise; keep one model of all tasks (the default), or probe longer")
    zeros = [[0.0] * 3 for _ in range(3)]
    tie = recommend(["a", "b", "c"], task_groupings(["a", "b", "c"], zeros), [zeros, zeros])
    assert tie["supported"] is False


def fixed_result(windows=((0.3, -0.3, 0.3, -0.3))):
    tasks = ["a", "b", "c"]
    groupings = task_groupings(tasks, THREE)
    matrices = [shifted(d) for d in windows]
    return {"tasks": tasks, "matrix": named_matrix(tasks, THREE), "steps": 20,
            "measurements": 4, "every": 5, "noise": noise_estimate(tasks, matrices), "groupings": groupings,
            "recommended": recommend(tasks, groupings, matrices),
            "seconds_per_step": 0.1, "seconds_per_measurement": 0.35, "measurement_cost_in_steps": 3.5}


def test_format_affinity_lists_matrix_noise_groupings_and_advice():
    lines = format_affinity(fixed_result()).splitlines()
    assert lines[1:5] == [
        "         a        b        c",
        "a  +0.5000  -0.1000  +0.2000",
        "b  +0.1000  +0.5000  +0.3000",
        "c  +0.0000  +0.4000  +0.5000",
    ]
    assert lines[5:10] == [
        "noise: standard error of each mean affinity, from the spread of 4 consecutive windows of the "
        "measurements (median between tasks 0.0000):",
        "        a       b       c",
        "a  0.0000  0.0000  0.0000",
        "b  0.0000  0.0000  0.1732",
        "c  0.0000  0.0000  0.0000",
    ]
    assert lines[11:] == [
        "  1 group:   score +0.4500  train together: a, b, c",
        "  2 groups:  score +0.7000  train together: b, c; alone: a",
        "  3 groups:  score +0.0000  alone: a, b, c",
        "recommended (2 groups): train together: b, c; alone: a",
        "  supported: it leads one model of all tasks by +0.2500 ± 0.0866 (standard error) and every task "
        "alone by +0.7000 ± 0.1732 (standard error), beyond 2 standard errors",
        "one measurement cost 3.5 ordinary training steps (0.350 s against 0.100 s)",
    ]
    noisy = fixed_result((0.6, -0.6, 0.6, -0.6))
    assert format_affinity(noisy).splitlines()[-2] == "recommended: " + noisy["recommended"]["advice"]
    assert noisy["recommended"]["advice"].startswith("no grouping is supported by the data: ")
    # An affinity.json written before the probe measured its noise still prints.
    old = {**fixed_result(), "recommended": task_groupings(["a", "b", "c"], THREE)[1]}
    del old["noise"]
    assert format_affinity(old).splitlines()[5:] == lines[10:15] + lines[16:]


def drawn_figure(monkeypatch, tmp_path, result):
    """plot_affinity's figure, kept as it is saved."""
    saved = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: saved.append(figure))
    plot_affinity(result, tmp_path / "affinity.png")
    return saved[0]


def test_heat_map_is_centred_at_zero_and_noise_cannot_fill_its_scale(monkeypatch, tmp_path):
    # Affinities near 1e-4 within a noise of 1.7e-4: before, the scale stretched to the largest
    # value, 1.1e-4, and painted noise in full colour.
    tasks = ["a", "b", "c"]
    windows = [[[0.0 if i == j else 1e-5 * (i + j) + sign * 1e-4 for j in range(3)] for i in range(3)]
               for sign in (1, -1, 1, -1)]
    mean = window_means(windows, 1)[0]
    groupings = task_groupings(tasks, mean)
    noise = noise_estimate(tasks, windows)
    assert noise["level"] == pytest.approx(1e-4 * math.sqrt(4 / 3) / 2)
    result = {"tasks": tasks, "matrix": named_matrix(tasks, mean), "measurements": 8, "every": 5,
              "noise": noise, "groupings": groupings, "recommended": recommend(tasks, groupings, windows)}
    figure = drawn_figure(monkeypatch, tmp_path, result)
    ax = figure.axes[0]
    limit = 4 * noise["level"]  # twice the band of 2 standard errors
    assert affinity_scale(off_diagonal(mean), noise) == pytest.approx(limit)
    assert ax.images[0].get_clim() == pytest.approx((-limit, limit))
    assert "noise: ±5.77e-05 standard error (median); hatched: within 2 SE" in ax.get_title()
    assert sum(text.get_text() == "±5.77e-05" for text in ax.texts) == 6  # each cell between tasks
    band = ax.images[0].colorbar.ax.patches[-1]
    assert band.get_hatch() == "///"
    assert band.get_extents().height > 0
    assert "no grouping is supported by the data" in figure.get_supxlabel()
    # Values beyond the noise set the scale themselves, still symmetric about 0.
    assert affinity_scale([0.3, -0.5], noise) == 0.5
    assert affinity_scale([0.3, -0.5], None) == 0.5 and affinity_scale([], None) == 1.0


def test_plot_affinity_writes_a_png(tmp_path, monkeypatch):
    plot_affinity(fixed_result(), tmp_path / "affinity.png")
    assert (tmp_path / "affinity.png").read_bytes().startswith(PNG_SIGNATURE)
    # One measurement: no noise estimate, said so; an affinity.json from before the noise: no word.
    single = {**fixed_result(), "noise": None}
    title = drawn_figure(monkeypatch, tmp_path, single).axes[0].get_title()
    assert "noise: not estimated (one measurement), no grouping supported" in title
    old = {key: value for key, value in fixed_result().items() if key != "noise"}
    assert "noise" not in drawn_figure(monkeypatch, tmp_path, old).axes[0].get_title()


# --- the probe end to end ----------------------------------------------------------------------

@pytest.fixture
def fresh_accelerator_state():
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_probe_writes_affinity_json_and_heatmap(tiny_model_dir, tmp_path, fresh_accelerator_state):
    output = tmp_path / "probe"
    config = load_config(None, [
        f"model={tiny_model_dir}", f"output_dir={output}", f"cache_dir={tmp_path / 'cache'}",
        "mixed_precision=no", "train.batch_size=8", "train.lr=1e-3", "train.warmup_ratio=0.4",
        "tasks=[demo_ner, demo_sentiment, demo_topic]",
    ])
    result = measure_affinity(config, steps=5, every=1)

    tasks = ["demo_ner", "demo_sentiment", "demo_topic"]
    assert json.loads((output / AFFINITY_FILE).read_text()) == result
    assert set(result) == {
        "tasks", "matrix", "steps", "measurements", "every", "seconds", "seconds_per_step",
        "seconds_per_measurement", "measurement_cost_in_steps", "noise", "groupings", "recommended",
        "step_mode",
    }
    assert result["tasks"] == tasks and result["steps"] == 5 and result["every"] == 1
    # Two warmup steps: step 1 runs at lr 0 and moves nothing, so steps 2 to 5 are measured.
    assert result["measurements"] == 4
    assert list(result["matrix"]) == tasks
    assert all(list(row) == tasks and all(math.isfinite(v) for v in row.values())
               for row in result["matrix"].values())
    assert any(value != 0 for row in result["matrix"].values() for value in row.values())
    rows = [[result["matrix"][source][target] for target in tasks] for source in tasks]
    assert result["groupings"] == task_groupings(tasks, rows)
    assert [entry["num_groups"] for entry in result["groupings"]] == [1, 2, 3]
    # Four measurements, one per window: the noise of each affinity is their standard error.
    assert result["noise"]["windows"] == 4 and list(result["noise"]["standard_error"]) == tasks
    assert all(math.isfinite(v) and v >= 0 for row in result["noise"]["standard_error"].values()
               for v in row.values())
    recommended = result["recommended"]
    best = best_grouping(result["groupings"])
    assert recommended["supported"] in (True, False)
    if recommended["supported"]:
        assert {key: recommended[key] for key in best} == best
    else:
        assert recommended["best"] == best and recommended["groups"] == [tasks]
        assert recommended["advice"].startswith("no grouping is supported by the data: ")
    assert result["seconds_per_step"] > 0 and result["seconds_per_measurement"] > 0
    assert result["measurement_cost_in_steps"] == pytest.approx(
        result["seconds_per_measurement"] / result["seconds_per_step"], rel=0.01)
    assert result["step_mode"] == "one_task"
    assert (output / AFFINITY_PLOT).read_bytes().startswith(PNG_SIGNATURE)


def test_probe_checks_the_encoder_as_training_does(tiny_model_dir, tmp_path, fresh_accelerator_state):
    # A max_length beyond the encoder's 128 positions: one line before any data is read, as
    # `train` says it, not an index error deep inside the embeddings.
    config = load_config(None, [
        f"model={tiny_model_dir}", f"output_dir={tmp_path / 'probe'}", f"cache_dir={tmp_path / 'cache'}",
        "mixed_precision=no", "max_length=4096", "tasks=[demo_ner, demo_sentiment]",
    ])
    with pytest.raises(ConfigError, match=r"^max_length=4096, but encoder .* takes at most 128 tokens"):
        measure_affinity(config, steps=1, every=1)
    assert not (tmp_path / "cache").exists()  # refused before any data was prepared
