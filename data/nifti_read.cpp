// NIfTI reader with its own validation of the raw header and raw voxel bytes.
//
// Trick: zlib's gzopen reads plain files transparently, so one code path streams .nii and .nii.gz.
// Sizes are checked against the file before the voxel buffer is allocated: for plain files against the
// file size, for gzip files against the trailer's ISIZE and deflate's maximum ratio (1032:1).
#include <nifti/nifti2_io.h>
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <set>
#include <sstream>

#include "data/nifti.h"

namespace hdssl::data {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& msg) { throw DataError(path + ": " + msg); }

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

struct FileFacts {
  bool exists = false;
  int64_t size = 0;
  bool gzip = false;
  uint32_t gz_isize = 0;  // uncompressed size mod 2^32 from the gzip trailer
};

FileFacts file_facts(const std::string& path) {
  FileFacts f;
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return f;
  f.exists = true;
  f.size = int64_t(st.st_size);
  std::unique_ptr<FILE, int (*)(FILE*)> fp(fopen(path.c_str(), "rb"), fclose);
  if (!fp) return f;
  unsigned char m[2];
  if (f.size >= 2 && fread(m, 1, 2, fp.get()) == 2 && m[0] == 0x1f && m[1] == 0x8b) {
    f.gzip = true;
    unsigned char t[4];
    if (f.size >= 18 && fseek(fp.get(), -4, SEEK_END) == 0 && fread(t, 1, 4, fp.get()) == 4)
      f.gz_isize = uint32_t(t[0]) | uint32_t(t[1]) << 8 | uint32_t(t[2]) << 16 | uint32_t(t[3]) << 24;
  }
  return f;
}

// A gzip-or-plain input stream that reports zlib errors with the file name.
class Stream {
 public:
  Stream(const std::string& path) : path_(path) {
    gz_ = gzopen(path.c_str(), "rb");
    if (!gz_) fail(path, "cannot open file");
    gzbuffer(gz_, 1 << 17);
  }
  ~Stream() { if (gz_) gzclose(gz_); }
  // Reads up to n bytes; returns how many. Throws on a zlib error (corrupt gzip).
  int64_t read(void* buf, int64_t n) {
    int64_t got = 0;
    char* p = static_cast<char*>(buf);
    while (got < n) {
      unsigned chunk = unsigned(std::min<int64_t>(n - got, 1 << 30));
      int r = gzread(gz_, p + got, chunk);
      if (r < 0) error("reading");
      if (r == 0) {
        int err;
        gzerror(gz_, &err);
        if (err != Z_OK) error("reading");
        break;
      }
      got += r;
    }
    return got;
  }
  void skip(int64_t n, const char* what) {
    std::vector<char> tmp(size_t(std::min<int64_t>(n, 1 << 16)));
    while (n > 0) {
      int64_t k = read(tmp.data(), std::min<int64_t>(n, int64_t(tmp.size())));
      if (k == 0) fail(path_, std::string(what) + ": file ends before vox_offset");
      n -= k;
    }
  }
  // Reads to the end so that gzip's CRC and length are checked.
  void drain() {
    char tmp[1 << 14];
    while (read(tmp, sizeof tmp) > 0) {}
  }

 private:
  [[noreturn]] void error(const char* when) {
    int err = 0;
    const char* msg = gzerror(gz_, &err);
    std::string m = msg ? msg : "unknown error";
    if (err == Z_BUF_ERROR || m.find("unexpected end") != std::string::npos)
      fail(path_, std::string("truncated gzip stream (") + m + ")");
    fail(path_, std::string("corrupt gzip data while ") + when + " (" + m + ")");
  }
  std::string path_;
  gzFile gz_ = nullptr;
};

// The fields we use, from either header version, in native byte order.
struct RawHeader {
  int version = 1;
  bool swapped = false;
  char magic[8] = {};
  int datatype = 0;
  int64_t dim[8] = {};
  double pixdim[8] = {};
  int64_t vox_offset = 0;
  double vox_offset_f = 0;  // NIfTI-1 stores it as float
  double scl_slope = 0, scl_inter = 0;
  int qform_code = 0, sform_code = 0;
  double quatern[3] = {}, qoffset[3] = {};
  double srow[3][4] = {};
  int xyzt_units = 0;
};

