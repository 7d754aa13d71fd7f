"""DistributedDataParallel under torchrun: rank/world from the environment, rank 0 writes."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: object = None  # the torch.device of this rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(device) -> World:
    """Join the torchrun process group if WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA, one GPU per local rank)."""
    import torch
    import torch.distributed as dist

    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(device=device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), local_rank, device)


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def broadcast_flag(world: World, flag: bool) -> bool:
    """Rank 0's value of ``flag`` on every rank (a stop request must stop all ranks together)."""
    if not world.distributed:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], device=world.device)  # nccl only moves CUDA tensors
    dist.broadcast(t, 0)
    return bool(t.item())


def shutdown(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
