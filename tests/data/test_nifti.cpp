// NIfTI reading against nibabel (fixtures written by nibabel, and the real files python3-nibabel ships),
// round trips of every datatype through our writer, and one test per class of bad input.
#include <gtest/gtest.h>
#include <nifti/nifti1.h>
#include <nifti/nifti2.h>
#include <zlib.h>

#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "data/nifti.h"
#include "engine/random.h"
#include "tests/data/test_util.h"
#include "tests/file_size_limit.h"

using namespace hdssl::data;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kFixtures = std::string(HDSSL_SOURCE_DIR) + "/tests/data/fixtures/";
const std::string kNibabelData = "/usr/lib/python3/dist-packages/nibabel/tests/data/";

json load_json(const std::string& p) {
  std::ifstream f(p);
  return json::parse(f);
}

void expect_rel(double got, double want, double rel, const std::string& what) {
  EXPECT_LE(std::fabs(got - want), rel * std::max(1.0, std::fabs(want))) << what << ": got " << got << ", nibabel " << want;
}

// Compares what we read with what nibabel read (expected.json entry).
void compare_with_nibabel(const std::string& path, const json& e, bool voxels) {
  SCOPED_TRACE(path);
  NiftiImage img = read_nifti(path);
  for (int a = 0; a < 3; ++a) EXPECT_EQ(img.volume.dims[size_t(a)], e["shape"][size_t(a)].get<int64_t>());
  for (int a = 0; a < 3; ++a) expect_rel(std::fabs(img.info.geom.pixdim[a + 1]), e["zooms"][size_t(a)], 1e-6, "zoom");
  // nibabel centres pixdim-only affines, so those are not compared. From a qform, the two libraries differ
  // by up to ~1e-3 near 180-degree rotations: the quaternion is stored in float32, and for a ~ 0 nibabel
  // takes a = sqrt(1 - b^2 - c^2 - d^2) of the rounded values while nifti_clib sets a = 0 and renormalises.
  const double tol = img.info.geom.sform_code > 0 ? 1e-5 : 2e-3;
  if (img.info.geom.qform_code > 0 || img.info.geom.sform_code > 0)
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c)
        EXPECT_NEAR(img.volume.affine[size_t(r)][size_t(c)], e["affine"][size_t(r)][size_t(c)].get<double>(), tol) << "affine[" << r << "][" << c << "]";
  EXPECT_EQ(orientation_code(img.volume.affine), e["orientation"].get<std::string>());
  EXPECT_EQ(std::string(nifti_type_name(img.info.datatype)), e["datatype"].get<std::string>());
  expect_rel(img.info.stats.min, e["min"], 1e-6, "min");
  expect_rel(img.info.stats.max, e["max"], 1e-6, "max");
  expect_rel(img.info.stats.mean, e["mean"], 1e-6, "mean");
  expect_rel(img.info.stats.sum, e["sum"], 1e-6, "sum");
  if (voxels) {
    const auto& v = e["voxels_xfastest"];
    const auto& d = img.volume.dims;
    int64_t k = 0;
    for (int64_t z = 0; z < d[2]; ++z)
      for (int64_t y = 0; y < d[1]; ++y)
        for (int64_t x = 0; x < d[0]; ++x, ++k)
          ASSERT_EQ(img.volume.at(x, y, z), float(v[size_t(k)].get<double>())) << "voxel " << x << "," << y << "," << z;
  }
  if (e.contains("labels")) EXPECT_EQ(img.info.stats.labels, e["labels"].get<std::vector<int64_t>>());
  if (e.contains("samples"))
    for (const auto& s : e["samples"]) {
      double want = s[3].get<double>();
      ASSERT_NEAR(img.volume.at(s[0].get<int64_t>(), s[1].get<int64_t>(), s[2].get<int64_t>()), want,
                  1e-6 * std::max(1.0, std::fabs(want)))
          << "voxel " << s.dump();
    }
}

std::vector<char> read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void write_bytes(const std::string& p, const std::vector<char>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(b.data(), std::streamsize(b.size()));
}
template <class T>
void poke(std::vector<char>& b, size_t off, T v) { std::memcpy(b.data() + off, &v, sizeof v); }