// The fields NIfTI-1 and NIfTI-2 share by name (with wider types in NIfTI-2), into our RawHeader.
template <class NiftiHeader>
void copy_shared_fields(const NiftiHeader& n, RawHeader& h) {
  h.datatype = n.datatype;
  for (int i = 0; i < 8; ++i) { h.dim[i] = n.dim[i]; h.pixdim[i] = n.pixdim[i]; }
  h.vox_offset_f = double(n.vox_offset);
  h.scl_slope = n.scl_slope; h.scl_inter = n.scl_inter;
  h.qform_code = n.qform_code; h.sform_code = n.sform_code;
  h.quatern[0] = n.quatern_b; h.quatern[1] = n.quatern_c; h.quatern[2] = n.quatern_d;
  h.qoffset[0] = n.qoffset_x; h.qoffset[1] = n.qoffset_y; h.qoffset[2] = n.qoffset_z;
  for (int j = 0; j < 4; ++j) { h.srow[0][j] = n.srow_x[j]; h.srow[1][j] = n.srow_y[j]; h.srow[2][j] = n.srow_z[j]; }
  h.xyzt_units = n.xyzt_units;
}

int32_t bswap32(int32_t v) { nifti_swap_4bytes(1, &v); return v; }

RawHeader parse_header(const std::string& path, Stream& in, int64_t file_size) {
  unsigned char buf[540];
  int64_t got = in.read(buf, 4);
  if (got == 0) fail(path, "empty file");
  if (got < 4) fail(path, "header truncated: only " + std::to_string(got) + " bytes");
  int32_t sz;
  std::memcpy(&sz, buf, 4);
  RawHeader h;
  if (sz == 348) h.version = 1;
  else if (sz == 540) h.version = 2;
  else if (bswap32(sz) == 348) { h.version = 1; h.swapped = true; }
  else if (bswap32(sz) == 540) { h.version = 2; h.swapped = true; }
  else fail(path, "sizeof_hdr is " + std::to_string(sz) + " (expected 348 or 540): not a NIfTI file");
  int64_t hsize = h.version == 1 ? 348 : 540;
  got = in.read(buf + 4, hsize - 4);
  if (got < hsize - 4) fail(path, "header truncated: " + std::to_string(got + 4) + " of " + std::to_string(hsize) + " bytes");

  if (h.version == 1) {
    nifti_1_header n;
    std::memcpy(&n, buf, sizeof n);
    if (h.swapped) nifti_swap_as_nifti1(&n);
    std::memcpy(h.magic, n.magic, 4);
    copy_shared_fields(n, h);
    if (std::memcmp(h.magic, "n+1", 4) != 0 && std::memcmp(h.magic, "ni1", 4) != 0)
      fail(path, "magic is not \"n+1\" or \"ni1\": not a NIfTI-1 file (Analyze 7.5 is not supported)");
  } else {
    nifti_2_header n;
    std::memcpy(&n, buf, sizeof n);
    if (h.swapped) nifti_swap_as_nifti2(&n);
    std::memcpy(h.magic, n.magic, 8);
    copy_shared_fields(n, h);
    h.vox_offset = n.vox_offset;  // NIfTI-2 stores it as an integer
    if ((std::memcmp(h.magic, "n+2", 4) != 0 && std::memcmp(h.magic, "ni2", 4) != 0) ||
        std::memcmp(h.magic + 4, "\r\n\032\n", 4) != 0)
      fail(path, "magic is not \"n+2\" or \"ni2\" with its \\r\\n\\032\\n signature: not a NIfTI-2 file");
  }
  (void)file_size;
  return h;
}

int type_size(int datatype) {
  switch (datatype) {
    case kUInt8: case kInt8: return 1;
    case kInt16: case kUInt16: return 2;
    case kInt32: case kUInt32: case kFloat32: return 4;
    case kInt64: case kUInt64: case kFloat64: return 8;
    default: return 0;
  }
}

std::string datatype_problem(int dt) {
  switch (dt) {
    case 32: case 1792: case 2048: return "complex datatype " + std::to_string(dt) + " is not supported";
    case 128: case 2304: return "RGB datatype " + std::to_string(dt) + " is not supported";
    case 1: return "binary datatype 1 is not supported";
    case 1536: return "float128 datatype 1536 is not supported";
    default: return "unknown datatype code " + std::to_string(dt);
  }
}

