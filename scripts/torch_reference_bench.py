#!/usr/bin/env python3
# hdssl's PyTorch yardstick for speed and memory: the paper's pretraining step (and a linear-probe step)
# written in plain PyTorch. Its median seconds per step and peak memory are what ./bench is compared with.
# Part of hdssl: cuda/README.md says how to run it on a GPU machine, and docs/method.md section 8 gives its
# numbers on one H200.
"""Anchor benchmark: the paper's pretraining step and linear-probe step in plain PyTorch.

This is the "what a user would pick instead" baseline for hdssl's
performance: the published method is a PyTorch(+Lightning) program. The model below is written
from the paper's description (FPN 3D U-Net of pre-activation residual blocks with batch
norm, per-scale 1x1 projections to equal width, 3-layer MLP to 128, symmetric InfoNCE with
in-view negatives at tau=0.1, 1x1 reconstruction head, MSE weighted by 10, Adam 3e-4,
grad-norm clip 1.0). It times forward+backward+step with CUDA events and reports peak
memory, for fp32 (cuDNN TF32 convs, PyTorch defaults), channels-last, and bf16 autocast.

Usage: python3 torch_reference_bench.py [--small] [--steps N] [--out FILE]
"""
import argparse, json, math, os, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class ResBlock(nn.Module):
    def __init__(self, c_in, c_out, k=3):
        super().__init__()
        h = min(c_in, c_out)
        p = k // 2
        self.body = nn.Sequential(
            nn.BatchNorm3d(c_in), nn.ReLU(), nn.Conv3d(c_in, h, k, padding=p),
            nn.BatchNorm3d(h), nn.ReLU(), nn.Conv3d(h, c_out, k, padding=p))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv3d(c_in, c_out, 1)

    def forward(self, x):
        return self.body(x) + self.skip(x)


class FPN(nn.Module):
    """U-Net shaped feature pyramid; level i has base*2^i channels at 1/2^i resolution."""
    def __init__(self, base=32, scales=5, blocks=2):
        super().__init__()
        self.stem = nn.Conv3d(1, base, 3, padding=1)
        self.enc, self.down, self.up, self.lat, self.dec = (nn.ModuleList() for _ in range(5))
        c = base
        for _ in range(scales - 1):
            self.enc.append(nn.Sequential(*[ResBlock(c, c) for _ in range(blocks)]))
            self.down.append(nn.Sequential(nn.MaxPool3d(2, ceil_mode=True), nn.Conv3d(c, 2 * c, 1)))
            self.up.append(nn.Sequential(nn.Conv3d(2 * c, c, 1), nn.Upsample(scale_factor=2, mode='nearest')))
            self.lat.append(nn.Conv3d(c, c, 1))
            self.dec.append(nn.Sequential(*[ResBlock(c, c) for _ in range(blocks)]))
            c *= 2
        self.bottom = nn.Sequential(*[ResBlock(c, c) for _ in range(blocks)])

    def forward(self, x):
        x = self.stem(x)
        skips = []
        for enc, down in zip(self.enc, self.down):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.bottom(x)
        pyramid = [x]
        for i in reversed(range(len(self.enc))):
            s = skips[i]
            x = self.up[i](x)[..., :s.shape[2], :s.shape[3], :s.shape[4]]
            x = self.dec[i](x + self.lat[i](s))
            pyramid.insert(0, x)
        return pyramid


class Pretrainer(nn.Module):
    def __init__(self, base=32, scales=5, width=32, proj=128, balanced=True):
        super().__init__()
        self.fpn = FPN(base, scales)
        self.balanced = balanced
        if balanced:
            self.scale_proj = nn.ModuleList(nn.Conv3d(base * 2 ** i, width, 1) for i in range(scales))
            d = width * scales
        else:
            self.scale_proj = None
            d = sum(base * 2 ** i for i in range(scales))
        self.mlp = nn.Sequential(
            nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(),
            nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, proj))
        self.rest = nn.Conv3d(base, 1, 1)

    def embed(self, x, vox):
        """x: (B,1,H,W,D); vox: (B,n,3) long voxel coordinates -> (B*n, proj) unit vectors."""
        pyr = self.fpn(x)
        feats = []
        for i, f in enumerate(pyr):
            if self.scale_proj is not None:
                f = self.scale_proj[i](f)
            v = torch.div(vox, 2 ** i, rounding_mode='floor')
            b = torch.arange(f.shape[0], device=f.device)[:, None].expand(-1, v.shape[1])
            feats.append(f.permute(0, 2, 3, 4, 1)[b, v[..., 0], v[..., 1], v[..., 2]])
        e = torch.cat(feats, -1).flatten(0, 1)
        return F.normalize(self.mlp(e), dim=1), self.rest(pyr[0])


