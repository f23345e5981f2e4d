#!/usr/bin/python3
"""Writes the bf16 fixture for tests/models/test_pretrain_bf16_fixture.cpp: one pretraining step of the tiny
network of make_fixture_pretrain_step.py (same module tree, sizes, seed and inputs recipe) in float32 with
PyTorch's CPU autocast to bfloat16 around the forward, as hdssl's --precision bf16 runs it:

    with torch.autocast('cpu', dtype=torch.bfloat16):   # backbone, voxel picks, projection MLP, restoration head
        ...
    l2-normalisation, InfoNCE and MSE on .float() of the outputs, outside the autocast region (fp32)
    backward, clip_grad_norm_(1.0), Adam(lr 3e-4) on the float32 master weights

The file holds the float32 weights before the step, the inputs, the loss terms, every parameter gradient,
the BatchNorm buffers after the forward and the parameters after the step; and, under "fp32.", the loss,
gradients and BatchNorm statistics of the same step without autocast, so the C++ test can show that its tolerance separates a
bf16 step from a float32 one. It prints what dtype each module of the model sees and produces under
torch's autocast (docs/mixed-precision.md lists where hdssl's policy differs).

Run with Debian's python3-torch (scripts/install-deps.sh --oracle):
    /usr/bin/python3 tests/reference/make_fixture_pretrain_step_bf16.py
"""
import os, sys
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixture_pretrain_step import Pretrainer, info_nce, write_safetensors  # noqa: E402


def embed_parts(m, x, vox):
    """Pretrainer.embed without its final normalisation: the projection MLP's output and the restoration."""
    pyr = m.backbone(x)
    feats = []
    for i, f in enumerate(pyr):
        f = m.scale_projs[i](f)
        v = torch.div(vox, 2 ** i, rounding_mode='floor')
        b = torch.arange(f.shape[0])[:, None].expand(-1, v.shape[1])
        feats.append(f.permute(0, 2, 3, 4, 1)[b, v[..., 0], v[..., 1], v[..., 2]])
    e = torch.cat(feats, -1).flatten(0, 1)
    return m.proj_head(e), m.restoration(pyr[0])


def step_loss(m, inputs, tau, lam, autocast):
    view_a, view_b, target_a, target_b, coords_a, coords_b = inputs
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        ha, ra = embed_parts(m, view_a, coords_a)
        hb, rb = embed_parts(m, view_b, coords_b)
    za, zb = F.normalize(ha.float(), dim=1), F.normalize(hb.float(), dim=1)  # fp32 from here on
    lc = info_nce(za, zb, tau)
    lr = (F.mse_loss(ra.float(), target_a) + F.mse_loss(rb.float(), target_b)) / 2
    return lc + lam * lr, lc, lr, (ha.dtype, ra.dtype)


def print_dtypes(m, inputs):
    """One line per kind of module (and the add of the FPN's lateral path): input and output dtypes."""
    seen, hooks = set(), []

    def hook(mod, args, out):
        name = type(mod).__name__
        if name in seen or not isinstance(out, torch.Tensor):
            return
        seen.add(name)
        ins = [a.dtype for a in args if isinstance(a, torch.Tensor)]
        params = sorted({str(p.dtype) for p in mod.parameters(recurse=False)})
        print(f'  {name:14s} in {ins} params {params} -> out {out.dtype}')

    for mod in m.modules():
        if not list(mod.children()):
            hooks.append(mod.register_forward_hook(hook))
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        x = torch.rand(1, 1, 4, 4, 4, dtype=torch.bfloat16)
        print('  upsample_nearest3d', x.dtype, '->', F.interpolate(x, scale_factor=2, mode='nearest').dtype)
        print('  max_pool3d        ', x.dtype, '->', F.max_pool3d(x, 2, ceil_mode=True).dtype)
        print('  add bf16 + fp32   ', '->', (x + x.float()).dtype)
        print('  cat bf16, bf16    ', '->', torch.cat([x, x], 1).dtype)
        print('  mse_loss(bf16)    ', '->', F.mse_loss(x, x.float()).dtype)
        print('  normalize(bf16)   ', '->', F.normalize(x.flatten(1), dim=1).dtype)
        print('  logsumexp(bf16)   ', '->', torch.logsumexp(x.flatten(1), 1).dtype)
        embed_parts(m, inputs[0], inputs[4])
    for h in hooks:
        h.remove()


