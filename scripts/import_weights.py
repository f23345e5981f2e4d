#!/usr/bin/python3
"""Imports a PyTorch checkpoint of the reference FPN3d into an hdssl backbone file (.safetensors).

    scripts/import_weights.py IN.ckpt|IN.pt OUT.safetensors --preset ours-ct|ours-mri|vox2vec [options]

Accepted inputs (PyTorch's zip format, torch >= 1.6):
  * a PyTorch Lightning checkpoint (.ckpt): a dict whose "state_dict" holds the backbone under a prefix
    ("backbone." in the published hierarchical-dense-ssl and vox2vec programs) next to heads; the other
    top-level entries (optimizer_states, hyper_parameters, loops, callbacks, ...) are ignored and listed;
  * a plain state dict (.pt/.pth), e.g. vox2vec's published vox2vec_contrastive.pt (no prefix).

The backbone prefix is where "first_conv.weight" is found (or --prefix). Every key under the prefix must be
one of the FPN3d names for the (base, scales, blocks) read from the shapes, with the right shape; a key that
is unknown, missing or mis-shaped stops the import with its name (nothing is dropped silently). Keys outside
the prefix (projection heads, restoration head, ...) are ignored and listed. Base and scales are checked
against the Lightning hyper_parameters (base_channels, num_scales) and against --base / --scales when given.

The output is what ./pretrain writes as backbone.safetensors (format "hdssl.backbone", the reference
names without prefix, CRC-32 in the metadata), plus the preprocessing the weights expect, in hdssl's
preprocessing key ("preprocessing") and readable fields: the preset's defaults unless --modality,
--spacing, --window or --percentiles say otherwise (docs/weights.md says where each default comes from).

Why this reads the zip and the pickle itself instead of calling torch.load: unpickling runs arbitrary code
unless restricted, and the restricted loader of Debian's torch 1.13 (weights_only=True) rejects Lightning
checkpoints (floats in hyper_parameters: "Unsupported operand 71") while ignoring a custom pickle_module.
Here only plain containers and tensor rebuilds are resolved; any other object (Lightning's AttributeDict,
argparse.Namespace, ...) becomes an inert placeholder, and one inside the weights is refused. Only numpy
is needed; Debian: python3-numpy.
"""
import argparse
import collections
import io
import json
import os
import pickle
import struct
import sys
import zipfile
import zlib

import numpy as np

# ----------------------------------------------------------------------------------------------------------
# Presets: the architecture each published model has and the preprocessing its program applied.
PRESETS = {
    # hierarchical-dense-ssl CT model: its preprocess_*_data.py resample CT to 1 x 1 x 2 mm and clip to the
    # abdomen window [-175, 250] HU (the paper's text says [-1350, 1000]; pass --window to follow the text).
    'ours-ct': dict(base=32, scales=5, modality='ct', spacing=(1.0, 1.0, 2.0), window=(-175.0, 250.0)),
    # hierarchical-dense-ssl MRI model: 1.5 mm isotropic, clip to the 1st and 99.99th percentiles.
    'ours-mri': dict(base=32, scales=5, modality='mri', spacing=(1.5, 1.5, 1.5), percentiles=(1.0, 99.99)),
    # vox2vec (README): 1 x 1 x 2 mm, [-1350, 1000] HU scaled to [0, 1].
    'vox2vec': dict(base=16, scales=6, modality='ct', spacing=(1.0, 1.0, 2.0), window=(-1350.0, 1000.0)),
}
# hdssl's defaults for the settings the published programs do not fix (data/preprocess.h).
CT_DEFAULT_WINDOW = (-1350.0, 1000.0)
MRI_DEFAULT_PERCENTILES = (0.01, 99.9)
CT_CROP_HU, MRI_CROP, MIN_SIZE, BODY_THRESHOLD = -500.0, 0.3, (128, 128, 32), 0.3
AXIS_ORDER = 'N,C,X,Y,Z with x,y,z in RAS after reorientation'


class ImportError_(Exception):
    """A refusal: the message names the file and what is wrong."""


