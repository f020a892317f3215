"""Workflows built from training's pieces: the second stage (`finetune`) and task affinity
(`affinity`)."""
