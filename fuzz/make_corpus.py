#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ from the test fixtures (run from anywhere; idempotent).

The training-checkpoint seed (corpus/fuzz_checkpoint/tiny_pretrain.safetensors) is written by the harness
itself: HDSSL_FUZZ_MAKE_SEED=PATH build-fuzz/fuzz/fuzz_checkpoint (see README.md)."""
import gzip, json, os, struct

here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.join(here, "..", "tests", "data", "fixtures")
corpus = os.path.join(here, "corpus")


def put(harness, name, data):
    d = os.path.join(corpus, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixture(name):
    with open(os.path.join(fixtures, name), "rb") as f:
        return f.read()


# NIfTI: byte 0 = container (0 .nii, 1 gzip by the harness, 2 pair, 3 raw .nii.gz), see fuzz_nifti.cpp.
for name in ["dt_uint8.nii", "dt_int16.nii", "dt_float64.nii", "be_int16_scaled.nii", "qform_only.nii"]:
    put("fuzz_nifti", name, b"\0" + fixture(name))
put("fuzz_nifti", "dt_float32.nii.gz", b"\1" + fixture("dt_float32.nii"))
put("fuzz_nifti", "n2_be_float64_sform.nii.gz", b"\3" + fixture("n2_be_float64_sform.nii.gz"))
hdr, img = fixture("pair_uint16.hdr"), fixture("pair_uint16.img")
put("fuzz_nifti", "pair_uint16", b"\2" + struct.pack("<H", len(hdr)) + hdr + img)
n2hdr, n2img = gzip.decompress(fixture("n2_pair_int32.hdr.gz")), gzip.decompress(fixture("n2_pair_int32.img.gz"))
put("fuzz_nifti", "n2_pair_int32", b"\2" + struct.pack("<H", len(n2hdr)) + n2hdr + n2img)
# dt_uint8.nii with two extensions (32 + 16 bytes) before the voxels.
b = fixture("dt_uint8.nii")
ext = struct.pack("<ii", 32, 6) + b"x" * 24 + struct.pack("<ii", 16, 4) + b"y" * 8
withext = bytearray(b[:348] + b"\1\0\0\0" + ext + b[352:])
withext[108:112] = struct.pack("<f", 352 + len(ext))
put("fuzz_nifti", "dt_uint8_extensions.nii", b"\0" + bytes(withext))

# safetensors: a small file of three dtypes and metadata (the format of models/checkpoint.h).
def safetensors(tensors, meta):
    header, blob = {}, b""
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    header["__metadata__"] = meta
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob


put("fuzz_checkpoint", "small.safetensors", safetensors(
    [("a", "F32", [2, 3], struct.pack("<6f", 1.5, -2, 3.25, 0, 7, 8)),
     ("b", "F64", [2], struct.pack("<2d", 1e-300, -4.0)),
     ("c", "I32", [3, 1], struct.pack("<3i", 1, 2, 3)),
     ("n", "I64", [], struct.pack("<q", 5))],
    {"format": "test"}))

# dataset.json, both layouts (the harness's folder holds case_001 / la_003).
put("fuzz_dataset_json", "nnunetv2.json", json.dumps({
    "channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 2},
    "numTraining": 1, "file_ending": ".nii.gz"}, indent=1).encode())
put("fuzz_dataset_json", "msd.json", json.dumps({
    "name": "Task", "modality": {"0": "MRI"}, "labels": {"0": "background", "1": "left atrium"},
    "numTraining": 1, "training": [{"image": "./imagesTr/la_003.nii.gz", "label": "./labelsTr/la_003.nii.gz"}]},
    indent=1).encode())

# splits_final.json
put("fuzz_splits", "two_folds.json", json.dumps([
    {"train": ["case_a", "case_b"], "val": ["case_c", "case_d"]},
    {"train": ["case_c", "case_d"], "val": ["case_a", "case_b"]}], indent=1).encode())
put("fuzz_splits", "one_fold.json", b'[{"train": [], "val": ["case_a"]}]')
