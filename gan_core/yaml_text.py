"""YAML as people write it. PyYAML follows YAML 1.1, which reads `5e-4` (no dot) as the string
"5e-4"; YAML 1.2 and most other readers take it as a number. Specs and the benchmarks' `--set`
overrides are read with this loader, so a learning rate or a gate written that way is a number."""

from __future__ import annotations

import re
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    pass


# add_implicit_resolver copies the resolvers onto the subclass: yaml.SafeLoader stays as it is.
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """yaml.safe_load, with exponents without a dot read as floats."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (_Loader is a SafeLoader)