# ----------------------------------------------------------------------------------------------------------
# Restricted reading of PyTorch's zip format.
_DTYPES = {'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
           'BFloat16Storage': 'bfloat16', 'LongStorage': np.int64, 'IntStorage': np.int32,
           'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_}


class _StorageType:
    def __init__(self, name):
        self.name, self.dtype = name, _DTYPES[name]


class Opaque:
    """Stands in for any object that is not a container or a tensor; holds what it was built from."""
    qualname = '?'

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return '<%s>' % self.qualname


class Tensor:
    """A tensor read from the file: a numpy array (bfloat16 widened to float32) and its source dtype."""

    def __init__(self, array, dtype_name):
        self.array, self.dtype_name = array, dtype_name


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, *rest):
    flat, name = storage
    itemsize = flat.itemsize
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride))
    return Tensor(np.array(view), name)


def _rebuild_parameter(data, requires_grad=False, hooks=None, *rest):
    return data


_ALLOWED = {('collections', 'OrderedDict'): collections.OrderedDict,
            ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
            ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
            ('torch', 'Size'): tuple,
            ('builtins', 'set'): set, ('builtins', 'frozenset'): frozenset, ('builtins', 'slice'): slice}


def read_torch_zip(path):
    """The object saved in a torch zip file, with tensors as Tensor and foreign objects as Opaque."""
    try:
        z = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ImportError_('%s: not a PyTorch zip checkpoint (saved by torch < 1.6, or not PyTorch at all); '
                           'load and re-save it with torch.save in a current PyTorch first' % path)
    except OSError as e:
        raise ImportError_('%s: cannot read: %s' % (path, e))
    with z:
        pkl = [n for n in z.namelist() if n.endswith('/data.pkl') and n.count('/') == 1]
        if len(pkl) != 1:
            raise ImportError_('%s: no <archive>/data.pkl inside: not a torch.save file' % path)
        root = pkl[0][:-len('data.pkl')]
        if root + 'byteorder' in z.namelist() and z.read(root + 'byteorder').strip() != b'little':
            raise ImportError_('%s: big-endian tensors are not supported' % path)
        storages = {}

        def storage(saved_id):
            kind, stype, key, _location, numel = saved_id
            if kind != 'storage' or not isinstance(stype, _StorageType):
                raise ImportError_('%s: unexpected persistent id %r' % (path, saved_id[:2]))
            if key not in storages:
                raw = z.read(root + 'data/' + str(key))
                if stype.dtype == 'bfloat16':
                    flat = (np.frombuffer(raw, dtype='<u2').astype(np.uint32) << 16).view(np.float32)
                else:
                    flat = np.frombuffer(raw, dtype=np.dtype(stype.dtype).newbyteorder('<'))
                if flat.size != numel:
                    raise ImportError_('%s: storage %s holds %d values, %d announced' % (path, key, flat.size, numel))
                storages[key] = (flat, stype.name[:-len('Storage')])
            return storages[key]

        class Restricted(pickle.Unpickler):
            def find_class(self, module, name):
                if module == 'torch' and name in _DTYPES:
                    return _StorageType(name)
                if (module, name) in _ALLOWED:
                    return _ALLOWED[(module, name)]
                return type('Opaque', (Opaque,), {'qualname': module + '.' + name})

            def persistent_load(self, saved_id):
                return storage(saved_id)

        try:
            return Restricted(io.BytesIO(z.read(pkl[0])), encoding='utf-8').load()
        except ImportError_:
            raise
        except Exception as e:
            raise ImportError_('%s: cannot unpickle: %s' % (path, e))


