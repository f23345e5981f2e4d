#!/usr/bin/python3
"""Writes the fixtures of the weight importer (scripts/import_weights.py) and of the forward-equality test.

Checkpoints in the layouts the published programs save, made with the reference FPN3d module of
make_fixture_pretrain_step.py (vox2vec's module tree, so the same state-dict names):
  ours_tiny.ckpt        a Lightning-style checkpoint of hierarchical-dense-ssl's Vox2Vec module at base 2 /
                        3 scales: state_dict with backbone.*, proj_head.*, rest_head.*, plus optimizer_states
                        (Adam after one step), hyper_parameters, loops, callbacks, ...
  vox2vec_tiny.pt       a plain FPN3d state dict (no prefix) at base 1 / 4 scales, as vox2vec publishes
  refuse_*.pt/.ckpt     base 1 / 2 scales state dicts with one defect each: an unknown key, a missing key, a
                        wrong shape, hyper_parameters that contradict the shapes
The BatchNorm affine parameters and running statistics are randomized so eval mode is not the identity.
Then the importer writes import_ours_tiny.safetensors (--preset ours-ct) and import_vox2vec_tiny.safetensors
(--preset vox2vec), and features_{ours,vox2vec}_tiny.safetensors hold an input (11 x 9 x 6, odd, so the
ceil-mode pooling and the decoder's crop are exercised) and every pyramid level of PyTorch's eval-mode
forward, in float64 (the float32 weights widened exactly) and in float32.

    /usr/bin/python3 tests/reference/make_fixtures_import_weights.py
"""
import argparse, collections, importlib.util, os, sys
import torch
import torch.nn as nn

here = os.path.dirname(os.path.abspath(__file__))
out_dir = os.path.join(here, 'fixtures')


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


ref = load_module('ref', os.path.join(here, 'make_fixture_pretrain_step.py'))
imp = load_module('imp', os.path.join(here, '..', '..', 'scripts', 'import_weights.py'))


def randomize_bn(m, g):
    for mod in m.modules():
        if isinstance(mod, (nn.BatchNorm3d, nn.BatchNorm1d)):
            c = mod.num_features
            mod.weight.data = torch.rand(c, generator=g) + 0.5
            mod.bias.data = torch.randn(c, generator=g) * 0.1
            mod.running_mean = torch.randn(c, generator=g) * 0.1
            mod.running_var = torch.rand(c, generator=g) + 0.5
            mod.num_batches_tracked = torch.tensor(int(torch.randint(1, 1000, (1,), generator=g)))


class LightningVox2Vec(nn.Module):
    """The module tree of hierarchical-dense-ssl's pretraining LightningModule (hb_ssl/pretrain/model.py):
    backbone, proj_head (MLP), rest_head (one 1x1x1 conv); its scale_proj list is not a submodule, so it is
    not in the state dict."""
    def __init__(self, base, scales, d, proj):
        super().__init__()
        self.backbone = ref.FPN3d(base, scales)
        self.proj_head = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, d),
                                       nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, proj))
        self.rest_head = nn.Conv3d(base, 1, 1)


def check_names():
    """The importer's FPN3d names and shapes are those of the reference module, at every size used."""
    for base, scales in ((1, 2), (2, 4), (4, 3), (16, 6), (32, 5)):
        sd = ref.FPN3d(base, scales).state_dict()
        want = imp.fpn3d_names(base, scales, 2)
        got = collections.OrderedDict((k, tuple(v.shape)) for k, v in sd.items())
        assert got == want, (base, scales, set(got.items()) ^ set(want.items()))


def features(fpn, x, path):
    out = {'input': x}
    fpn.eval()
    with torch.no_grad():
        for i, f in enumerate(fpn.double()(x)):
            out['level_%d_f64' % i] = f
        for i, f in enumerate(fpn.float()(x.float())):
            out['level_%d_f32' % i] = f
    ref.write_safetensors(path, out, {'torch': torch.__version__})


