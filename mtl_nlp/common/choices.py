"""The names a user chooses from in a config or on the command line, and the defaults the command
line shows: one home for each list, importing nothing, so that `mtl-nlp --help` and config
validation answer without loading torch. The modules that implement each choice take its names
from here (tests check that each implements exactly these)."""

from __future__ import annotations

# Predictor engines (inference.engines); the ONNX Runtime ones run an export (inference.onnx_engine).
ONNX_BACKENDS = ("onnx", "onnx-int8")
BACKENDS = ("torch", "torch-compile", *ONNX_BACKENDS)
# Autocast precision: auto = bf16 where the hardware runs it natively, else fp32 (common.precision).
PRECISIONS = ("auto", "no", "bf16", "fp16")

# How the loader picks the task of each batch (data.sampling) and what one step holds (data.multitask).
SAMPLING_STRATEGIES = ("proportional", "temperature", "uniform", "annealed", "round_robin")
STEP_MODES = ("one_task", "all_tasks")
# Loss balancing and gradient surgery (training.weighting); the gradient methods combine each
# task's gradient, so they need train.step_mode=all_tasks.
GRADIENT_METHODS = ("pcgrad", "cagrad")
WEIGHTING_METHODS = ("equal", "log_size", "uncertainty", "dwa", "rlw", *GRADIENT_METHODS)

# `mtl-nlp affinity --every`: a measurement costs several training steps (T backward + T^2 forward).
AFFINITY_EVERY = 5
DISTILL_ANNEALS = ("linear", "none")  # distill.anneal: how the gold labels' weight moves over a run
ADAPTER_METHODS = ("none", "lora")  # sharing.adapters.method: per-task adapters in the shared encoder