std::string dims_str(const int64_t* dim) {
  std::ostringstream os;
  os << "[";
  for (int i = 1; i <= std::clamp<int64_t>(dim[0], 0, 7); ++i) os << (i > 1 ? "," : "") << dim[i];
  return os.str() + "]";
}

std::string image_path_for(const std::string& hdr) {
  if (ends_with(hdr, ".hdr.gz")) return hdr.substr(0, hdr.size() - 7) + ".img.gz";
  if (ends_with(hdr, ".hdr")) return hdr.substr(0, hdr.size() - 4) + ".img";
  if (ends_with(hdr, ".HDR")) return hdr.substr(0, hdr.size() - 4) + ".IMG";
  return hdr;
}

// Extensions (NIfTI-1 section "extension"): after the header, 4 bytes whose first is non-zero when
// extensions follow, then a chain of (int32 esize, int32 ecode, esize - 8 bytes). We do not use their
// contents, but the chain must be well formed and end inside its room: before vox_offset in a .nii, before
// the end of the .hdr in a pair. Returns the number of extensions.
int check_extensions(const std::string& path, const RawHeader& h, bool single, int64_t hdr_file_size, bool hdr_gzip) {
  const int64_t hsize = h.version == 1 ? 348 : 540;
  // The room for extender + extensions; -1 = up to the end of a gzip'ed .hdr (size known only by reading).
  const int64_t end = single ? h.vox_offset : hdr_gzip ? -1 : hdr_file_size;
  if (end >= 0 && end < hsize + 4) return 0;  // no room for an extender: no extensions
  Stream in(path);
  in.skip(hsize, "header");
  unsigned char ext[4];
  if (in.read(ext, 4) < 4 || ext[0] == 0) return 0;
  const std::string room = single ? "vox_offset " + std::to_string(h.vox_offset) : "the end of the header file";
  int64_t pos = hsize + 4;
  int count = 0;
  while (end < 0 || pos + 8 <= end) {
    int32_t eh[2];
    int64_t got = in.read(eh, 8);
    if (got == 0 && end < 0) break;
    if (got < 8)
      fail(path, "extension " + std::to_string(count + 1) + " at byte " + std::to_string(pos) +
                     ": file ends inside its 8-byte size/code");
    if (h.swapped) nifti_swap_4bytes(2, eh);
    const int64_t esize = eh[0];
    const std::string where = "extension " + std::to_string(count + 1) + " at byte " + std::to_string(pos) +
                              ": esize " + std::to_string(esize);
    if (esize < 8) fail(path, where + " is smaller than its own 8-byte size/code");
    if (end >= 0 && pos + esize > end) fail(path, where + " runs past " + room);
    int64_t body = esize - 8, skipped = 0;
    std::vector<char> tmp(size_t(std::min<int64_t>(body, 1 << 16)));
    while (skipped < body) {
      int64_t k = in.read(tmp.data(), std::min<int64_t>(body - skipped, int64_t(tmp.size())));
      if (k == 0) fail(path, where + " runs past the end of the file");
      skipped += k;
    }
    pos += esize;
    ++count;
  }
  return count;
}

// Voxel sizes from any geometry source: finite and within [kMinSpacing, kMaxSpacing] (file units, mm in
// practice). Outside that range the resampling grid would collapse or explode.
constexpr double kMinSpacing = 1e-3, kMaxSpacing = 1e3;

struct Prepared {
  RawHeader h;
  NiftiInfo info;
  std::string data_path;
  int64_t nvox = 0, nbytes = 0;
};