Volume ramp_volume(Dims3 d) {
  Volume v(d);
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = float(i % 97) - 20.f;
  v.set_diagonal_affine({1.5, 2.0, 3.0}, {-10, 5, 7});
  return v;
}

// A good uncompressed float32 NIfTI-1 file of 6x5x4 voxels; tests patch its bytes.
std::string good_file(const std::string& dir) {
  std::string p = dir + "/good.nii";
  write_nifti(p, ramp_volume({6, 5, 4}), kFloat32);
  return p;
}

// Expects read_nifti to refuse `path` with a message naming the file and containing `field`.
void expect_refused(const std::string& path, const std::string& field) {
  try {
    read_nifti(path);
    ADD_FAILURE() << path << " was accepted; expected a refusal mentioning '" << field << "'";
  } catch (const DataError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(fs::path(path).filename().string()), std::string::npos) << "message does not name the file: " << m;
    EXPECT_NE(m.find(field), std::string::npos) << "message does not mention '" << field << "': " << m;
  }
}

std::string patched(const std::string& dir, const std::string& name, const std::function<void(std::vector<char>&)>& f) {
  auto b = read_bytes(good_file(dir));
  f(b);
  std::string p = dir + "/" + name;
  write_bytes(p, b);
  return p;
}

}  // namespace

TEST(NiftiRead, FixturesMatchNibabel) {
  json exp = load_json(kFixtures + "expected.json");
  ASSERT_GE(exp.size(), 15u);
  for (auto& [name, e] : exp.items()) compare_with_nibabel(kFixtures + name, e, true);
}

TEST(NiftiRead, FixturesCoverByteOrdersVersionsAndLayouts) {
  EXPECT_TRUE(read_nifti_header(kFixtures + "be_int16_scaled.nii").byte_swapped);
  EXPECT_TRUE(read_nifti_header(kFixtures + "be_int16_scaled.nii").scaled);
  NiftiInfo n2 = read_nifti_header(kFixtures + "n2_be_float64_sform.nii.gz");
  EXPECT_EQ(n2.version, 2);
  EXPECT_TRUE(n2.byte_swapped);
  EXPECT_EQ(n2.geom.sform_code, 2);
  EXPECT_EQ(read_nifti_header(kFixtures + "qform_only.nii").geom.sform_code, 0);
  EXPECT_TRUE(read_nifti_header(kFixtures + "pair_uint16.hdr").pair);
  EXPECT_EQ(read_nifti_header(kFixtures + "n2_pair_int32.hdr.gz").version, 2);
  // The .img of a pair leads to the same image.
  EXPECT_EQ(read_nifti(kFixtures + "pair_uint16.img").volume.data, read_nifti(kFixtures + "pair_uint16.hdr").volume.data);
}

TEST(NiftiRead, RealFilesFromOtherSoftwareMatchNibabel) {
  json exp = load_json(kFixtures + "expected_nibabel_data.json");
  int checked = 0;
  for (auto& [name, e] : exp.items()) {
    if (!fs::exists(kNibabelData + name)) continue;
    compare_with_nibabel(kNibabelData + name, e, false);
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "python3-nibabel's test data is not installed";
  EXPECT_EQ(checked, 3);
}

TEST(NiftiWrite, RoundTripOfEveryDatatypeAndFormat) {
  std::string dir = test::temp_dir("nifti_roundtrip");
  Volume v = ramp_volume({7, 6, 5});
  v.affine[0][1] = 0.3;  // a slightly oblique affine survives too
  v.spacing = affine_spacing(v.affine);
  const int types[] = {kInt8, kUInt8, kInt16, kUInt16, kInt32, kUInt32, kInt64, kUInt64, kFloat32, kFloat64};
  for (int dt : types) {
    Volume w = v;
    if (!(dt == kInt8 || dt == kInt16 || dt == kInt32 || dt == kInt64 || dt == kFloat32 || dt == kFloat64))
      for (float& x : w.data) x += 20.f;  // unsigned: shift to non-negative
    for (const char* ext : {".nii", ".nii.gz", ".hdr", ".hdr.gz"}) {
      std::string p = dir + "/rt_" + nifti_type_name(dt) + ext;
      SCOPED_TRACE(p);
      write_nifti(p, w, dt);
      NiftiImage r = read_nifti(p);
      EXPECT_EQ(r.info.datatype, dt);
      EXPECT_EQ(r.volume.dims, w.dims);
      EXPECT_EQ(r.volume.data, w.data);
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) EXPECT_NEAR(r.volume.affine[size_t(i)][size_t(j)], w.affine[size_t(i)][size_t(j)], 1e-5);
    }
  }
}