def main():
    torch.manual_seed(5)
    base, scales, width, B, n, size, tau, lam = 2, 3, 8, 2, 6, (10, 9, 6), 0.1, 10.0
    m = Pretrainer(base, scales, width)
    m.train()
    state = {k: v.clone() for k, v in m.state_dict().items()}
    view_a, view_b = torch.rand(B, 1, *size), torch.rand(B, 1, *size)
    target_a, target_b = torch.rand(B, 1, *size), torch.rand(B, 1, *size)
    hi = torch.tensor(size)
    coords_a = (torch.rand(B, n, 3) * hi).long()
    coords_b = (torch.rand(B, n, 3) * hi).long()
    inputs = (view_a, view_b, target_a, target_b, coords_a, coords_b)

    print('torch', torch.__version__, 'CPU autocast bfloat16, dtypes per module:')
    print_dtypes(m, inputs)
    m.load_state_dict(state)  # print_dtypes ran training-mode batch norms: restore the running statistics

    # The float32 step first (same weights), for the tolerance's counter-example; then the bf16 step.
    loss32, lc32, lr32, _ = step_loss(m, inputs, tau, lam, autocast=False)
    loss32.backward()
    out = {'fp32.loss': loss32.detach().reshape(1), 'fp32.lc': lc32.detach().reshape(1),
           'fp32.lr': lr32.detach().reshape(1)}
    for k, p in m.named_parameters():
        out['fp32.grad.' + k] = p.grad.clone()
    for k, v in m.state_dict().items():
        if 'running' in k:
            out['fp32.after.' + k] = v.clone()
    m.zero_grad(set_to_none=True)
    m.load_state_dict(state)

    loss, lc, lr, (hdtype, rdtype) = step_loss(m, inputs, tau, lam, autocast=True)
    assert hdtype == torch.bfloat16 and rdtype == torch.bfloat16, (hdtype, rdtype)
    loss.backward()
    for k, v in state.items():
        out['init.' + k] = v
    for k, v in dict(view_a=view_a, view_b=view_b, target_a=target_a, target_b=target_b).items():
        out['input.' + k] = v
    out['input.coords_a'] = coords_a.to(torch.int32)
    out['input.coords_b'] = coords_b.to(torch.int32)
    out['out.loss'], out['out.lc'], out['out.lr'] = loss.reshape(1), lc.reshape(1), lr.reshape(1)
    for k, p in m.named_parameters():
        assert p.grad.dtype == torch.float32, (k, p.grad.dtype)
        out['grad.' + k] = p.grad.clone()
    for k, v in m.state_dict().items():
        if 'running' in k or 'num_batches' in k:
            out['after.' + k] = v.clone()
    opt = torch.optim.Adam(m.parameters(), lr=3e-4)
    norm = torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    out['out.grad_norm'] = norm.reshape(1)
    for k, p in m.named_parameters():
        out['step1.' + k] = p
    meta = dict(base=str(base), scales=str(scales), proj_width=str(width), balanced='1', restoration_1x1='0',
                tau=str(tau), **{'lambda': str(lam)}, precision='bf16', torch=torch.__version__)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'pretrain_step_tiny_bf16.safetensors')
    write_safetensors(path, out, meta)
    print('wrote', path, os.path.getsize(path), 'bytes; loss', loss.item(), '(fp32', loss32.item(), ') grad norm',
          norm.item())


if __name__ == '__main__':
    main()