# ----------------------------------------------------------------------------------------------------------
# The FPN3d state dict (docs/method.md section 2).
def fpn3d_names(base, scales, blocks):
    """OrderedDict name -> shape of the reference FPN3d state dict; num_batches_tracked has shape ()."""
    out = collections.OrderedDict()

    def conv(name, cout, cin, k):
        out[name + '.weight'] = (cout, cin, k, k, k)
        out[name + '.bias'] = (cout,)

    def bn(name, c):
        for p in ('weight', 'bias', 'running_mean', 'running_var'):
            out[name + '.' + p] = (c,)
        out[name + '.num_batches_tracked'] = ()

    def stack(name, c):
        for j in range(blocks):
            bn('%s.layers.%d.layers.0' % (name, j), c)
            conv('%s.layers.%d.layers.2' % (name, j), c, c, 3)
            bn('%s.layers.%d.layers.3' % (name, j), c)
            conv('%s.layers.%d.layers.5' % (name, j), c, c, 3)

    conv('first_conv', base, 1, 3)
    # In the module's registration order, as its state_dict() lists them.
    for i in range(scales - 1):
        stack('left_blocks.%d' % i, base << i)
    for i in range(scales - 1):
        conv('down_blocks.%d.1' % i, base << (i + 1), base << i, 1)
    stack('bottom_block', base << (scales - 1))
    deep = [base << (scales - 2 - k) for k in range(scales - 1)]  # k = 0 next to the bottom
    for k, c in enumerate(deep):
        conv('up_blocks.%d.0' % k, c, 2 * c, 1)
    for k, c in enumerate(deep):
        conv('skip_blocks.%d' % k, c, c, 1)
    for k, c in enumerate(deep):
        stack('right_blocks.%d' % k, c)
    return out


def infer_shape(path, sd):
    """(base, scales, blocks, in_channels) from the names and shapes of a prefix-free state dict."""
    w = sd.get('first_conv.weight')
    if w is None or w.array.ndim != 5:
        raise ImportError_('%s: first_conv.weight is missing or not 5-D' % path)
    base, in_ch = int(w.array.shape[0]), int(w.array.shape[1])
    downs = {k.split('.')[1] for k in sd if k.startswith('down_blocks.')}
    scales = len(downs) + 1
    top = 'left_blocks.0.layers.' if scales > 1 else 'bottom_block.layers.'
    blocks = len({k[len(top):].split('.')[0] for k in sd if k.startswith(top)})
    if blocks < 1:
        raise ImportError_('%s: cannot tell the ResBlocks per level (no %s* keys)' % (path, top))
    return base, scales, blocks, in_ch


# ----------------------------------------------------------------------------------------------------------
def find_state_dict(path, obj, notes):
    """The tensor dict of the file and its layout name; lists the ignored top-level entries in notes."""
    if isinstance(obj, dict) and isinstance(obj.get('state_dict'), dict):
        others = sorted(k for k in obj if k != 'state_dict')
        notes.append('Lightning checkpoint; ignored top-level entries: ' + (', '.join(map(str, others)) or 'none'))
        return obj['state_dict'], 'lightning', obj.get('hyper_parameters')
    if isinstance(obj, dict) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        return obj, 'state_dict', None
    if isinstance(obj, dict):
        raise ImportError_('%s: neither a Lightning checkpoint (no "state_dict") nor a plain state dict; top-level '
                           'keys: %s' % (path, ', '.join(map(str, list(obj)[:20]))))
    raise ImportError_('%s: holds a %s, not a state dict' % (path, type(obj).__name__))