TEST(NiftiWrite, DimsBeyondInt16AreWrittenAsNifti2) {
  std::string dir = test::temp_dir("nifti_wide");
  Volume v({40000, 2, 1});
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = float(i % 251);
  for (const char* ext : {".nii", ".hdr"}) {
    std::string p = dir + "/wide" + ext;
    write_nifti(p, v, kUInt8);
    NiftiImage r = read_nifti(p);
    EXPECT_EQ(r.info.version, 2);
    EXPECT_EQ(r.volume.dims, v.dims);
    EXPECT_EQ(r.volume.data, v.data);
  }
}

TEST(NiftiWrite, AFullDiskLeavesThePreviousFileIntact) {
  // Each format: a good small file, then a bigger one written while files may not exceed 1 KiB. The write
  // must fail naming the file, the old file must still read the same, and no temporary may be left.
  std::string dir = test::temp_dir("write_full");
  Volume small = ramp_volume({6, 5, 4}), big = ramp_volume({40, 30, 20});
  for (float& v : big.data) v = float(std::rand());  // incompressible, so .nii.gz exceeds the limit too
  for (const char* name : {"a.nii", "a.nii.gz", "a.hdr"}) {
    SCOPED_TRACE(name);
    std::string p = dir + "/" + name;
    write_nifti(p, small, kFloat32);
    std::string err = hdssl::test::error_with_file_size_limit(1024, [&] { write_nifti(p, big, kFloat32); });
    EXPECT_NE(err.find(p + ": writing failed"), std::string::npos) << err;
    NiftiImage back = read_nifti(p);
    EXPECT_EQ(back.volume.data, small.data);
    size_t files = 0;
    for (auto& e : fs::directory_iterator(dir))
      files += e.path().filename().string().find(".tmp-") != std::string::npos;
    EXPECT_EQ(files, 0u) << "temporary files left behind";
  }
  // Without a limit the same write goes through and replaces the file.
  write_nifti(dir + "/a.nii.gz", big, kFloat32);
  EXPECT_EQ(read_nifti(dir + "/a.nii.gz").volume.data, big.data);
}

TEST(NiftiWrite, LabelMapsInTheOriginalGridKeepQformAndSform) {
  std::string dir = test::temp_dir("nifti_labels");
  NiftiImage src = read_nifti(kFixtures + "n2_be_float64_sform.nii.gz");
  Volume lab(src.volume.dims);
  for (size_t i = 0; i < lab.data.size(); ++i) lab.data[i] = float(i % 14);
  write_label_nifti(dir + "/lab.nii.gz", lab, &src.info.geom);
  NiftiImage r = read_nifti(dir + "/lab.nii.gz");
  EXPECT_EQ(r.info.datatype, kUInt8);
  EXPECT_EQ(r.volume.data, lab.data);
  EXPECT_EQ(r.info.geom.sform_code, src.info.geom.sform_code);
  EXPECT_EQ(r.info.geom.qform_code, src.info.geom.qform_code);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) EXPECT_NEAR(r.volume.affine[size_t(i)][size_t(j)], src.volume.affine[size_t(i)][size_t(j)], 1e-5);
  lab.data[3] = 300;  // more than 255 labels: uint16
  write_label_nifti(dir + "/lab16.nii", lab, &src.info.geom);
  EXPECT_EQ(read_nifti(dir + "/lab16.nii").info.datatype, kUInt16);
  lab.data[3] = 2.5f;
  EXPECT_THROW(write_label_nifti(dir + "/bad.nii", lab), DataError);
  Volume big = ramp_volume({3, 3, 3});
  big.data[0] = 300;
  EXPECT_THROW(write_nifti(dir + "/bad8.nii", big, kUInt8), DataError) << "out-of-range values must be refused";
}

