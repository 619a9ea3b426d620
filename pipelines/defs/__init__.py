"""The code location's definitions, found by `dg.load_from_defs_folder`: the assets of every stage
(`assets/`), their checks, the nightly job and the sensors. What depends on the environment (the
resources, the executor, each spec's schedule) is bound in `pipelines/definitions.py`."""