def run_importer(src, dst, preset):
    if os.path.exists(dst):
        os.unlink(dst)
    assert imp.main([src, dst, '--preset', preset]) == 0


def main():
    check_names()
    g = torch.Generator().manual_seed(15)
    torch.manual_seed(15)

    # hierarchical-dense-ssl, Lightning layout.
    m = LightningVox2Vec(2, 3, d=6, proj=4)
    randomize_bn(m, g)
    opt = torch.optim.Adam(m.parameters(), lr=3e-4)
    m.train()
    m.proj_head(torch.randn(5, 6)).sum().backward()
    m.rest_head(m.backbone(torch.rand(2, 1, 8, 8, 4))[0]).sum().backward()
    opt.step()
    ckpt = {'epoch': 99, 'global_step': 10000, 'pytorch-lightning_version': '1.9.5', 'state_dict': m.state_dict(),
            'loops': {'fit_loop': {'state_dict': {}, 'epoch_progress': {'total': {'ready': 100}}}},
            'callbacks': {"ModelCheckpoint{'monitor': 'epoch', 'mode': 'max', 'every_n_train_steps': 0, "
                          "'every_n_epochs': 100, 'train_time_interval': None}":
                          {'monitor': 'epoch', 'best_model_score': torch.tensor(99.0), 'best_model_path': '/logs/epoch=99.ckpt',
                           'current_score': torch.tensor(99.0), 'dirpath': '/logs', 'best_k_models': {'/logs/epoch=99.ckpt': torch.tensor(99.0)}}},
            'optimizer_states': [opt.state_dict()], 'lr_schedulers': [], 'hparams_name': 'kwargs',
            'hyper_parameters': {'base_channels': 2, 'num_scales': 3, 'proj_dim': 4, 'temp': 0.1, 'lr': 0.0003}}
    ours_ckpt = os.path.join(out_dir, 'ours_tiny.ckpt')
    torch.save(ckpt, ours_ckpt)

    # vox2vec, plain state dict.
    v = ref.FPN3d(1, 4)
    randomize_bn(v, g)
    vox_pt = os.path.join(out_dir, 'vox2vec_tiny.pt')
    torch.save(v.state_dict(), vox_pt)

    run_importer(ours_ckpt, os.path.join(out_dir, 'import_ours_tiny.safetensors'), 'ours-ct')
    run_importer(vox_pt, os.path.join(out_dir, 'import_vox2vec_tiny.safetensors'), 'vox2vec')
    x = torch.rand(1, 1, 11, 9, 6, generator=g, dtype=torch.float64)
    features(m.backbone, x, os.path.join(out_dir, 'features_ours_tiny.safetensors'))
    features(v, x, os.path.join(out_dir, 'features_vox2vec_tiny.safetensors'))

    # Refusals, on a base 1 / 2 scales net.
    small = ref.FPN3d(1, 2).state_dict()
    bad = collections.OrderedDict(small)
    bad['bottom_block.layers.0.layers.7.weight'] = torch.zeros(2)
    torch.save(bad, os.path.join(out_dir, 'refuse_unknown_key.pt'))
    bad = collections.OrderedDict(small)
    del bad['skip_blocks.0.bias']
    torch.save(bad, os.path.join(out_dir, 'refuse_missing_key.pt'))
    bad = collections.OrderedDict(small)
    bad['down_blocks.0.1.weight'] = torch.zeros(2, 1, 3, 3, 3)
    torch.save(bad, os.path.join(out_dir, 'refuse_wrong_shape.pt'))
    torch.save({'state_dict': collections.OrderedDict(('backbone.' + k, t) for k, t in small.items()),
                'hyper_parameters': {'base_channels': 2, 'num_scales': 2}},
               os.path.join(out_dir, 'refuse_hparams.ckpt'))
    for n in sorted(os.listdir(out_dir)):
        if n.startswith(('ours_tiny', 'vox2vec_tiny', 'import_', 'features_', 'refuse_')):
            print(n, os.path.getsize(os.path.join(out_dir, n)), 'bytes')


if __name__ == '__main__':
    main()
