#!/usr/bin/python3
"""Writes the known-answer fixtures of tests/engine/test_linear_losses_optim_known_answers.cpp with PyTorch.

Run with Debian's PyTorch (torch 1.13, CPU): /usr/bin/python3 tests/reference/make_fixtures_linear_losses.py
Output, in tests/reference/fixtures/:
  linear_losses.bin   every array, float64 little-endian, back to back
  linear_losses.json  {"torch": version, "arrays": {name: {"shape": [...], "offset": index of the first value}},
                       "scalars": {name: value}}
Cases: linear forward + grads (with and without bias), F.normalize, logsumexp, InfoNCE (the bench's own
info_nce, copied verbatim below) loss + grads at N = 9 and N = 150 (2N = 300 rows: above the CPU kernel's
256-row tile), BCEWithLogits, the bench's soft Dice through a sigmoid, and ten torch.optim.Adam steps
(lr 3e-4) on two small parameters with fixed gradients, with and without clip_grad_norm_(max_norm=1).
Each differentiated case stores its inputs, a random output gradient "dy" where the output is not a
scalar, and PyTorch's outputs and gradients.
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
arrays = {}
scalars = {}


def put(name, t):
    arrays[name] = t.detach().to(torch.float64).clone().contiguous().numpy()


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64)


# Verbatim from scripts/torch_reference_bench.py (the published program's loss, as benchmarked).
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


def linear_case(name, n, fin, fout, bias):
    x = rand(n, fin).requires_grad_()
    w = rand(fout, fin).requires_grad_()
    b = rand(fout).requires_grad_() if bias else None
    y = F.linear(x, w, b)
    dy = rand(*y.shape)
    y.backward(dy)
    put(f"{name}.x", x); put(f"{name}.w", w); put(f"{name}.dy", dy)
    put(f"{name}.y", y); put(f"{name}.dx", x.grad); put(f"{name}.dw", w.grad)
    if bias:
        put(f"{name}.b", b); put(f"{name}.db", b.grad)


def normalize_case(name):
    x = rand(5, 7)
    x[2] *= 1e-3  # a short row: still far above eps, the gradient grows as 1/|x|
    x.requires_grad_()
    y = F.normalize(x, dim=1)
    dy = rand(*y.shape)
    y.backward(dy)
    put(f"{name}.x", x); put(f"{name}.dy", dy); put(f"{name}.y", y); put(f"{name}.dx", x.grad)


def logsumexp_case(name):
    x = (rand(4, 9) * 5).requires_grad_()
    y = torch.logsumexp(x, 1)
    dy = rand(*y.shape)
    y.backward(dy)
    put(f"{name}.x", x); put(f"{name}.dy", dy); put(f"{name}.y", y); put(f"{name}.dx", x.grad)


def infonce_case(name, n, d, tau):
    z1 = F.normalize(rand(n, d), dim=1).requires_grad_()
    z2 = F.normalize(rand(n, d), dim=1).requires_grad_()
    loss = info_nce(z1, z2, tau)
    loss.backward()
    put(f"{name}.za", z1); put(f"{name}.zb", z2); put(f"{name}.dza", z1.grad); put(f"{name}.dzb", z2.grad)
    scalars[f"{name}.loss"] = loss.item()
    scalars[f"{name}.tau"] = tau


def bce_case(name):
    x = (rand(2, 3, 4, 5) * 3).requires_grad_()
    t = (torch.rand(2, 3, 4, 5) > 0.7).double()
    loss = F.binary_cross_entropy_with_logits(x, t)
    loss.backward()
    put(f"{name}.x", x); put(f"{name}.t", t); put(f"{name}.dx", x.grad)
    scalars[f"{name}.loss"] = loss.item()


def dice_case(name):
    # The soft Dice of bench_probe in torch_reference_bench.py, on the logits `out`.
    out = (rand(2, 3, 4, 3, 2) * 2).requires_grad_()
    y = (torch.rand(2, 3, 4, 3, 2) > 0.6).double()
    p = out.sigmoid()
    inter = (p * y).sum((2, 3, 4)); vol = (p * p + y * y).sum((2, 3, 4))
    loss = (1 - 2 * inter / (vol + 1)).mean()
    loss.backward()
    put(f"{name}.x", out); put(f"{name}.t", y); put(f"{name}.dx", out.grad)
    scalars[f"{name}.loss"] = loss.item()


def adam_case(name, clip):
    pa = torch.nn.Parameter(rand(2, 3))
    pb = torch.nn.Parameter(rand(4))
    put(f"{name}.a0", pa); put(f"{name}.b0", pb)
    opt = torch.optim.Adam([pa, pb], lr=3e-4)
    ga, gb, after_a, after_b, norms = [], [], [], [], []
    for k in range(10):
        s = 0.2 if k % 3 == 2 else 1.0  # every third step the gradient norm is below max_norm
        g1, g2 = rand(2, 3) * s, rand(4) * s
        ga.append(g1); gb.append(g2)
        pa.grad, pb.grad = g1.clone(), g2.clone()
        if clip:
            norms.append(float(torch.nn.utils.clip_grad_norm_([pa, pb], 1.0)))
        opt.step()
        after_a.append(pa.detach().clone()); after_b.append(pb.detach().clone())
    put(f"{name}.ga", torch.stack(ga)); put(f"{name}.gb", torch.stack(gb))
    put(f"{name}.a", torch.stack(after_a)); put(f"{name}.b", torch.stack(after_b))
    if clip:
        put(f"{name}.norms", torch.tensor(norms))


linear_case("linear_bias", 5, 4, 3, True)
linear_case("linear_nobias", 6, 3, 4, False)
normalize_case("normalize")
logsumexp_case("logsumexp")
infonce_case("infonce_small", 9, 6, 0.1)
infonce_case("infonce_tau05", 9, 6, 0.5)
infonce_case("infonce_tiles", 150, 6, 0.1)
bce_case("bce")
dice_case("dice")
adam_case("adam", False)
adam_case("adam_clip", True)

out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
os.makedirs(out_dir, exist_ok=True)
index, offset, chunks = {}, 0, []
for name, a in arrays.items():
    index[name] = {"shape": list(a.shape), "offset": offset}
    offset += a.size
    chunks.append(a.reshape(-1))
np.concatenate(chunks).astype("<f8").tofile(os.path.join(out_dir, "linear_losses.bin"))
with open(os.path.join(out_dir, "linear_losses.json"), "w") as f:
    json.dump({"torch": torch.__version__, "arrays": index, "scalars": scalars}, f, indent=1)
print(f"{len(arrays)} arrays, {offset} values, {8 * offset} bytes")