// ---- one test per class of bad input ----

TEST(NiftiBad, EmptyFile) {
  std::string dir = test::temp_dir("bad_empty");
  write_bytes(dir + "/empty.nii", {});
  expect_refused(dir + "/empty.nii", "empty file");
}

TEST(NiftiBad, GarbageFile) {
  std::string dir = test::temp_dir("bad_garbage");
  std::vector<char> g(1000);
  for (size_t i = 0; i < g.size(); ++i) g[i] = char((i * 7919 + 13) & 0xff);
  write_bytes(dir + "/garbage.nii", g);
  expect_refused(dir + "/garbage.nii", "sizeof_hdr");
}

TEST(NiftiBad, WrongMagic) {
  std::string dir = test::temp_dir("bad_magic");
  expect_refused(patched(dir, "magic.nii", [](auto& b) { std::memcpy(b.data() + offsetof(nifti_1_header, magic), "abc", 4); }), "magic");
}

TEST(NiftiBad, WrongHeaderSize) {
  std::string dir = test::temp_dir("bad_hdrsize");
  expect_refused(patched(dir, "hsize.nii", [](auto& b) { poke<int32_t>(b, 0, 352); }), "sizeof_hdr");
}

TEST(NiftiBad, TruncatedHeader) {
  std::string dir = test::temp_dir("bad_trunc_hdr");
  expect_refused(patched(dir, "thdr.nii", [](auto& b) { b.resize(200); }), "header truncated");
}

TEST(NiftiBad, TruncatedData) {
  std::string dir = test::temp_dir("bad_trunc_data");
  expect_refused(patched(dir, "tdata.nii", [](auto& b) { b.resize(b.size() - 10); }), "truncated data");
}

TEST(NiftiBad, CorruptGzip) {
  std::string dir = test::temp_dir("bad_gzip");
  write_nifti(dir + "/g.nii.gz", ramp_volume({20, 20, 20}), kFloat32);
  auto b = read_bytes(dir + "/g.nii.gz");
  for (size_t i = b.size() / 3; i < b.size() / 3 + 40; ++i) b[i] = char(b[i] ^ 0x5a);
  write_bytes(dir + "/corrupt.nii.gz", b);
  expect_refused(dir + "/corrupt.nii.gz", "gzip");
}

TEST(NiftiBad, TruncatedGzip) {
  std::string dir = test::temp_dir("bad_gzip_trunc");
  write_nifti(dir + "/g.nii.gz", ramp_volume({20, 20, 20}), kFloat32);
  auto b = read_bytes(dir + "/g.nii.gz");
  b.resize(b.size() / 2);
  write_bytes(dir + "/half.nii.gz", b);
  expect_refused(dir + "/half.nii.gz", "truncated");
}

TEST(NiftiBad, ZeroOrNegativeDims) {
  std::string dir = test::temp_dir("bad_dims");
  expect_refused(patched(dir, "zero.nii", [](auto& b) { poke<int16_t>(b, offsetof(nifti_1_header, dim) + 2 * 2, 0); }), "dim[2] is 0");
  expect_refused(patched(dir, "neg.nii", [](auto& b) { poke<int16_t>(b, offsetof(nifti_1_header, dim) + 2 * 3, -4); }), "dim[3] is -4");
  expect_refused(patched(dir, "dim0.nii", [](auto& b) { poke<int16_t>(b, offsetof(nifti_1_header, dim), 0); }), "dim[0]");
}

