"""How much a distilled task learns from its gold labels at each optimizer step (teacher annealing).

`distill.anneal: linear` (BAM!'s schedule) moves the gold labels' weight from 0 at the first step
to 1 at the last: the model first imitates its teachers, then learns from the labels alone.
`none` keeps `distill.gold_weight` throughout. The weight is a function of the step alone, so a
resumed run continues the schedule exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtl_nlp.config import DistillConfig


@dataclass(frozen=True)
class TeacherAnnealing:
    """The gold weight and teacher temperature of each optimizer step of a run of `total_steps`."""

    anneal: str
    gold_weight: float
    temperature: float
    total_steps: int

    @classmethod
    def from_config(cls, distill: DistillConfig, total_steps: int) -> TeacherAnnealing:
        return cls(distill.anneal, distill.gold_weight, distill.temperature, total_steps)

    def gold_weight_at(self, step: int) -> float:
        """The gold labels' weight at optimizer step `step` (counted from 1)."""
        if self.anneal == "none":
            return self.gold_weight
        if self.total_steps <= 1:
            return 1.0
        return min(1.0, max(0.0, (step - 1) / (self.total_steps - 1)))

    def loss_arguments(self, step: int) -> dict[str, float]:
        """The model's forward arguments for a batch with teacher outputs at `step`."""
        return {"gold_weight": self.gold_weight_at(step), "temperature": self.temperature}
