"""The smallest gloo job: two processes all-reduce a tensor (tests/gloo_launch.py runs it with torchrun)."""

import torch
import torch.distributed as dist

if __name__ == "__main__":
    dist.init_process_group("gloo")
    t = torch.ones(4)
    for _ in range(3):
        dist.all_reduce(t)
    dist.barrier()
    assert t.tolist() == [8.0] * 4, t
    dist.destroy_process_group()
