"""Reading what runs wrote: metrics.json and its main metrics, the training and affinity figures,
model cards, run comparison and the task-grouping search. Pure functions over result files: no
model and no training."""
