"""The examples each `mtl-nlp COMMAND --help` ends with: commands a user can copy, and what they
write."""

TRAIN_EXAMPLE = """\
examples:
  mtl-nlp train                                    # the embedded demo tasks, default encoder
  mtl-nlp train --config recipes/configs/conll_sst2_agnews.yaml data_dir=../shared/data
  mtl-nlp train --config my.yaml train.lr=3e-5 sampling.strategy=temperature
  accelerate launch -m mtl_nlp.cli train --config my.yaml      # several GPUs or processes

The best checkpoint (by mean validation score) is written to output_dir with metrics.json (test
scores), a model card (README.md), trainer_state.json and curves.png."""

FINETUNE_EXAMPLE = """\
examples:
  mtl-nlp finetune outputs/glue                    # every task of the multi-task run
  mtl-nlp finetune outputs/glue --tasks rte,mrpc train.epochs=3 train.lr=5e-5
  mtl-nlp finetune outputs/glue --compare-alone     # also each task alone; recommend per task

Each task trains alone from the multi-task checkpoint (its encoder and the task's head) with the
run's saved config and the overrides, into DIR/finetuned/<task>/: an ordinary checkpoint for
Predictor.from_pretrained, mtl-nlp evaluate and export. Model selection on validation counts the
starting point, so a task never ends worse on validation than the multi-task model. The table
compares each task's test score before and after; DIR/finetuned/finetune.json keeps it.
--compare-alone also trains each task alone from the pretrained encoder with the same settings
(DIR/finetuned/alone/<task>/) and names, per task, the checkpoint to serve it from: the one
with the best validation score."""

DISTILL_EXAMPLE = """\
examples:
  mtl-nlp distill --config recipes/configs/glue.yaml data_dir=../shared/data
  mtl-nlp distill --config my.yaml distill.teachers.cola=outputs/cola-large   # a teacher of your own
  mtl-nlp distill --config my.yaml distill.anneal=none distill.gold_weight=0.5
  mtl-nlp distill --config my.yaml --tasks banking77      # teach only the task the one model loses
  mtl-nlp train --config my.yaml distill.teachers.cola=DIR distill.teachers.sst2=DIR2

Teachers it trains go to output_dir/teachers/<task>/ and are reused by the next call with the same
settings and data. The teachers' outputs over every training example are computed once and cached
beside the tokenized data. The student trains in output_dir; the table compares each task's test
score, teacher against student; output_dir/distill.json keeps it."""

AFFINITY_EXAMPLE = """\
examples:
  mtl-nlp affinity                                 # the embedded demo tasks, default encoder
  mtl-nlp affinity --config my.yaml --steps 300 --every 10
  mtl-nlp affinity --config my.yaml init_from=outputs/mtl    # around a trained checkpoint

A short multi-task run of the config (its tasks, sampling, step mode and lr) that every K steps
takes, for each task, a lookahead SGD step on the shared encoder with that task's gradient alone
and measures every task's loss before and after: Z(i->j) = 1 - L_j(after) / L_j(before), averaged
over the run (TAG, Fifty et al. 2021). Writes affinity.json and affinity.png to output_dir and
prints the best grouping of the tasks for each number of groups and the recommended one. At most
10 tasks, in one process."""

EVALUATE_EXAMPLE = """\
examples:
  mtl-nlp evaluate outputs/demo                    # the test splits of the run's saved config
  mtl-nlp evaluate outputs/demo data_dir=/data/copies max_eval_examples=500
  mtl-nlp evaluate outputs/demo --config other.yaml --output scores.json"""

PREDICT_EXAMPLE = """\
examples:
  echo "Angela Merkel visited Paris." | mtl-nlp predict outputs/demo
  mtl-nlp predict outputs/demo texts.txt --tasks ner --output answers.jsonl
  printf 'A man plays.\\tSomeone makes music.\\n' | mtl-nlp predict outputs/stsb_sst2

Each input line gives one JSON line out, in order, written as soon as its batch is answered."""

EXPORT_EXAMPLE = """\
example:
  mtl-nlp export outputs/demo --task demo_ner exported/ner
  python -c "from transformers import pipeline; \\
    tag = pipeline('token-classification', 'exported/ner', aggregation_strategy='first'); \\
    print(tag('Anna lives in Berlin'))"

Token tagging exports to AutoModelForTokenClassification; classification, regression and
multilabel heads with `pooling: pooler` to AutoModelForSequenceClassification (BERT-family and
RoBERTa-family encoders)."""

PUSH_EXAMPLE = """\
examples:
  hf auth login                                    # once, or pass --token / set HF_TOKEN
  mtl-nlp push outputs/demo my-name/demo-mtl       # then Predictor.from_pretrained("my-name/demo-mtl")
  mtl-nlp push exported/ner my-name/demo-ner --private

Uploads the model, tokenizer, heads, mtl_nlp.json, model card, metrics, curves and tracker logs;
never the resumable state (state*/: pickles and optimizer moments) or the ONNX cache. The
checkpoint's files are taken from one save, checked, even while a run is still saving."""

TASKS_EXAMPLE = """\
example:
  mtl-nlp tasks            # name, type, data source and labels of every registered task"""

COMPARE_EXAMPLE = """\
example: a multi-task run against its single-task runs
  mtl-nlp compare outputs/mtl outputs/stl_ner outputs/stl_sst2

test main metric per task; in brackets: the difference to the first run (run - outputs/mtl)
| task            | metric   | outputs/mtl |     outputs/stl_ner |    outputs/stl_sst2 |
|:----------------|:---------|------------:|--------------------:|--------------------:|
| ner             | f1       |      0.8270 |    0.8401 (+0.0131) |                   - |
| sst2            | accuracy |      0.9000 |                   - |    0.8956 (-0.0044) |
| mean difference |          |             | +0.0131 over 1 task | -0.0044 over 1 task |
"""

EXPORT_ONNX_EXAMPLE = """\
examples:
  mtl-nlp export-onnx outputs/cls_ner onnx/cls_ner            # fp32 weights
  mtl-nlp export-onnx outputs/cls_ner onnx/cls_ner_int8 --int8

OUT/model.onnx takes the tokenizer's input_ids and attention_mask (and token_type_ids where the
tokenizer makes them), batch and length dynamic, and has one logits output per task, named after
the task; OUT/manifest.json lists the inputs, each task's output, type and label map, and the max
length; the tokenizer is saved beside it. For Triton or any ONNX Runtime server."""

SERVE_EXAMPLE = """\
examples:
  mtl-nlp serve outputs/cls_ner                    # http://127.0.0.1:8000, docs at /docs
  mtl-nlp serve outputs/cls_ner --backend onnx-int8 --max-batch-tokens 4096 --max-wait-ms 10
  MTL_NLP_API_KEY=... mtl-nlp serve user/model --host 0.0.0.0 --workers 2

POST /predict {"inputs": ["text", ["text", "text_pair"]], "tasks": [...]} answers every task from
one encoder pass; POST /tasks/NAME {"inputs": ...} answers as transformers.pipeline does for that
task's export; GET /tasks, /health, /ready, /metrics (Prometheus). Concurrent requests are merged
into batches; a full queue answers 503 at once. Binds 127.0.0.1 unless --host says otherwise.
Needs the serve extra: pip install "mtl-nlp[serve]"."""
