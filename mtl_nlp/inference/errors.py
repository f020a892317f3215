"""The Predictor's errors a user can cause: an unknown engine, an input it cannot answer, a task
the checkpoint does not have."""

from __future__ import annotations

from mtl_nlp.common.errors import MtlNlpError


class BackendError(MtlNlpError, ValueError):
    """An unknown backend, or one whose packages are not installed."""


class PredictorInputError(MtlNlpError, ValueError, TypeError):
    """An input the Predictor cannot answer (not a str or pair, or no task takes its kind)."""


class UnknownTaskError(MtlNlpError, KeyError):
    """A task name the checkpoint does not have."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])