def info_nce(z1, z2, tau=0.1):
    l11 = z1 @ z1.T / tau
    l12 = z1 @ z2.T / tau
    l22 = z2 @ z2.T / tau
    eye = torch.eye(z1.shape[0], device=z1.device, dtype=torch.bool)
    l11 = l11.masked_fill(eye, float('-inf'))
    l22 = l22.masked_fill(eye, float('-inf'))
    pos = l12.diag()
    a = torch.logsumexp(torch.cat([l11, l12], 1), 1)
    b = torch.logsumexp(torch.cat([l12.T, l22], 1), 1)
    return ((a - pos).mean() + (b - pos).mean()) / 2


def make_batch(B, size, n, device):
    H, W, D = size
    x1, x2 = torch.rand(B, 1, H, W, D, device=device), torch.rand(B, 1, H, W, D, device=device)
    hi = torch.tensor([H, W, D], device=device)
    v = (torch.rand(B, n, 3, device=device) * hi).long()
    return x1, x2, x1.clone(), x2.clone(), v, v.clone()


def sync(dev):
    if dev.type == 'cuda':
        torch.cuda.synchronize()


def time_steps(step, steps, warm, dev):
    for _ in range(warm):
        step()
    sync(dev)
    times = []
    for _ in range(steps):
        if dev.type == 'cuda':
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record(); step(); e.record(); torch.cuda.synchronize()
            times.append(s.elapsed_time(e) / 1e3)
        else:
            t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], times[0], times[-1]


def bench_pretrain(cfg, dev, steps, warm, amp=None, channels_last=False, compile_=False):
    torch.manual_seed(0)
    m = Pretrainer(cfg['base'], cfg['scales'], balanced=cfg['balanced']).to(dev)
    if channels_last:
        m = m.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(m.parameters(), lr=3e-4)
    batch = make_batch(cfg['B'], cfg['size'], cfg['n'], dev)
    if channels_last:
        batch = tuple(t.contiguous(memory_format=torch.channels_last_3d) if t.dim() == 5 else t for t in batch)
    embed = torch.compile(m.embed) if compile_ else m.embed

    def step():
        x1a, x2a, x1, x2, v1, v2 = batch
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            z1, r1 = embed(x1a, v1)
            z2, r2 = embed(x2a, v2)
            loss = info_nce(z1.float(), z2.float()) + 10 * (F.mse_loss(r1.float(), x1) + F.mse_loss(r2.float(), x2)) / 2
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        return loss

    if dev.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    med, lo, hi = time_steps(step, steps, warm, dev)
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == 'cuda' else float('nan')
    return dict(median_s=med, min_s=lo, max_s=hi, peak_gib=peak,
                params=sum(p.numel() for p in m.parameters()))


def count_flops(cfg, dev):
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except Exception:
        return None
    m = Pretrainer(cfg['base'], cfg['scales'], balanced=cfg['balanced']).to(dev)
    batch = make_batch(cfg['B'], cfg['size'], cfg['n'], dev)
    fc = FlopCounterMode(display=False)
    with fc:
        x1a, x2a, x1, x2, v1, v2 = batch
        z1, r1 = m.embed(x1a, v1)
        z2, r2 = m.embed(x2a, v2)
        loss = info_nce(z1, z2) + 10 * (F.mse_loss(r1, x1) + F.mse_loss(r2, x2)) / 2
        loss.backward()
    return fc.get_total_flops()


