"""Training on several processes with torch.distributed, as launched by torchrun (NCCL on GPUs,
gloo on CPU). Without torchrun's environment every helper is a no-op on a world of one.

Gradients are averaged with one all-reduce per optimizer step over a flat buffer, as
DistributedDataParallel does, but called explicitly: a GAN step runs D several times before one
backward and backpropagates G's loss through D, which the DDP wrapper's hooks do not fit
(stylegan3 made the same choice)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place; returns the tensor."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Mean of every gradient over the ranks, in one collective."""
        if not self.distributed:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def average_floats(self, tensors: Iterable[torch.Tensor]) -> None:
        """Mean over ranks of floating tensors (batch-norm running statistics), in place."""
        if not self.distributed:
            return
        for tensor in tensors:
            if tensor.is_floating_point():
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
                tensor /= self.size

    def broadcast(self, tensors: Iterable[torch.Tensor], source: int = 0) -> None:
        """Every rank starts from rank 0's weights."""
        if self.distributed:
            for tensor in tensors:
                dist.broadcast(tensor, source)

    def broadcast_object(self, value: Any, source: int = 0) -> Any:
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, source)
        return box[0]

    def gather_objects(self, value: Any) -> list[Any]:
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def world_from_env() -> World:
    """The world torchrun describes in RANK / LOCAL_RANK / WORLD_SIZE (a world of one without them)."""
    try:
        return World(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))
    except ValueError as error:
        raise ValueError(f"RANK, LOCAL_RANK and WORLD_SIZE must be integers ({error})") from error


def init_world(device: torch.device) -> World:
    """Join the process group torchrun set up (once per process): NCCL on CUDA, gloo otherwise."""
    world = world_from_env()
    if world.distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return world


def device_for(world: World, device: torch.device) -> torch.device:
    """One GPU per process: LOCAL_RANK picks it."""
    if device.type == "cuda" and world.distributed:
        torch.cuda.set_device(world.local_rank)
        return torch.device("cuda", world.local_rank)
    return device
