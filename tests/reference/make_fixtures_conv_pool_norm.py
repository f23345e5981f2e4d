#!/usr/bin/python3
"""Writes the known-answer fixtures of tests/engine/test_conv_pool_norm_gather_known_answers.cpp with PyTorch.

Run with Debian's PyTorch (torch 1.13, CPU): /usr/bin/python3 tests/reference/make_fixtures_conv_pool_norm.py
Output, in tests/reference/fixtures/:
  conv_pool_norm.bin   every array, float64 little-endian, back to back
  conv_pool_norm.json  {"torch": version, "arrays": {name: {"shape": [...], "offset": index of the first value}}}
Each case stores its inputs, a random output gradient "dy" and PyTorch's outputs and gradients, all in float64.
Integer arrays (max-pool indices) are stored as exact float64 values.
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
arrays = {}


def put(name, t):
    arrays[name] = t.detach().to(torch.float64).clone().contiguous().numpy()  # a copy: rm, rv change in place


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def conv_case(name, x_shape, co, k, bias):
    x = rand(*x_shape).requires_grad_()
    w = (rand(co, x_shape[1], k, k, k) * 0.3).requires_grad_()
    b = rand(co).requires_grad_() if bias else None
    y = F.conv3d(x, w, b, padding=k // 2)
    dy = rand(*y.shape)
    y.backward(dy)
    put(f"{name}.x", x); put(f"{name}.w", w); put(f"{name}.dy", dy)
    put(f"{name}.y", y); put(f"{name}.dx", x.grad); put(f"{name}.dw", w.grad)
    if bias:
        put(f"{name}.b", b); put(f"{name}.db", b.grad)


def maxpool_case(name, x_shape):
    x = rand(*x_shape).requires_grad_()
    y, idx = F.max_pool3d(x, 2, stride=2, ceil_mode=True, return_indices=True)
    dy = rand(*y.shape)
    y.backward(dy)
    put(f"{name}.x", x); put(f"{name}.dy", dy); put(f"{name}.y", y); put(f"{name}.idx", idx); put(f"{name}.dx", x.grad)


def upsample_case(name, x_shape):
    x = rand(*x_shape).requires_grad_()
    y = F.interpolate(x, scale_factor=2, mode="nearest")
    dy = rand(*y.shape)
    y.backward(dy)
    put(f"{name}.x", x); put(f"{name}.dy", dy); put(f"{name}.y", y); put(f"{name}.dx", x.grad)


def batchnorm_case(name, x_shape):
    c = x_shape[1]
    x = (rand(*x_shape) * 2 + 0.5).requires_grad_()
    gamma = (torch.rand(c) + 0.5).requires_grad_()
    beta = rand(c).requires_grad_()
    rm, rv = rand(c), torch.rand(c) + 0.5
    put(f"{name}.x", x); put(f"{name}.gamma", gamma); put(f"{name}.beta", beta)
    put(f"{name}.running_mean_in", rm); put(f"{name}.running_var_in", rv)
    # Saved statistics of the training forward (what the backend's forward_train returns).
    _, save_mean, save_invstd, *_ = torch.ops.aten.native_batch_norm(
        x.detach(), gamma.detach(), beta.detach(), rm.clone(), rv.clone(), True, 0.1, 1e-5)
    put(f"{name}.save_mean", save_mean); put(f"{name}.save_invstd", save_invstd)
    y = F.batch_norm(x, rm, rv, gamma, beta, training=True, momentum=0.1, eps=1e-5)  # updates rm, rv
    dy = rand(*y.shape)
    y.backward(dy)
    put(f"{name}.dy", dy); put(f"{name}.y", y)
    put(f"{name}.dx", x.grad); put(f"{name}.dgamma", gamma.grad); put(f"{name}.dbeta", beta.grad)
    put(f"{name}.running_mean_out", rm); put(f"{name}.running_var_out", rv)
    # Eval mode with the updated running statistics.
    put(f"{name}.y_eval", F.batch_norm(x, rm, rv, gamma, beta, training=False, eps=1e-5))


conv_case("conv3", (2, 3, 5, 4, 3), 4, 3, bias=True)
conv_case("conv3_nobias", (1, 2, 3, 4, 5), 3, 3, bias=False)
conv_case("conv1", (2, 5, 3, 4, 3), 3, 1, bias=True)
maxpool_case("maxpool_odd", (2, 3, 5, 3, 7))
upsample_case("upsample", (2, 3, 2, 3, 1))
batchnorm_case("bn3d", (2, 3, 4, 3, 5))
batchnorm_case("bn1d", (6, 5))

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
os.makedirs(out, exist_ok=True)
index, offset, chunks = {}, 0, []
for name, a in arrays.items():
    index[name] = {"shape": list(a.shape), "offset": offset}
    offset += a.size
    chunks.append(a.reshape(-1).astype("<f8"))
np.concatenate(chunks).tofile(os.path.join(out, "conv_pool_norm.bin"))
with open(os.path.join(out, "conv_pool_norm.json"), "w") as f:
    json.dump({"torch": torch.__version__, "arrays": index}, f, indent=1)
print(f"wrote {len(index)} arrays, {offset} values ({offset * 8} bytes) to {out}")
