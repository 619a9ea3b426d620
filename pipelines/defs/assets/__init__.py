"""The asset graph, one partition per spec, one module per stage. Assets stay thin: read the spec
and their typed inputs, call gan_core, log to MLflow, return a record and metadata. An asset's
inputs are its upstream assets' records (`records.py`), which `RecordIOManager` stores per run and
loads from the run that produced them; heavy objects travel as files the records point at."""