// Validates everything that can be validated without the voxels; fills info (except stats).
Prepared prepare(const std::string& path_in) {
  std::string path = path_in;
  // An .img given directly: read its header.
  if (ends_with(path, ".img")) path = path.substr(0, path.size() - 4) + ".hdr";
  else if (ends_with(path, ".img.gz")) path = path.substr(0, path.size() - 7) + ".hdr.gz";
  FileFacts ff = file_facts(path);
  if (!ff.exists) fail(path_in, "no such file");
  if (ff.size == 0) fail(path, "empty file");

  Prepared p;
  {
    Stream in(path);
    p.h = parse_header(path, in, ff.size);
  }
  RawHeader& h = p.h;
  NiftiInfo& info = p.info;
  info.path = path_in;
  info.version = h.version;
  info.byte_swapped = h.swapped;
  bool single = h.magic[1] == '+';
  info.pair = !single;

  // Dimensions: one 3D volume (trailing dimensions of size 1 are fine).
  if (h.dim[0] < 1 || h.dim[0] > 7) fail(path, "dim[0] is " + std::to_string(h.dim[0]) + " (must be 1..7)");
  for (int i = 1; i <= h.dim[0]; ++i)
    if (h.dim[i] <= 0) fail(path, "dim[" + std::to_string(i) + "] is " + std::to_string(h.dim[i]) + " (must be positive)");
  if (h.dim[0] < 3) fail(path, "dim[0] is " + std::to_string(h.dim[0]) + ": not a 3D volume (dims " + dims_str(h.dim) + ")");
  for (int i = 4; i <= h.dim[0]; ++i)
    if (h.dim[i] != 1) fail(path, "dim[" + std::to_string(i) + "] is " + std::to_string(h.dim[i]) +
                                      ": not one 3D volume (dims " + dims_str(h.dim) + ")");
  int esize = type_size(h.datatype);
  if (esize == 0) fail(path, "datatype: " + datatype_problem(h.datatype));
  p.nvox = 1;
  for (int i = 1; i <= 3; ++i) {
    if (h.dim[i] > (int64_t(1) << 31) || __builtin_mul_overflow(p.nvox, h.dim[i], &p.nvox))
      fail(path, "dims " + dims_str(h.dim) + ": size overflows");
  }
  if (__builtin_mul_overflow(p.nvox, int64_t(esize), &p.nbytes) || p.nbytes > (int64_t(1) << 42))
    fail(path, "dims " + dims_str(h.dim) + ": size overflows");

  // Voxel offset.
  int64_t hsize = h.version == 1 ? 348 : 540;
  if (h.version == 1) {
    if (!std::isfinite(h.vox_offset_f) || h.vox_offset_f < 0 || h.vox_offset_f > 9e15 ||
        h.vox_offset_f != std::floor(h.vox_offset_f))
      fail(path, "vox_offset is " + std::to_string(h.vox_offset_f) + " (must be a non-negative integer)");
    h.vox_offset = int64_t(h.vox_offset_f);
  }
  if (h.vox_offset < 0) fail(path, "vox_offset is " + std::to_string(h.vox_offset) + " (negative)");
  if (single && h.vox_offset < hsize)
    fail(path, "vox_offset is " + std::to_string(h.vox_offset) + ", inside the " + std::to_string(hsize) + "-byte header");

  // Where the voxels are, and is there enough file for them?
  p.data_path = single ? path : image_path_for(path);
  FileFacts df = single ? ff : file_facts(p.data_path);
  if (!single && !df.exists) fail(path, "image file " + p.data_path + " of the .hdr/.img pair is missing");
  int64_t need = h.vox_offset + p.nbytes;
  if (!df.gzip) {
    if (h.vox_offset > df.size)
      fail(p.data_path, "vox_offset " + std::to_string(h.vox_offset) + " is beyond the end of the file (" + std::to_string(df.size) + " bytes)");
    if (need > df.size)
      fail(p.data_path, "truncated data: dims " + dims_str(h.dim) + " x " + std::to_string(esize) + " bytes need " +
                            std::to_string(need) + " bytes but the file has " + std::to_string(df.size));
  } else {
    if (need / 1032 > df.size + 1024)
      fail(p.data_path, "dims " + dims_str(h.dim) + " need " + std::to_string(need) + " bytes, more than a " +
                            std::to_string(df.size) + "-byte gzip file can hold");
    if (need < (int64_t(1) << 32) && int64_t(df.gz_isize) < need)
      fail(p.data_path, "truncated or corrupt gzip: its trailer says " + std::to_string(df.gz_isize) +
                            " uncompressed bytes, the header needs " + std::to_string(need));
  }

  check_extensions(path, h, single, ff.size, ff.gzip);

  // Scaling: slope 0 means unscaled (the standard), and so does NaN (nibabel writes NaN, NaN for "unset" and
  // reads it as unscaled). An infinite slope or intercept is refused, and so is a NaN intercept with a slope.
  info.datatype = h.datatype;
  if (std::isinf(h.scl_slope))
    fail(path, "scl_slope is " + std::to_string(h.scl_slope) + " (must be finite; 0 or NaN = unscaled)");
  if (std::isinf(h.scl_inter)) fail(path, "scl_inter is " + std::to_string(h.scl_inter) + " (must be finite)");
  if (!std::isnan(h.scl_slope) && h.scl_slope != 0) {
    if (std::isnan(h.scl_inter)) fail(path, "scl_inter is NaN while scl_slope is " + std::to_string(h.scl_slope));
    info.scl_slope = h.scl_slope;
    info.scl_inter = h.scl_inter;
    info.scaled = !(h.scl_slope == 1 && h.scl_inter == 0);
  }

  // Geometry: sform if its code > 0, else qform, else pixdim.
  NiftiGeometry& g = info.geom;
  for (int i = 0; i < 3; ++i) g.dims[i] = h.dim[i + 1];
  for (int i = 0; i < 4; ++i) g.pixdim[i] = h.pixdim[i];
  g.qform_code = h.qform_code;
  g.sform_code = h.sform_code;
  for (int i = 0; i < 3; ++i) { g.quatern[i] = h.quatern[i]; g.qoffset[i] = h.qoffset[i]; }
  for (int i = 0; i < 3; ++i) for (int j = 0; j < 4; ++j) g.srow[i][j] = h.srow[i][j];
  g.xyzt_units = h.xyzt_units;
  bool use_sform = h.sform_code > 0, use_qform = !use_sform && h.qform_code > 0;
  // pixdim[1..3] is checked even when the sform supplies the geometry: it is copied into every output
  // written in this grid, and other tools read it as the voxel size.
  for (int i = 1; i <= 3; ++i)
    if (!std::isfinite(h.pixdim[i]) || h.pixdim[i] == 0)
      fail(path, "pixdim[" + std::to_string(i) + "] is " + std::to_string(h.pixdim[i]) +
                     " (voxel size must be finite and non-zero)");
  Mat44 A = identity44();
  if (use_sform) {
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 4; ++j) {
        if (!std::isfinite(h.srow[i][j])) fail(path, "srow_" + std::string(1, "xyz"[i]) + " is not finite (sform_code " + std::to_string(h.sform_code) + ")");
        A[i][j] = h.srow[i][j];
      }
  } else if (use_qform) {
    for (int i = 0; i < 3; ++i)
      if (!std::isfinite(h.quatern[i]) || !std::isfinite(h.qoffset[i]))
        fail(path, "qform quaternion or offset is not finite (qform_code " + std::to_string(h.qform_code) + ")");
    // b, c, d are the vector part of a unit quaternion; a little over 1 is float32 rounding (nibabel allows 3 eps).
    double bcd = h.quatern[0] * h.quatern[0] + h.quatern[1] * h.quatern[1] + h.quatern[2] * h.quatern[2];
    if (bcd > 1 + 1e-6)
      fail(path, "qform quaternion: b^2 + c^2 + d^2 is " + std::to_string(bcd) + " (must be <= 1 for a rotation)");
    double qfac = h.pixdim[0] < 0 ? -1.0 : 1.0;
    nifti_dmat44 q = nifti_quatern_to_dmat44(h.quatern[0], h.quatern[1], h.quatern[2], h.qoffset[0], h.qoffset[1], h.qoffset[2],
                                             std::fabs(h.pixdim[1]), std::fabs(h.pixdim[2]), std::fabs(h.pixdim[3]), qfac);
    for (int i = 0; i < 3; ++i) for (int j = 0; j < 4; ++j) A[i][j] = q.m[i][j];
  } else {
    for (int i = 0; i < 3; ++i) A[i][i] = std::fabs(h.pixdim[i + 1]);
  }
  auto sp = affine_spacing(A);
  double det = A[0][0] * (A[1][1] * A[2][2] - A[1][2] * A[2][1]) - A[0][1] * (A[1][0] * A[2][2] - A[1][2] * A[2][0]) +
               A[0][2] * (A[1][0] * A[2][1] - A[1][1] * A[2][0]);
  const std::string source = use_sform ? "sform" : use_qform ? "qform" : "pixdim";
  std::ostringstream spacing;
  spacing << "voxel spacing " << sp[0] << " x " << sp[1] << " x " << sp[2];
  if (!std::isfinite(det) || std::fabs(det) < 1e-12 * sp[0] * sp[1] * sp[2] || sp[0] == 0 || sp[1] == 0 || sp[2] == 0)
    fail(path, source + " affine is singular (zero voxel size or collapsed axes; " + spacing.str() + ")");
  for (int i = 0; i < 3; ++i)
    if (sp[size_t(i)] < kMinSpacing || sp[size_t(i)] > kMaxSpacing) {
      std::ostringstream os;
      os << source << ": " << spacing.str() << ": axis " << i << " is outside [" << kMinSpacing << ", " << kMaxSpacing
         << "]";
      fail(path, os.str());
    }
  g.affine = A;
  return p;
}

