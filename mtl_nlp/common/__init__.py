"""Shared leaves every room may use: the toolkit's errors, the names of a run's files, the task
types and their metrics, the choices a user names (backends, precisions, methods), precision
resolution, console output, tokenizer calls and long-text windows. They import nothing of mtl_nlp
but each other."""