def check_backbone(path, sd, prefix, hparams, args, notes):
    """Returns (ordered name -> Tensor of the backbone, (base, scales, blocks)); refuses by name."""
    for k, v in sd.items():
        if not isinstance(k, str):
            raise ImportError_('%s: state dict key %r is not a string' % (path, k))
    inside = collections.OrderedDict((k[len(prefix):], v) for k, v in sd.items() if k.startswith(prefix))
    outside = [k for k in sd if not k.startswith(prefix)]
    if outside:
        notes.append('ignored %d keys outside the backbone prefix "%s": %s' % (len(outside), prefix, ', '.join(outside)))
    for k, v in inside.items():
        if not isinstance(v, Tensor):
            raise ImportError_('%s: %s%s is a %s, not a tensor' % (path, prefix, k, getattr(v, 'qualname', type(v).__name__)))
    base, scales, blocks, in_ch = infer_shape(path, inside)
    if in_ch != 1:
        raise ImportError_('%s: %sfirst_conv.weight takes %d input channels; hdssl backbones take 1' % (path, prefix, in_ch))
    checks = []
    if isinstance(hparams, dict):
        checks += [('hyper_parameters base_channels', hparams.get('base_channels'), base),
                   ('hyper_parameters num_scales', hparams.get('num_scales'), scales)]
    checks += [('--base', args.base, base), ('--scales', args.scales, scales)]
    for what, want, got in checks:
        if want is not None and int(want) != got:
            raise ImportError_('%s: %s says %s, the tensor shapes say %d' % (path, what, want, got))
    want = fpn3d_names(base, scales, blocks)
    problems = []
    for k in inside:
        if k not in want:
            problems.append('unknown key: %s%s' % (prefix, k))
    for k, shape in want.items():
        if k not in inside:
            problems.append('missing key: %s%s' % (prefix, k))
        elif tuple(inside[k].array.shape) != shape:
            problems.append('wrong shape: %s%s is %s, FPN3d(base %d, %d scales) needs %s' %
                            (prefix, k, list(inside[k].array.shape), base, scales, list(shape)))
    if problems:
        raise ImportError_('%s: the weights under prefix "%s" are not an FPN3d (base %d, %d scales, %d blocks read '
                           'from the shapes):\n  %s' % (path, prefix, base, scales, blocks, '\n  '.join(problems)))
    out = collections.OrderedDict()
    for k in want:
        t = inside[k]
        a = t.array
        if k.endswith('num_batches_tracked'):
            if a.dtype.kind not in 'iu':
                raise ImportError_('%s: %s%s is %s, not an integer' % (path, prefix, k, a.dtype))
            out[k] = np.asarray(a, dtype='<i8').reshape(())
            continue
        if a.dtype.kind != 'f':
            raise ImportError_('%s: %s%s has dtype %s, not floating point' % (path, prefix, k, t.dtype_name))
        if not np.all(np.isfinite(a)):
            raise ImportError_('%s: %s%s holds NaN or Inf' % (path, prefix, k))
        out[k] = np.asarray(a, dtype='<f8' if a.dtype == np.float64 else '<f4')
    kinds = sorted({t.dtype_name for k, t in inside.items() if not k.endswith('num_batches_tracked')})
    if any(d in ('Half', 'BFloat16') for d in kinds):
        notes.append('%s weights widened to float32' % '/'.join(kinds))
    return out, (base, scales, blocks)


def preprocessing(args):
    """(hdssl preprocessing key, readable fields, where each value came from)."""
    p = dict(PRESETS[args.preset])
    source = 'preset ' + args.preset
    user = []
    if args.modality:
        if args.modality != p['modality']:
            p.pop('window', None), p.pop('percentiles', None)
        p['modality'] = args.modality
        user.append('modality')
    if args.spacing:
        p['spacing'] = tuple(args.spacing)
        user.append('spacing')
    if args.window:
        if p['modality'] != 'ct':
            raise ImportError_('--window is a CT setting; this model is MRI (use --percentiles)')
        p['window'] = tuple(args.window)
        user.append('window')
    if args.percentiles:
        if p['modality'] != 'mri':
            raise ImportError_('--percentiles is an MRI setting; this model is CT (use --window)')
        p['percentiles'] = tuple(args.percentiles)
        user.append('percentiles')
    if any(s <= 0 for s in p['spacing']):
        raise ImportError_('--spacing must be positive, got %s' % (p['spacing'],))
    window = p.get('window', CT_DEFAULT_WINDOW)
    pct = p.get('percentiles', MRI_DEFAULT_PERCENTILES)
    if window[0] >= window[1] or not (0 <= pct[0] < pct[1] <= 100):
        raise ImportError_('the intensity window must be LO < HI (percentiles within [0, 100])')
    g = lambda v: '%.6g' % v
    key = 'v1 mod=%s sp=%s ct=%s mri=%s min=%s body=%s' % (
        p['modality'], ','.join(map(g, p['spacing'])), ','.join(map(g, (*window, CT_CROP_HU))),
        ','.join(map(g, (*pct, MRI_CROP))), ','.join(map(str, MIN_SIZE)), g(BODY_THRESHOLD))
    readable = {'expected_modality': p['modality'], 'expected_spacing_mm': ','.join(map(g, p['spacing']))}
    if p['modality'] == 'ct':
        readable['expected_ct_window_hu'] = ','.join(map(g, window))
    else:
        readable['expected_mri_percentiles'] = ','.join(map(g, pct))
    readable['preprocessing_source'] = source + ('' if not user else '; given by the user: ' + ', '.join(user))
    return key, readable