bool is_integer_type(int dt) { return dt != kFloat32 && dt != kFloat64; }

// Where converted voxels go and what is counted on the way (one per file, updated chunk by chunk).
struct VoxelSink {
  bool swap = false;    // file byte order differs from ours
  bool scaled = false;  // apply value * slope + inter
  double slope = 1, inter = 0;
  Dims3 dims{0, 0, 0};
  float* out = nullptr;  // z-fastest, dims[0]*dims[1]*dims[2]
  double mn = std::numeric_limits<double>::infinity(), mx = -std::numeric_limits<double>::infinity(), sum = 0;
  int64_t nonfinite = 0;
  std::vector<uint8_t>* seen = nullptr;  // label values 0..65535 present (integer unscaled files), else null
  std::set<int64_t>* other = nullptr;    // other label values, up to 1001
};

// Converts `n` raw elements starting at file-linear index `lin0` into the sink's z-fastest output.
template <class T>
void convert(const char* raw, int64_t n, int64_t lin0, VoxelSink& s) {
  const Dims3& d = s.dims;
  int64_t nx = d[0], ny = d[1], nz = d[2];
  int64_t i = lin0 % nx, j = (lin0 / nx) % ny, k = lin0 / (nx * ny);
  for (int64_t e = 0; e < n; ++e) {
    T v;
    std::memcpy(&v, raw + e * int64_t(sizeof(T)), sizeof(T));
    if (s.swap && sizeof(T) > 1) {
      if (sizeof(T) == 2) nifti_swap_2bytes(1, &v);
      else if (sizeof(T) == 4) nifti_swap_4bytes(1, &v);
      else nifti_swap_8bytes(1, &v);
    }
    double x = s.scaled ? double(v) * s.slope + s.inter : double(v);
    if (!std::isfinite(x)) {
      ++s.nonfinite;
    } else {
      s.mn = std::min(s.mn, x);
      s.mx = std::max(s.mx, x);
      s.sum += x;
      if (s.seen) {
        if constexpr (std::is_integral_v<T>) {
          if (v >= 0 && uint64_t(v) < s.seen->size()) (*s.seen)[size_t(v)] = 1;
          else if (s.other->size() <= 1000) s.other->insert(int64_t(v));
        }
      }
    }
    s.out[(i * ny + j) * nz + k] = float(x);
    if (++i == nx) { i = 0; if (++j == ny) { j = 0; ++k; } }
  }
}

}  // namespace

