#!/usr/bin/python3
"""Loads what ./pretrain wrote into the reference PyTorch modules, strictly (used by test_pretrain_app.cpp).

    load_checkpoint_in_torch.py BACKBONE.safetensors CHECKPOINT.safetensors

The backbone file must fill vox2vec's FPN3d (names without prefix) and the training checkpoint the whole
Pretrainer (backbone., scale_projs., proj_head., restoration.), optimizer tensors aside. The modules are
those of tests/reference/make_fixture_pretrain_step.py. The file is parsed by hand (8-byte length, JSON
header, raw data), as the safetensors package may be absent. Prints OK and exits 0 when both load.
"""
import importlib.util, json, os, struct, sys
import torch

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("ref", os.path.join(here, "..", "reference", "make_fixture_pretrain_step.py"))
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)


def load(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    header = json.loads(b[8:8 + n])
    data = b[8 + n:]
    meta = header.pop('__metadata__', {})
    dtypes = {'F32': torch.float32, 'F64': torch.float64, 'I64': torch.int64, 'I32': torch.int32}
    tensors = {k: torch.frombuffer(bytearray(data[v['data_offsets'][0]:v['data_offsets'][1]]), dtype=dtypes[v['dtype']])
               .reshape(v['shape']) for k, v in header.items()}
    return tensors, meta


backbone, meta = load(sys.argv[1])
base, scales = int(meta['base_channels']), int(meta['num_scales'])
ref.FPN3d(base, scales).load_state_dict(backbone, strict=True)
full, full_meta = load(sys.argv[2])
model = json.loads(full_meta['model'])
net = ref.Pretrainer(base, scales, width=model['proj_width'], proj=model['embed_dim'])
net.load_state_dict({k: v for k, v in full.items() if not k.startswith('optimizer.')}, strict=True)
print('OK: backbone and checkpoint load strictly into the PyTorch FPN3d / Pretrainer')