def write_safetensors(path, tensors, metadata):
    """Atomic write (temporary file, fsync, rename) in the layout models/checkpoint.cpp reads."""
    header, blobs, off = {}, [], 0
    crc = 0
    for name, a in tensors.items():
        raw = a.tobytes()
        code = {'f4': 'F32', 'f8': 'F64', 'i8': 'I64'}[a.dtype.str[1:]]
        header[name] = dict(dtype=code, shape=list(a.shape), data_offsets=[off, off + len(raw)])
        blobs.append(raw)
        crc = zlib.crc32(raw, crc)
        off += len(raw)
    meta = dict(metadata)
    meta['hdssl.crc32'] = str(crc)
    header['__metadata__'] = meta
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    tmp = '%s.tmp.%d' % (path, os.getpid())
    try:
        with open(tmp, 'wb') as f:
            f.write(struct.pack('<Q', len(h)))
            f.write(h)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise ImportError_('%s: cannot write: %s' % (path, e))


def run(args):
    if not args.output.endswith('.safetensors'):
        raise ImportError_('%s: the output name must end in .safetensors' % args.output)
    if os.path.exists(args.output) and not args.force:
        raise ImportError_('%s exists; pass --force to replace it' % args.output)
    notes = []
    obj = read_torch_zip(args.input)
    sd, layout, hparams = find_state_dict(args.input, obj, notes)
    prefix = args.prefix
    if prefix is None:
        cands = sorted(k[:-len('first_conv.weight')] for k in sd if isinstance(k, str) and k.endswith('first_conv.weight'))
        if len(cands) != 1:
            raise ImportError_('%s: %s; name the backbone with --prefix' % (
                args.input, 'no key ends in first_conv.weight' if not cands else
                'several keys end in first_conv.weight (prefixes %s)' % ', '.join('"%s"' % c for c in cands)))
        prefix = cands[0]
    tensors, (base, scales, blocks) = check_backbone(args.input, sd, prefix, hparams, args, notes)
    preset = PRESETS[args.preset]
    if (base, scales) != (preset['base'], preset['scales']):
        notes.append('note: the published %s model is base %d / %d scales; this file is base %d / %d scales' %
                     (args.preset, preset['base'], preset['scales'], base, scales))
    key, readable = preprocessing(args)
    meta = {'format': 'hdssl.backbone', 'format_version': '1', 'architecture': 'FPN3d', 'base_channels': str(base),
            'num_scales': str(scales), 'blocks': str(blocks), 'in_channels': '1', 'axis_order': AXIS_ORDER,
            'preprocessing': key, 'preset': args.preset, 'imported_from': os.path.basename(args.input),
            'import_layout': layout, 'import_prefix': prefix, 'program': 'hdssl scripts/import_weights.py'}
    meta.update(readable)
    write_safetensors(args.output, tensors, meta)
    for n in notes:
        print(n)
    print('wrote %s: FPN3d base %d, %d scales, %d blocks, %d tensors from %s (%s, prefix "%s"); expects %s' %
          (args.output, base, scales, blocks, len(tensors), args.input, layout, prefix, key))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('input', help='a Lightning .ckpt or a state dict .pt/.pth (PyTorch zip format)')
    ap.add_argument('output', help='the hdssl backbone to write (.safetensors)')
    ap.add_argument('--preset', required=True, choices=sorted(PRESETS),
                    help='which published model: sets the preprocessing the weights expect')
    ap.add_argument('--prefix', help='the backbone prefix in the state dict (default: where first_conv.weight is)')
    ap.add_argument('--base', type=int, help='refuse unless the base channels are this')
    ap.add_argument('--scales', type=int, help='refuse unless the pyramid has this many scales')
    ap.add_argument('--modality', choices=['ct', 'mri'], help='override the preset\'s modality')
    ap.add_argument('--spacing', type=float, nargs=3, metavar=('X', 'Y', 'Z'), help='override the spacing (mm)')
    ap.add_argument('--window', type=float, nargs=2, metavar=('LO', 'HI'), help='override the CT window (HU)')
    ap.add_argument('--percentiles', type=float, nargs=2, metavar=('LO', 'HI'), help='override the MRI clip percentiles')
    ap.add_argument('--force', action='store_true', help='replace an existing output')
    args = ap.parse_args(argv)
    try:
        run(args)
    except ImportError_ as e:
        print('import_weights: error: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