bool is_nifti_name(const std::string& p) {
  return ends_with(p, ".nii") || ends_with(p, ".nii.gz") || ends_with(p, ".hdr") || ends_with(p, ".hdr.gz");
}

NiftiInfo read_nifti_header(const std::string& path) { return prepare(path).info; }

NiftiImage read_nifti(const std::string& path) {
  Prepared p = prepare(path);
  NiftiImage img;
  img.info = p.info;
  const RawHeader& h = p.h;
  Volume& v = img.volume;
  v.dims = p.info.geom.dims;
  v.affine = p.info.geom.affine;
  v.spacing = affine_spacing(v.affine);
  v.data.assign(size_t(p.nvox), 0.f);

  Stream in(p.data_path);
  in.skip(h.vox_offset, "vox_offset");
  const int es = type_size(h.datatype);
  const int64_t chunk_elems = (1 << 20) / es;
  std::vector<char> buf(size_t(chunk_elems * es));
  bool want_labels = is_integer_type(h.datatype) && !p.info.scaled;
  std::vector<uint8_t> seen(want_labels ? 65536 : 0);
  std::set<int64_t> other;
  VoxelSink sink;
  sink.swap = h.swapped;
  sink.scaled = p.info.scaled;
  sink.slope = p.info.scl_slope;
  sink.inter = p.info.scl_inter;
  sink.dims = v.dims;
  sink.out = v.data.data();
  sink.seen = want_labels ? &seen : nullptr;
  sink.other = &other;
  for (int64_t lin = 0; lin < p.nvox; lin += chunk_elems) {
    int64_t n = std::min(chunk_elems, p.nvox - lin);
    int64_t got = in.read(buf.data(), n * es);
    if (got < n * es)
      fail(p.data_path, "truncated data: voxel data ends after " + std::to_string(lin * es + got) + " of " +
                            std::to_string(p.nbytes) + " bytes");
#define HDSSL_CONVERT(T) convert<T>(buf.data(), n, lin, sink)
    switch (h.datatype) {
      case kUInt8: HDSSL_CONVERT(uint8_t); break;
      case kInt8: HDSSL_CONVERT(int8_t); break;
      case kInt16: HDSSL_CONVERT(int16_t); break;
      case kUInt16: HDSSL_CONVERT(uint16_t); break;
      case kInt32: HDSSL_CONVERT(int32_t); break;
      case kUInt32: HDSSL_CONVERT(uint32_t); break;
      case kInt64: HDSSL_CONVERT(int64_t); break;
      case kUInt64: HDSSL_CONVERT(uint64_t); break;
      case kFloat32: HDSSL_CONVERT(float); break;
      case kFloat64: HDSSL_CONVERT(double); break;
    }
#undef HDSSL_CONVERT
  }
  in.drain();  // gzip CRC / length check
  if (sink.nonfinite > 0)
    fail(path, "voxel data: " + std::to_string(sink.nonfinite) + " of " + std::to_string(p.nvox) +
                   " voxels are not finite (NaN or Inf)");
  VoxelStats& st = img.info.stats;
  st.min = sink.mn;
  st.max = sink.mx;
  st.sum = sink.sum;
  st.mean = sink.sum / double(p.nvox);
  if (want_labels) {
    for (size_t k = 0; k < seen.size(); ++k)
      if (seen[k]) st.labels.push_back(int64_t(k));
    for (int64_t o : other) st.labels.push_back(o);
    std::sort(st.labels.begin(), st.labels.end());
    if (st.labels.size() > 1000) { st.labels.clear(); st.too_many_labels = true; }
  }
  return img;
}

