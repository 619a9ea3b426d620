"""Checkpoints that are never half-written and never unpickle code.

Training state goes through `torch.save` / `torch.load(weights_only=True)`; a generator published
for sampling is a safetensors file plus a JSON model config."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .files import atomic_write
from .models import Generator, ModelConfig

CHECKPOINT_PATTERN = re.compile(r"^ckpt-(\d{8})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not match what is asked of it."""


def weights_digest(module) -> str:
    """SHA-256 of a module's state (names and tensors): the same weights, bit for bit."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    return atomic_write(Path(path), lambda temp: torch.save(state, temp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt zip, pickle with code, truncated file...
        raise CheckpointError(f"{path}: not a readable weights-only checkpoint ({error})") from error


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"ckpt-{step:08d}.pt"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Finished checkpoints in `directory`, oldest first (temp files are ignored)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if CHECKPOINT_PATTERN.match(p.name))


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def prune_checkpoints(directory: str | Path, keep: int) -> None:
    for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


def save_generator(generator: Generator, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Publish a generator: `<path>` (safetensors weights) and `<path>.json` (model config + extra)."""
    path = Path(path)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in generator.state_dict().items()}
    meta = {"model": generator.config.to_dict(), **(extra or {})}
    atomic_write(path.with_suffix(path.suffix + ".json"), lambda temp: temp.write_text(json.dumps(meta, indent=2)))
    return atomic_write(path, lambda temp: save_file(tensors, str(temp)))


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, dict[str, Any]]:
    path = Path(path)
    meta_path = path.with_suffix(path.suffix + ".json")
    try:
        meta = json.loads(meta_path.read_text())
        config = ModelConfig(**meta["model"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{meta_path}: not a readable generator config ({error})") from error
    try:
        state = load_file(str(path))
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    generator = Generator(config)
    try:
        generator.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not match the model config in {meta_path.name} ({error})") from error
    return generator.to(device).eval(), meta
