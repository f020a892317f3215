"""Train one shared encoder on several tasks (NER, sentiment, topic) and score each.

    accelerate launch recipes/cls_ner.py [--config recipes/configs/FILE.yaml] [key=value ...]

With no arguments it trains on the embedded demo tasks with the default encoder. The best
checkpoint (by mean validation score) ends up in output_dir with metrics.json from the final
evaluation on each task's test split.
"""

from __future__ import annotations

import argparse
import json
import logging

from accelerate.utils import set_seed

from mtl_nlp import (
    MultiTaskModel,
    load_config,
    load_tokenizer,
    prepare_task_data,
    resolve_tasks,
)
from mtl_nlp.training import (
    MultiTaskTrainer,
    build_accelerator,
    build_eval_loaders,
    build_optimizer,
    build_scheduler,
    build_train_loader,
    build_weighting,
    check_output_dir,
    count_optimizer_steps,
    evaluate,
    head_configs,
    overall_score,
    sharing_shape,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config file (see recipes/configs/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=3e-5")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.config, args.overrides)
    accelerator = build_accelerator(config)
    set_seed(config.seed)
    check_output_dir(config)

    # Data: registry entries -> tokenized, cached features (the main process fills the cache).
    specs = resolve_tasks(config.tasks)
    tokenizer = load_tokenizer(config.model)
    with accelerator.main_process_first():
        tasks = prepare_task_data(
            specs, tokenizer, config.max_length, config.data_dir, config.cache_dir, config.seed,
            config.max_train_examples, config.max_eval_examples,
        )
    loader = build_train_loader(config, tasks, tokenizer, accelerator)

    # Model, loss weighting and optimization.
    model = MultiTaskModel.from_encoder(config.model, head_configs(tasks), sharing_shape(config))
    weighting = build_weighting(
        config.weighting, {name: len(data.splits["train"]) for name, data in tasks.items()},
        {name: data.spec.loss_weight for name, data in tasks.items()}, seed=config.seed,
    )
    optimizer = build_optimizer(
        model, config.train.lr, config.train.weight_decay, config.train.head_lr, weighting,
        config.weighting.lr,
    )
    steps = count_optimizer_steps(config.train, loader)
    # Accelerate steps a prepared scheduler once per process for every optimizer step.
    scheduler = build_scheduler(optimizer, steps * accelerator.num_processes, config.train.warmup_ratio)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    # Train, keeping the best checkpoint by mean validation score.
    validation = build_eval_loaders(tasks, "validation", tokenizer, config.train.eval_batch_size, accelerator)
    trainer = MultiTaskTrainer(
        accelerator, model, optimizer, scheduler, loader, validation, tasks, config.train,
        config.output_dir, tokenizer,
        checkpoint_extra={"max_length": config.max_length, "run_config": config.to_dict()},
        weighting=weighting, conflict_every=config.diagnostics.conflict_every,
    )
    if config.resume_from:
        trainer.resume(config.resume_from)
    trainer.train()

    # Final scores of the best checkpoint on each task's test split (validation if none).
    trainer.load_best()
    final = build_eval_loaders(tasks, None, tokenizer, config.train.eval_batch_size, accelerator)
    metrics = evaluate(accelerator, model, final, tasks)
    metrics["overall"] = {"score": overall_score(metrics, trainer.task_types)}
    trainer.write_json("metrics.json", metrics)
    trainer.write_reports()
    accelerator.print(json.dumps(metrics, indent=2))
    # Every process reaches teardown together: a rank destroying the process group while the
    # main one still writes files can leave gloo waiting forever.
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


if __name__ == "__main__":
    main()