def bench_probe(cfg, dev, steps, warm, classes=13, amp=None):
    """Linear probing step: frozen backbone forward (no grad) + per-scale 1x1 heads, BCE+Dice."""
    torch.manual_seed(0)
    fpn = FPN(cfg['base'], cfg['scales']).to(dev).eval()
    heads = nn.ModuleList(nn.Conv3d(cfg['base'] * 2 ** i, classes, 1) for i in range(cfg['scales'])).to(dev)
    opt = torch.optim.Adam(heads.parameters(), lr=3e-4)
    H, W, D = cfg['size']
    x = torch.rand(7, 1, H, W, D, device=dev)
    y = (torch.rand(7, classes, H, W, D, device=dev) > 0.9).float()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.no_grad(), torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            pyr = fpn(x)
        out = None
        for i, (f, h) in enumerate(zip(reversed(pyr), reversed(list(heads)))):
            o = h(f.float())
            out = o if out is None else F.interpolate(out, scale_factor=2, mode='nearest')[..., :o.shape[2], :o.shape[3], :o.shape[4]] + o
        p = out.sigmoid()
        inter = (p * y).sum((2, 3, 4)); vol = (p * p + y * y).sum((2, 3, 4))
        loss = F.binary_cross_entropy_with_logits(out, y) + (1 - 2 * inter / (vol + 1)).mean()
        loss.backward(); opt.step()

    med, lo, hi = time_steps(step, steps, warm, dev)
    return dict(median_s=med, min_s=lo, max_s=hi)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--small', action='store_true', help='tiny sizes for a CPU smoke run')
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--warm', type=int, default=3)
    ap.add_argument('--deadline', type=float, default=420, help='seconds; skip later variants after this')
    ap.add_argument('--out', default=None)
    a = ap.parse_args()
    t0 = time.time()
    dev = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    torch.backends.cudnn.benchmark = True
    info = dict(torch=torch.__version__, device=torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu',
                cudnn=torch.backends.cudnn.version() if dev.type == 'cuda' else None)
    print(json.dumps(info), flush=True)
    if a.small:
        ours = dict(base=8, scales=3, B=2, size=(32, 32, 16), n=64, balanced=True)
        base = dict(base=4, scales=4, B=2, size=(32, 32, 16), n=64, balanced=False)
    else:
        ours = dict(base=32, scales=5, B=10, size=(128, 128, 32), n=1024, balanced=True)
        base = dict(base=16, scales=6, B=10, size=(128, 128, 32), n=1024, balanced=False)
    rows = []

    def run(name, fn):
        if time.time() - t0 > a.deadline:
            print(json.dumps(dict(name=name, skipped='deadline')), flush=True)
            return
        try:
            r = fn()
            r['name'] = name
        except Exception as e:  # report and go on: OOM or compile failure is itself a finding
            r = dict(name=name, error=repr(e)[:300])
            if dev.type == 'cuda':
                torch.cuda.empty_cache()
        rows.append(r)
        print(json.dumps(r), flush=True)

    fl = count_flops(ours, dev)
    print(json.dumps(dict(name='flops_per_pretrain_step_ours', flops=fl)), flush=True)
    fl_b = count_flops(base, dev)
    print(json.dumps(dict(name='flops_per_pretrain_step_vox2vec', flops=fl_b)), flush=True)
    S, W = a.steps, a.warm
    run('pretrain_ours_fp32', lambda: bench_pretrain(ours, dev, S, W))
    run('pretrain_ours_fp32_channels_last', lambda: bench_pretrain(ours, dev, S, W, channels_last=True))
    if dev.type == 'cuda':
        run('pretrain_ours_bf16_autocast', lambda: bench_pretrain(ours, dev, S, W, amp=torch.bfloat16))
        run('pretrain_ours_bf16_autocast_channels_last', lambda: bench_pretrain(ours, dev, S, W, amp=torch.bfloat16, channels_last=True))
    run('pretrain_vox2vec_fp32', lambda: bench_pretrain(base, dev, S, W))
    run('probe_linear_ours_fp32', lambda: bench_probe(ours, dev, S, W))
    if dev.type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = True
        run('pretrain_ours_fp32_tf32matmul', lambda: bench_pretrain(ours, dev, S, W))
        torch.backends.cuda.matmul.allow_tf32 = False
        run('pretrain_ours_bf16_compiled', lambda: bench_pretrain(ours, dev, S, W, amp=torch.bfloat16, compile_=True))
    if a.out:
        with open(a.out, 'w') as f:
            json.dump(dict(info=info, flops_ours=fl, flops_vox2vec=fl_b, rows=rows), f, indent=1)
    print('total_s', round(time.time() - t0, 1))


if __name__ == '__main__':
    main()