const char* nifti_type_name(int dt) {
  switch (dt) {
    case kUInt8: return "uint8"; case kInt8: return "int8"; case kInt16: return "int16"; case kUInt16: return "uint16";
    case kInt32: return "int32"; case kUInt32: return "uint32"; case kInt64: return "int64"; case kUInt64: return "uint64";
    case kFloat32: return "float32"; case kFloat64: return "float64"; default: return "unknown";
  }
}
bool nifti_type_is_integer(int dt) { return type_size(dt) > 0 && is_integer_type(dt); }

std::string orientation_code(const Mat44& a) {
  // Greedy like nibabel's io_orientation for non-oblique affines: take the largest |component| first.
  const char pos[3] = {'R', 'A', 'S'}, neg[3] = {'L', 'P', 'I'};
  std::string code = "???";
  bool used_world[3] = {false, false, false}, used_axis[3] = {false, false, false};
  for (int round = 0; round < 3; ++round) {
    double best = -1; int bw = -1, ba = -1;
    for (int ax = 0; ax < 3; ++ax) {
      if (used_axis[ax]) continue;
      double n = std::sqrt(a[0][ax] * a[0][ax] + a[1][ax] * a[1][ax] + a[2][ax] * a[2][ax]);
      for (int w = 0; w < 3; ++w)
        if (!used_world[w] && n > 0 && std::fabs(a[w][ax]) / n > best) { best = std::fabs(a[w][ax]) / n; bw = w; ba = ax; }
    }
    if (ba < 0) break;
    used_world[bw] = used_axis[ba] = true;
    code[size_t(ba)] = a[bw][ba] >= 0 ? pos[bw] : neg[bw];
  }
  return code;
}

}  // namespace hdssl::data