TEST(NiftiBad, SizesThatOverflowOrExceedTheFile) {
  std::string dir = test::temp_dir("bad_sizes");
  // NIfTI-2 dims are 64-bit: 2^31 x 2^31 x 2^31 overflows.
  Volume v = ramp_volume({4, 4, 4});
  write_nifti(dir + "/n1.nii", v, kFloat32);
  nifti_2_header h2{};
  {
    auto b = read_bytes(dir + "/n1.nii");
    nifti_1_header h1;
    std::memcpy(&h1, b.data(), sizeof h1);
    h2.sizeof_hdr = 540;
    std::memcpy(h2.magic, "n+2\0\r\n\032\n", 8);
    h2.datatype = h1.datatype;
    h2.bitpix = h1.bitpix;
    for (int i = 0; i < 8; ++i) { h2.dim[i] = h1.dim[i]; h2.pixdim[i] = h1.pixdim[i]; }
    h2.vox_offset = 544;
    h2.scl_slope = 1;
    h2.dim[1] = h2.dim[2] = h2.dim[3] = int64_t(1) << 31;
    std::vector<char> out(544 + 256, 0);
    std::memcpy(out.data(), &h2, sizeof h2);
    write_bytes(dir + "/overflow.nii", out);
  }
  expect_refused(dir + "/overflow.nii", "overflows");
  expect_refused(patched(dir, "exceed.nii", [](auto& b) { poke<int16_t>(b, offsetof(nifti_1_header, dim) + 2, 30000); }), "truncated data");
  // The same in a gzip file: refused before allocating, from deflate's maximum ratio.
  {
    auto b = read_bytes(good_file(dir));
    poke<int16_t>(b, offsetof(nifti_1_header, dim) + 2, 3000);
    poke<int16_t>(b, offsetof(nifti_1_header, dim) + 4, 3000);
    poke<int16_t>(b, offsetof(nifti_1_header, dim) + 6, 3000);
    gzFile g = gzopen((dir + "/exceed.nii.gz").c_str(), "wb");
    gzwrite(g, b.data(), unsigned(b.size()));
    gzclose(g);
  }
  expect_refused(dir + "/exceed.nii.gz", "gzip");
}

TEST(NiftiBad, VoxOffsetOutsideTheFile) {
  std::string dir = test::temp_dir("bad_voxoffset");
  expect_refused(patched(dir, "far.nii", [](auto& b) { poke<float>(b, offsetof(nifti_1_header, vox_offset), 1e7f); }), "vox_offset");
  expect_refused(patched(dir, "inside.nii", [](auto& b) { poke<float>(b, offsetof(nifti_1_header, vox_offset), 100.f); }), "vox_offset");
  expect_refused(patched(dir, "neg.nii", [](auto& b) { poke<float>(b, offsetof(nifti_1_header, vox_offset), -8.f); }), "vox_offset");
}

TEST(NiftiBad, UnknownComplexAndRgbDatatypes) {
  std::string dir = test::temp_dir("bad_datatype");
  expect_refused(patched(dir, "unknown.nii", [](auto& b) { poke<int16_t>(b, offsetof(nifti_1_header, datatype), 9999); }), "unknown datatype");
  expect_refused(patched(dir, "complex.nii", [](auto& b) { poke<int16_t>(b, offsetof(nifti_1_header, datatype), 32); }), "complex");
  expect_refused(patched(dir, "rgb.nii", [](auto& b) { poke<int16_t>(b, offsetof(nifti_1_header, datatype), 128); }), "RGB");
}

TEST(NiftiBad, MissingImgOfAPair) {
  std::string dir = test::temp_dir("bad_pair");
  write_nifti(dir + "/p.hdr", ramp_volume({4, 4, 4}), kFloat32);
  ASSERT_TRUE(fs::exists(dir + "/p.img"));
  fs::remove(dir + "/p.img");
  expect_refused(dir + "/p.hdr", "missing");
}

TEST(NiftiBad, NonFiniteVoxelsAreCounted) {
  std::string dir = test::temp_dir("bad_nan");
  Volume v = ramp_volume({5, 5, 5});
  v.data[3] = std::numeric_limits<float>::quiet_NaN();
  v.data[50] = std::numeric_limits<float>::quiet_NaN();
  v.data[70] = std::numeric_limits<float>::infinity();
  write_nifti(dir + "/nan.nii", v, kFloat32);
  expect_refused(dir + "/nan.nii", "3 of 125 voxels are not finite");
}

