"""The torchrun target of `gan_model` when the compute resource asks for several processes, launched
through Dagster Pipes: every rank trains; rank 0 streams logs and progress into the Dagster run.

    torchrun --nproc_per_node=N -m pipelines.train_worker --data train.npz --run-dir DIR --config JSON --resume if-compatible
"""

from __future__ import annotations

import dataclasses

from gan_core.distributed import world_from_env
from gan_core.train import Progress, parse_cli, train


def main() -> int:
    data, config, run_dir, resume = parse_cli(description=__doc__)
    world = world_from_env()
    if not world.is_main:
        _train(data, config, run_dir, resume, None)
        return 0
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        _train(data, config, run_dir, resume, pipes)
    return 0


def _train(data, config, run_dir, resume, pipes) -> None:
    def report(progress: Progress) -> None:
        pipes.log.info(f"{progress.line()} ({world_from_env().size} processes)")
        pipes.report_custom_message({"progress": dataclasses.asdict(progress)})

    callback = report if pipes is not None else None
    result = train(data, config, run_dir, resume=resume, callback=callback, progress_bar=False)
    if pipes is not None:
        pipes.report_custom_message(
            {
                "result": {
                    "steps": result.steps,
                    "resumed_from": result.resumed_from,
                    "wall_s": result.wall_s,
                    "images_per_s": result.images_per_s,
                    "augment_p": result.augment_p,
                    "processes": result.processes,
                    "generator_path": str(result.generator_path),
                    "checkpoint": str(result.checkpoint),
                    "not_resumed": result.not_resumed,
                }
            }
        )


if __name__ == "__main__":
    raise SystemExit(main())
