"""One schedule per spec that has a `schedule:` cron; each run is that spec's partition. A tick
adds its spec's partition where the instance lacks it (the `spec_files` sensor turned off, or not
ticked yet): a run request for an unknown partition fails the tick, and the night's run with it."""

import dagster as dg

from .partitions import add_spec_partitions
from .specs import Spec


def schedule_name(spec: str) -> str:
    return f"nightly_{spec.replace('-', '_')}"


def build_schedules(specs: dict[str, Spec], job_name: str) -> list[dg.ScheduleDefinition]:
    schedules = []
    for spec in specs.values():
        if not spec.schedule:
            continue

        def evaluate(context: dg.ScheduleEvaluationContext, _name: str = spec.name) -> dg.RunRequest:
            add_spec_partitions(context.instance, [_name])
            tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
            return dg.RunRequest(run_key=f"{_name}-{tick}", partition_key=_name, tags={"ganpipe/spec": _name, "ganpipe/trigger": "schedule"})

        schedules.append(
            dg.ScheduleDefinition(
                name=schedule_name(spec.name),
                cron_schedule=spec.schedule,
                job_name=job_name,
                execution_fn=evaluate,
                description=f"nightly run of spec {spec.name} ({spec.path})",
            )
        )
    return schedules