TEST(NiftiBad, NonFiniteOrZeroGeometry) {
  std::string dir = test::temp_dir("bad_geometry");
  auto no_forms = [](std::vector<char>& b) {
    poke<int16_t>(b, offsetof(nifti_1_header, qform_code), 0);
    poke<int16_t>(b, offsetof(nifti_1_header, sform_code), 0);
  };
  expect_refused(patched(dir, "pixnan.nii", [&](auto& b) { no_forms(b); poke<float>(b, offsetof(nifti_1_header, pixdim) + 8, NAN); }), "pixdim[2]");
  expect_refused(patched(dir, "pix0.nii", [&](auto& b) { no_forms(b); poke<float>(b, offsetof(nifti_1_header, pixdim) + 4, 0.f); }), "pixdim[1]");
  expect_refused(patched(dir, "srowinf.nii", [](auto& b) { poke<float>(b, offsetof(nifti_1_header, srow_y) + 4, INFINITY); }), "srow_y");
  expect_refused(patched(dir, "srow0.nii", [](auto& b) {
    for (size_t k = 0; k < 4; ++k) poke<float>(b, offsetof(nifti_1_header, srow_x) + 4 * k, 0.f);
  }), "singular");
  expect_refused(patched(dir, "quatnan.nii", [](auto& b) {
    poke<int16_t>(b, offsetof(nifti_1_header, sform_code), 0);
    poke<float>(b, offsetof(nifti_1_header, quatern_c), NAN);
  }), "qform");
  expect_refused(patched(dir, "inter.nii", [](auto& b) {
    poke<float>(b, offsetof(nifti_1_header, scl_slope), 2.f);
    poke<float>(b, offsetof(nifti_1_header, scl_inter), NAN);
  }), "scl_inter");
}

TEST(NiftiBad, NotOne3DVolume) {
  std::string dir = test::temp_dir("bad_4d");
  expect_refused(patched(dir, "fourd.nii", [](auto& b) {
    poke<int16_t>(b, offsetof(nifti_1_header, dim), 4);
    poke<int16_t>(b, offsetof(nifti_1_header, dim) + 8, 2);
    poke<int16_t>(b, offsetof(nifti_1_header, dim) + 6, 2);  // 6x5x2x2: same byte count, still refused
  }), "not one 3D volume");
  expect_refused(patched(dir, "twod.nii", [](auto& b) { poke<int16_t>(b, offsetof(nifti_1_header, dim), 2); }), "not a 3D volume");
  // A 4th dimension of size 1 is fine.
  std::string ok = patched(dir, "fourd1.nii", [](auto& b) {
    poke<int16_t>(b, offsetof(nifti_1_header, dim), 4);
    poke<int16_t>(b, offsetof(nifti_1_header, dim) + 8, 1);
  });
  EXPECT_EQ(read_nifti(ok).volume.dims, (Dims3{6, 5, 4}));
}

TEST(NiftiBad, ScaledFilesWithZeroOrNaNSlopeAreUnscaled) {
  // The standard: slope 0 = unscaled. nibabel writes NaN, NaN for "unset" and reads it as unscaled.
  std::string dir = test::temp_dir("slope");
  NiftiImage ref = read_nifti(good_file(dir));
  for (float s : {0.f, NAN}) {
    NiftiImage r = read_nifti(patched(dir, "slope.nii", [&](auto& b) {
      poke<float>(b, offsetof(nifti_1_header, scl_slope), s);
      poke<float>(b, offsetof(nifti_1_header, scl_inter), std::isnan(s) ? NAN : 5.f);
    }));
    EXPECT_FALSE(r.info.scaled);
    EXPECT_EQ(r.volume.data, ref.volume.data);
  }
}

TEST(NiftiBad, InfiniteScalingIsRefused) {
  std::string dir = test::temp_dir("bad_scaling");
  for (float s : {INFINITY, -INFINITY})
    expect_refused(
        patched(dir, "slopeinf.nii", [&](auto& b) { poke<float>(b, offsetof(nifti_1_header, scl_slope), s); }),
        "scl_slope");
  expect_refused(patched(dir, "interinf.nii",
                         [](auto& b) {
                           poke<float>(b, offsetof(nifti_1_header, scl_slope), 0.f);
                           poke<float>(b, offsetof(nifti_1_header, scl_inter), INFINITY);
                         }),
                 "scl_inter");
}

