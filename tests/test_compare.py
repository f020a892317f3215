"""`mtl-nlp compare`: test scores of runs side by side, from hand-written metrics.json files."""

import json

import pytest

from mtl_nlp.cli import main as cli_main
from mtl_nlp.reports.comparison import compare_runs, format_comparison, load_metrics

NER = {"precision": 0.80, "recall": 0.86, "f1": 0.83}
SST2 = {"accuracy": 0.90, "macro_f1": 0.89}
AG = {"accuracy": 0.91, "macro_f1": 0.905}


def write_run(root, name, metrics):
    directory = root / name
    directory.mkdir()
    (directory / "metrics.json").write_text(json.dumps({**metrics, "overall": {"score": 0.5}}))
    return str(directory)


@pytest.fixture
def runs(tmp_path):
    """A multi-task run and its single-task runs, plus one sharing two tasks with it."""
    return [
        write_run(tmp_path, "mtl", {"ner": NER, "sst2": SST2, "ag_news": AG}),
        write_run(tmp_path, "stl_ner", {"ner": {"precision": 0.8, "recall": 0.9, "f1": 0.8450}}),
        write_run(tmp_path, "stl_sst2", {"sst2": {"accuracy": 0.8850, "macro_f1": 0.88}}),
        write_run(tmp_path, "pair", {"sst2": {"accuracy": 0.9200, "macro_f1": 0.9},
                                     "ag_news": {"accuracy": 0.9000, "macro_f1": 0.9},
                                     "sts": {"pearson": 0.7, "spearman": 0.6, "mse": 0.5}}),
    ]


def test_compare_runs_numbers(runs):
    comparison = compare_runs(runs)
    assert comparison["runs"] == runs
    rows = {row["task"]: row for row in comparison["tasks"]}
    assert list(rows) == ["ner", "sst2", "ag_news", "sts"]  # first run's tasks first
    assert rows["ner"]["metric"] == "f1" and rows["sst2"]["metric"] == "accuracy"
    assert rows["sts"]["metric"] == "pearson"
    assert rows["ner"]["scores"] == [0.83, 0.845, None, None]
    assert rows["ner"]["differences"] == [None, 0.015, None, None]
    assert rows["sst2"]["differences"] == [None, None, -0.015, 0.02]
    assert rows["ag_news"]["differences"] == [None, None, None, -0.01]
    assert rows["sts"]["scores"] == [None, None, None, 0.7]
    assert rows["sts"]["differences"] == [None, None, None, None]  # not in the first run
    assert comparison["summary"] == [
        {"run": runs[1], "mean_difference": 0.015, "shared_tasks": 1},
        {"run": runs[2], "mean_difference": -0.015, "shared_tasks": 1},
        {"run": runs[3], "mean_difference": 0.005, "shared_tasks": 2},  # (0.02 - 0.01) / 2
    ]


def test_format_comparison_table(runs):
    lines = format_comparison(compare_runs(runs)).splitlines()
    assert lines[0].startswith("test main metric per task") and runs[0] in lines[0]
    table = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]
    assert table[0] == ["task", "metric", *runs]
    assert table[2] == ["ner", "f1", "0.8300", "0.8450 (+0.0150)", "-", "-"]
    assert table[3] == ["sst2", "accuracy", "0.9000", "-", "0.8850 (-0.0150)", "0.9200 (+0.0200)"]
    assert table[4] == ["ag_news", "accuracy", "0.9100", "-", "-", "0.9000 (-0.0100)"]
    assert table[5] == ["sts", "pearson", "-", "-", "-", "0.7000"]
    assert table[6] == ["mean difference", "", "", "+0.0150 over 1 task", "-0.0150 over 1 task",
                        "+0.0050 over 2 tasks"]
    assert len({len(line) for line in lines[1:]}) == 1  # aligned: every table line equally wide
    assert set(lines[2]) == {"|", ":", "-"}


def test_no_shared_task(tmp_path):
    runs = [write_run(tmp_path, "a", {"ner": NER}), write_run(tmp_path, "b", {"sst2": SST2})]
    comparison = compare_runs(runs)
    assert comparison["summary"] == [{"run": runs[1], "mean_difference": None, "shared_tasks": 0}]
    assert format_comparison(comparison).splitlines()[-1].split("|")[-2].strip() == "- (0 tasks shared)"


def test_cli_compare_prints_the_table(runs, capsys):
    assert cli_main(["compare", *runs[:3]]) == 0
    out = capsys.readouterr().out
    assert "0.8450 (+0.0150)" in out and "0.8850 (-0.0150)" in out
    assert out.rstrip().splitlines()[-1].startswith("| mean difference")


def test_cli_compare_json(runs, capsys):
    assert cli_main(["compare", runs[0], runs[3], "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == compare_runs([runs[0], runs[3]])
    assert printed["summary"] == [{"run": runs[3], "mean_difference": 0.005, "shared_tasks": 2}]


def test_cli_compare_missing_dir_is_one_line_and_exit_2(runs, tmp_path, capsys):
    assert cli_main(["compare", runs[0], str(tmp_path / "nowhere")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    missing = tmp_path / "nowhere"
    assert captured.err == f"mtl-nlp: error: no checkpoint at {missing}: there is no such folder\n"


@pytest.mark.parametrize(("content", "message"), [
    (None, "no metrics.json in"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected {task: {metric: value}}, found a list"),
    ('{"ner": 0.8}', "task 'ner' must map metric names to numbers"),
    ('{"overall": {"score": 0.8}}', "no task metrics"),
    ('{"ner": {"bleu": 0.3}}', "bad: task 'ner': unknown metric set {bleu}"),
])
def test_cli_compare_bad_runs_exit_2(runs, tmp_path, capsys, content, message):
    bad = tmp_path / "bad"
    bad.mkdir()
    if content is not None:
        (bad / "metrics.json").write_text(content)
    assert cli_main(["compare", runs[0], str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtl-nlp: error: ") and err.count("\n") == 1 and message in err


def test_cli_compare_needs_two_runs(runs, capsys):
    assert cli_main(["compare", runs[0]]) == 2
    assert capsys.readouterr().err == "mtl-nlp: error: compare needs at least 2 run directories, got 1\n"


def test_same_task_scored_differently_is_an_error(tmp_path):
    runs = [write_run(tmp_path, "a", {"x": SST2}), write_run(tmp_path, "b", {"x": NER})]
    with pytest.raises(ValueError, match="task 'x' is scored by accuracy in one run but by f1 in"):
        compare_runs(runs)


def test_load_metrics_leaves_out_overall(runs):
    assert load_metrics(runs[0]) == {"ner": NER, "sst2": SST2, "ag_news": AG}


def test_compare_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["compare", "--help"])
    assert exit_info.value.code == 0
    assert "mtl-nlp compare outputs/mtl outputs/stl_ner outputs/stl_sst2" in capsys.readouterr().out
