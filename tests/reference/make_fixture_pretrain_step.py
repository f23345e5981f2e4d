#!/usr/bin/python3
"""Writes the fixture for tests/models/test_pretrain_fixture.cpp: one pretraining step of a tiny network.

The network is the reference PyTorch one (vox2vec's FPN3d with its state-dict names, per-scale 1x1x1
projections, the projection MLP, the two-layer restoration head, symmetric InfoNCE with in-view negatives,
L = Lc + lambda * Lr), built in float64 from torch's own random init. The file holds the weights and
buffers before the step, the inputs, the loss terms, every parameter gradient, the BatchNorm buffers
after the forward, and the parameters after one clipped Adam step. The C++ test loads the weights with
hdssl's checkpoint loader, which proves the names and shapes match the PyTorch state dict.

Run with Debian's python3-torch (scripts/install-deps.sh --oracle):
    /usr/bin/python3 tests/reference/make_fixture_pretrain_step.py [--vox2vec] [--count]
--vox2vec writes the second fixture: raw concat of the pyramid (no projections), the single 1x1x1
restoration conv, other tau and lambda. --count prints the parameter count at the paper's size (base 32,
5 scales) instead.
"""
import json, os, struct, sys
import torch
import torch.nn as nn
import torch.nn.functional as F


class ResBlock3d(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.Sequential(nn.BatchNorm3d(c), nn.ReLU(), nn.Conv3d(c, c, 3, padding=1),
                                    nn.BatchNorm3d(c), nn.ReLU(), nn.Conv3d(c, c, 3, padding=1))

    def forward(self, x):
        return self.layers(x) + x


class Stack(nn.Module):
    def __init__(self, c, blocks):
        super().__init__()
        self.layers = nn.ModuleList([ResBlock3d(c) for _ in range(blocks)])

    def forward(self, x):
        for l in self.layers:
            x = l(x)
        return x


class FPN3d(nn.Module):
    """vox2vec's FPN3d (same module tree, so the same state-dict names)."""
    def __init__(self, base, scales, blocks=2):
        super().__init__()
        c = base
        self.first_conv = nn.Conv3d(1, c, 3, padding=1)
        left, down, up, skip, right = [], [], [], [], []
        for _ in range(scales - 1):
            left.append(Stack(c, blocks))
            down.append(nn.Sequential(nn.MaxPool3d(2, ceil_mode=True), nn.Conv3d(c, 2 * c, 1)))
            up.insert(0, nn.Sequential(nn.Conv3d(2 * c, c, 1), nn.Upsample(scale_factor=2, mode='nearest')))
            skip.insert(0, nn.Conv3d(c, c, 1))
            right.insert(0, Stack(c, blocks))
            c *= 2
        self.left_blocks, self.down_blocks = nn.ModuleList(left), nn.ModuleList(down)
        self.bottom_block = Stack(c, blocks)
        self.up_blocks, self.skip_blocks, self.right_blocks = nn.ModuleList(up), nn.ModuleList(skip), nn.ModuleList(right)

    def forward(self, x):
        x = self.first_conv(x)
        pyr = []
        for left, down in zip(self.left_blocks, self.down_blocks):
            x = left(x)
            pyr.append(x)
            x = down(x)
        x = self.bottom_block(x)
        pyr.insert(0, x)
        for up, skip, right in zip(self.up_blocks, self.skip_blocks, self.right_blocks):
            x = up(x)
            fmap = pyr.pop()
            x = x[(..., *map(slice, fmap.shape[-3:]))]
            x = right(x + skip(fmap))
            pyr.insert(0, x)
        return pyr


class Pretrainer(nn.Module):
    """balanced: per-scale 1x1x1 projections to `width` ("ours"); else the raw concat (vox2vec).
    restoration_1x1: the published program's single 1x1x1 conv instead of the paper's two layers."""
    def __init__(self, base, scales, width=32, proj=128, balanced=True, restoration_1x1=False):
        super().__init__()
        self.backbone = FPN3d(base, scales)
        self.scale_projs = nn.ModuleList(nn.Conv3d(base * 2 ** i, width, 1) for i in range(scales)) if balanced else None
        d = width * scales if balanced else sum(base * 2 ** i for i in range(scales))
        self.proj_head = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(),
                                       nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, proj))
        if restoration_1x1:
            self.restoration = nn.Sequential(nn.Conv3d(base, 1, 1))
        else:
            self.restoration = nn.Sequential(nn.Conv3d(base, base // 2, 3, padding=1), nn.BatchNorm3d(base // 2),
                                             nn.ReLU(), nn.Conv3d(base // 2, 1, 1))

    def embed(self, x, vox):
        pyr = self.backbone(x)
        feats = []
        for i, f in enumerate(pyr):
            if self.scale_projs is not None:
                f = self.scale_projs[i](f)  # project the whole map, then pick voxels (as the reference does)
            v = torch.div(vox, 2 ** i, rounding_mode='floor')
            b = torch.arange(f.shape[0])[:, None].expand(-1, v.shape[1])
            feats.append(f.permute(0, 2, 3, 4, 1)[b, v[..., 0], v[..., 1], v[..., 2]])
        e = torch.cat(feats, -1).flatten(0, 1)
        return F.normalize(self.proj_head(e), dim=1), self.restoration(pyr[0])


def info_nce(z1, z2, tau):
    l11 = z1 @ z1.T / tau
    l12 = z1 @ z2.T / tau
    l22 = z2 @ z2.T / tau
    eye = torch.eye(z1.shape[0], dtype=torch.bool)
    l11 = l11.masked_fill(eye, float('-inf'))
    l22 = l22.masked_fill(eye, float('-inf'))
    pos = l12.diag()
    a = torch.logsumexp(torch.cat([l11, l12], 1), 1)
    b = torch.logsumexp(torch.cat([l12.T, l22], 1), 1)
    return ((a - pos).mean() + (b - pos).mean()) / 2


def write_safetensors(path, tensors, metadata):
    """The format by hand: u64 header length, JSON header, raw little-endian bytes."""
    codes = {torch.float64: ('F64', 'd'), torch.float32: ('F32', 'f'), torch.int32: ('I32', 'i'), torch.int64: ('I64', 'q')}
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        code, fmt = codes[t.dtype]
        raw = struct.pack('<%d%s' % (t.numel(), fmt), *t.flatten().tolist())
        header[name] = dict(dtype=code, shape=list(t.shape), data_offsets=[off, off + len(raw)])
        blobs.append(raw)
        off += len(raw)
    header['__metadata__'] = metadata
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    if '--count' in sys.argv:
        m = Pretrainer(32, 5)
        print('pretrainer', sum(p.numel() for p in m.parameters()))
        print('backbone', sum(p.numel() for p in m.backbone.parameters()))
        return
    vox2vec = '--vox2vec' in sys.argv
    torch.manual_seed(6 if vox2vec else 5)
    torch.set_default_dtype(torch.float64)
    if vox2vec:  # raw concat (d = 2 + 4 = 6), single 1x1x1 restoration conv, tau 0.2, lambda 3
        base, scales, width, B, n, size, tau, lam = 2, 2, 0, 2, 5, (7, 8, 5), 0.2, 3.0
    else:
        base, scales, width, B, n, size, tau, lam = 2, 3, 8, 2, 6, (10, 9, 6), 0.1, 10.0
    m = Pretrainer(base, scales, width, balanced=not vox2vec, restoration_1x1=vox2vec)
    m.train()
    state = {k: v.clone() for k, v in m.state_dict().items()}
    view_a, view_b = torch.rand(B, 1, *size), torch.rand(B, 1, *size)
    target_a, target_b = torch.rand(B, 1, *size), torch.rand(B, 1, *size)
    hi = torch.tensor(size)
    coords_a = (torch.rand(B, n, 3) * hi).long()
    coords_b = (torch.rand(B, n, 3) * hi).long()

    za, ra = m.embed(view_a, coords_a)
    zb, rb = m.embed(view_b, coords_b)
    lc = info_nce(za, zb, tau)
    lr = (F.mse_loss(ra, target_a) + F.mse_loss(rb, target_b)) / 2
    loss = lc + lam * lr
    loss.backward()

    out = {}
    for k, v in state.items():
        out['init.' + k] = v
    for k, v in dict(view_a=view_a, view_b=view_b, target_a=target_a, target_b=target_b).items():
        out['input.' + k] = v
    out['input.coords_a'] = coords_a.to(torch.int32)
    out['input.coords_b'] = coords_b.to(torch.int32)
    out['out.loss'] = loss.reshape(1)
    out['out.lc'] = lc.reshape(1)
    out['out.lr'] = lr.reshape(1)
    for k, p in m.named_parameters():
        out['grad.' + k] = p.grad.clone()  # clip_grad_norm_ below scales .grad in place
    for k, v in m.state_dict().items():
        if 'running' in k or 'num_batches' in k:
            out['after.' + k] = v.clone()
    # one clipped Adam step (lr 3e-4, clip 1.0)
    opt = torch.optim.Adam(m.parameters(), lr=3e-4)
    norm = torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    out['out.grad_norm'] = norm.reshape(1)
    for k, p in m.named_parameters():
        out['step1.' + k] = p
    meta = dict(base=str(base), scales=str(scales), proj_width=str(width), balanced=str(int(not vox2vec)),
                restoration_1x1=str(int(vox2vec)), tau=str(tau), **{'lambda': str(lam)}, torch=torch.__version__)
    name = 'pretrain_step_tiny_vox2vec.safetensors' if vox2vec else 'pretrain_step_tiny.safetensors'
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', name)
    write_safetensors(path, out, meta)
    print('wrote', path, os.path.getsize(path), 'bytes; loss', loss.item(), 'grad norm', norm.item())


if __name__ == '__main__':
    main()
