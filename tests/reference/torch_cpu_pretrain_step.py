#!/usr/bin/python3
"""CPU yardstick for issue 14's whole-step row: one pretraining step of the paper's network in PyTorch.

The network is hdssl's own twin, imported from make_fixture_pretrain_step.py (the model the PyTorch step
fixtures are written from, with the same module tree and state-dict names): FPN3d of pre-activation
ResBlocks, per-scale 1x1x1 projections to 32, the projection MLP to 128, the two-layer restoration head.
One step = forward of both views, symmetric InfoNCE (tau 0.1) + 10 x restoration MSE, backward, gradient
norm clipped to 1.0, Adam (lr 3e-4), the loss read back as ./bench's step does; float32, random inputs.

    /usr/bin/python3 tests/reference/torch_cpu_pretrain_step.py [THREADS] [--base 32] [--scales 5] [--pairs 2]
        [--patch 32,32,16] [--voxels 64] [--runs 5] [--warmup 2]
prints one line: "... pretrain step median M ms min m ms cpu C ms" (C: median process CPU time of a step,
all threads together, which moves less with the load of a shared machine).
"""
import argparse, os, sys, time
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixture_pretrain_step import Pretrainer, info_nce  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('threads', nargs='?', type=int, default=0, help='torch.set_num_threads (0: leave as is)')
    ap.add_argument('--base', type=int, default=32)
    ap.add_argument('--scales', type=int, default=5)
    ap.add_argument('--pairs', type=int, default=2)
    ap.add_argument('--patch', default='32,32,16')
    ap.add_argument('--voxels', type=int, default=64)
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--warmup', type=int, default=2)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    size = tuple(int(s) for s in a.patch.split(','))
    m = Pretrainer(a.base, a.scales)
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=3e-4)
    shape = (a.pairs, 1) + size
    view_a, view_b, target_a, target_b = (torch.rand(shape) for _ in range(4))
    hi = torch.tensor(size)
    coords_a = (torch.rand(a.pairs, a.voxels, 3) * hi).long()
    coords_b = (torch.rand(a.pairs, a.voxels, 3) * hi).long()

    def step():
        opt.zero_grad(set_to_none=True)
        za, ra = m.embed(view_a, coords_a)
        zb, rb = m.embed(view_b, coords_b)
        loss = info_nce(za, zb, 0.1) + 10.0 * (F.mse_loss(ra, target_a) + F.mse_loss(rb, target_b)) / 2
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    ts, cpu = [], []
    for _ in range(a.runs):
        t, c = time.perf_counter(), time.process_time()
        step()
        ts.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    ts.sort()
    cpu.sort()
    print(f"torch {torch.__version__} threads {torch.get_num_threads()}: base {a.base}, {a.scales} scales, "
          f"{sum(p.numel() for p in m.parameters())} parameters, {a.pairs} pairs of {a.patch}, {a.voxels} voxels: "
          f"pretrain step median {ts[len(ts) // 2] * 1e3:.2f} ms min {ts[0] * 1e3:.2f} ms "
          f"cpu {cpu[len(cpu) // 2] * 1e3:.2f} ms")


if __name__ == '__main__':
    main()