TEST(NiftiBad, SpacingFromEachGeometrySourceMustBePlausible) {
  // The good file has sform and qform: each source's voxel size is checked, plus pixdim which outputs copy.
  std::string dir = test::temp_dir("bad_spacing");
  auto only_qform = [](std::vector<char>& b) { poke<int16_t>(b, offsetof(nifti_1_header, sform_code), 0); };
  auto no_forms = [](std::vector<char>& b) {
    poke<int16_t>(b, offsetof(nifti_1_header, qform_code), 0);
    poke<int16_t>(b, offsetof(nifti_1_header, sform_code), 0);
  };
  // pixdim 0 while the sform supplies the geometry (inspect used to report spacing 0 with "ok": true).
  expect_refused(
      patched(dir, "sform_pix0.nii", [](auto& b) { poke<float>(b, offsetof(nifti_1_header, pixdim) + 4, 0.f); }),
      "pixdim[1]");
  expect_refused(
      patched(dir, "sform_tiny.nii", [](auto& b) { poke<float>(b, offsetof(nifti_1_header, srow_x), 1e-5f); }),
      "sform: voxel spacing");
  expect_refused(
      patched(dir, "sform_huge.nii", [](auto& b) { poke<float>(b, offsetof(nifti_1_header, srow_z) + 8, 1e5f); }),
      "outside");
  expect_refused(patched(dir, "qform_tiny.nii",
                         [&](auto& b) {
                           only_qform(b);
                           poke<float>(b, offsetof(nifti_1_header, pixdim) + 8, 1e-6f);
                         }),
                 "qform: voxel spacing");
  expect_refused(patched(dir, "pix_huge.nii",
                         [&](auto& b) {
                           no_forms(b);
                           poke<float>(b, offsetof(nifti_1_header, pixdim) + 12, 1e6f);
                         }),
                 "pixdim: voxel spacing");
  expect_refused(patched(dir, "qform_quat.nii",
                         [&](auto& b) {
                           only_qform(b);
                           poke<float>(b, offsetof(nifti_1_header, quatern_b), 1.5f);
                         }),
                 "quaternion");
  // A negative pixdim is a size of |pixdim| (the sign lives in qfac / the affine), as in nibabel.
  NiftiImage neg = read_nifti(patched(dir, "pix_neg.nii", [&](auto& b) {
    no_forms(b);
    poke<float>(b, offsetof(nifti_1_header, pixdim) + 4, -1.5f);
  }));
  EXPECT_DOUBLE_EQ(neg.volume.spacing[0], 1.5);
}

// The good file with `n` extensions of the given sizes between the header and the voxels.
std::vector<char> with_extensions(const std::vector<char>& good, const std::vector<int32_t>& esizes, int32_t room) {
  std::vector<char> b(good.begin(), good.begin() + 348);
  b.insert(b.end(), {1, 0, 0, 0});
  for (int32_t e : esizes) {
    std::vector<char> ext(size_t(std::max(e, 8)), 'x');
    std::memcpy(ext.data(), &e, 4);
    int32_t code = 6;  // NIFTI_ECODE_COMMENT
    std::memcpy(ext.data() + 4, &code, 4);
    b.insert(b.end(), ext.begin(), ext.end());
  }
  b.resize(size_t(352 + room), 0);
  poke<float>(b, offsetof(nifti_1_header, vox_offset), float(352 + room));
  b.insert(b.end(), good.begin() + 352, good.end());
  return b;
}

