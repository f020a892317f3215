"""Distillation: which teacher teaches which head, and the teachers' outputs over the training data."""