TEST(NiftiBad, ExtensionsMustEndInsideTheirRoom) {
  std::string dir = test::temp_dir("bad_extensions");
  auto good = read_bytes(good_file(dir));
  NiftiImage ref = read_nifti(dir + "/good.nii");
  write_bytes(dir + "/ext_ok.nii", with_extensions(good, {32, 16}, 48));
  EXPECT_EQ(read_nifti(dir + "/ext_ok.nii").volume.data, ref.volume.data);
  write_bytes(dir + "/ext_past.nii", with_extensions(good, {32, 48}, 64));
  expect_refused(dir + "/ext_past.nii", "extension 2 at byte 384: esize 48 runs past vox_offset 416");
  write_bytes(dir + "/ext_small.nii", with_extensions(good, {4}, 16));
  expect_refused(dir + "/ext_small.nii", "esize 4 is smaller");
  write_bytes(dir + "/ext_neg.nii", with_extensions(good, {-64}, 16));
  expect_refused(dir + "/ext_neg.nii", "esize -64");
  // In a pair, extensions live in the .hdr and must end with it.
  write_nifti(dir + "/p.hdr", ramp_volume({4, 4, 4}), kFloat32);
  auto hdr = read_bytes(dir + "/p.hdr");
  hdr.resize(348);
  hdr.insert(hdr.end(), {1, 0, 0, 0});
  int32_t e[2] = {4096, 6};
  hdr.insert(hdr.end(), reinterpret_cast<char*>(e), reinterpret_cast<char*>(e) + 8);
  hdr.resize(hdr.size() + 24, 'x');
  write_bytes(dir + "/p.hdr", hdr);
  expect_refused(dir + "/p.hdr", "runs past the end of the header file");
}

TEST(NiftiFolder, BadFilesAreReportedAndSkipped) {
  std::string dir = test::temp_dir("folder_mixed");
  fs::create_directories(dir + "/sub");
  Volume v = ramp_volume({40, 40, 20});
  for (float& x : v.data) x = x * 10;  // some voxels above the CT crop threshold
  write_nifti(dir + "/sub/a.nii.gz", v, kInt16);
  write_bytes(dir + "/b.nii", {});
  write_bytes(dir + "/c.nii.gz", {'x', 'y', 'z'});
  PreprocessConfig cfg = PreprocessConfig::ct();
  cfg.min_size = {16, 16, 8};
  LoadReport rep;
  auto vols = load_folder(dir, cfg, "", &rep, 2, false);
  ASSERT_EQ(vols.size(), 1u);
  EXPECT_EQ(rep.loaded, std::vector<std::string>{dir + "/sub/a.nii.gz"});
  ASSERT_EQ(rep.refused.size(), 2u);
  EXPECT_NE(rep.refused[0].second.find("empty file"), std::string::npos);
  EXPECT_NE(rep.refused[1].second.find("c.nii.gz"), std::string::npos);
  fs::remove(dir + "/sub/a.nii.gz");
  try {
    load_folder(dir, cfg, "", nullptr, 1, false);
    ADD_FAILURE() << "a folder without usable files must be an error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("none of the 2"), std::string::npos) << e.what();
  }
}

TEST(NiftiBad, RandomHeaderCorruptionIsRefusedOrReadNeverCrashes) {
  // 1500 files with 1-4 random header bytes changed (plain and gzip): each either reads (with finite values
  // and consistent sizes) or is refused with a DataError; nothing else may happen.
  std::string dir = test::temp_dir("bad_fuzz");
  auto good = read_bytes(good_file(dir));
  write_nifti(dir + "/good.nii.gz", ramp_volume({6, 5, 4}), kFloat32);
  auto good_gz = read_bytes(dir + "/good.nii.gz");
  hdssl::Rng rng(77);
  int refused = 0, read = 0;
  for (int t = 0; t < 1500; ++t) {
    bool gz = t % 3 == 0;
    auto b = gz ? good_gz : good;
    int flips = int(rng.randint(1, 5));
    size_t limit = gz ? b.size() : 352;
    for (int f = 0; f < flips; ++f) b[size_t(rng.randint(0, int64_t(limit)))] = char(rng.next_u32() & 0xff);
    std::string p = dir + (gz ? "/fuzz.nii.gz" : "/fuzz.nii");
    write_bytes(p, b);
    try {
      NiftiImage img = read_nifti(p);
      ASSERT_EQ(int64_t(img.volume.data.size()), img.volume.numel());
      for (float v : img.volume.data) ASSERT_TRUE(std::isfinite(v));
      ++read;
    } catch (const DataError&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 150);
  EXPECT_GT(read, 150);
}
