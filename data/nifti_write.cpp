// NIfTI writer: label maps and images in a given grid, through nifti_clib's nifti_image_write.
//
// The volume is z fastest in memory and x fastest on disk, so values are transposed while they are
// converted to the output datatype. Integer outputs round to nearest and refuse values out of range.
//
// Writing is all-or-nothing: the file (both files of a pair) is written under a temporary name in the
// same folder, read back in full (nifti_clib only prints a message when a write fails, e.g. on a full
// disk), and renamed over the target; on failure the temporaries are removed and the old file is intact.
#include <nifti/nifti2_io.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "data/nifti.h"

namespace hdssl::data {
namespace {

template <class T>
void fill(void* dst, const Volume& v, const std::string& path) {
  T* out = static_cast<T*>(dst);  // one 3D volume, x fastest
  const int64_t nx = v.dims[0], ny = v.dims[1], nz = v.dims[2];
  for (int64_t z = 0; z < nz; ++z)
    for (int64_t y = 0; y < ny; ++y)
      for (int64_t x = 0; x < nx; ++x) {
        double val = v.data[size_t((x * ny + y) * nz + z)];
        if constexpr (std::is_integral_v<T>) {
          val = std::nearbyint(val);
          if (!(val >= double(std::numeric_limits<T>::lowest()) && val <= double(std::numeric_limits<T>::max())))
            throw DataError(path + ": value " + std::to_string(val) + " at voxel (" + std::to_string(x) + "," +
                            std::to_string(y) + "," + std::to_string(z) + ") does not fit the output datatype");
        }
        out[(z * ny + y) * nx + x] = T(val);
      }
}

bool has_suffix(const std::string& s, const char* suf) {
  size_t n = std::strlen(suf);
  return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
}

// Writes bytes to a plain or (".gz") gzip file; throws naming the file on failure.
void write_file(const std::string& path, const std::vector<const void*>& parts, const std::vector<size_t>& sizes) {
  gzFile g = gzopen(path.c_str(), has_suffix(path, ".gz") ? "wb6" : "wbT");
  if (!g) throw DataError(path + ": cannot open for writing");
  for (size_t i = 0; i < parts.size(); ++i)
    for (size_t done = 0; done < sizes[i];) {
      unsigned chunk = unsigned(std::min<size_t>(sizes[i] - done, size_t(1) << 30));
      int w = gzwrite(g, static_cast<const char*>(parts[i]) + done, chunk);
      if (w <= 0) { gzclose(g); throw DataError(path + ": write failed"); }
      done += size_t(w);
    }
  if (gzclose(g) != Z_OK) throw DataError(path + ": write failed");
}

// The name of the image file of a pair whose header is `hdr` (.hdr -> .img, .hdr.gz -> .img.gz).
std::string pair_image_name(const std::string& hdr) {
  return hdr.substr(0, hdr.size() - (has_suffix(hdr, ".gz") ? 7 : 4)) + (has_suffix(hdr, ".gz") ? ".img.gz" : ".img");
}

// `path` with ".tmp-PID-N" before its NIfTI ending, so nifti_clib still sees the format.
std::string temporary_name(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  size_t cut = path.size() - (has_suffix(path, ".gz") ? 7 : 4);
  return path.substr(0, cut) + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) +
         path.substr(cut);
}

// Reads a just-written file to its end (gzip CRC and length included); returns its uncompressed size.
int64_t written_size(const std::string& path) {
  gzFile g = gzopen(path.c_str(), "rb");
  if (!g) throw DataError(path + ": written file cannot be opened again");
  std::vector<char> buf(1 << 16);
  int64_t total = 0;
  for (;;) {
    int r = gzread(g, buf.data(), unsigned(buf.size()));
    if (r < 0) {
      gzclose(g);
      throw DataError(path + ": written file is corrupt or truncated");
    }
    if (r == 0) break;
    total += r;
  }
  int err = Z_OK;
  gzerror(g, &err);
  gzclose(g);
  if (err != Z_OK) throw DataError(path + ": written file is corrupt or truncated");
  return total;
}

void write_nifti2_file(const std::string& path, nifti_image* nim, bool pair) {
  nifti_2_header h;
  if (nifti_convert_nim2n2hdr(nim, &h) != 0) throw DataError(path + ": nifti_clib could not build a NIfTI-2 header");
  std::memcpy(h.magic, pair ? "ni2\0\r\n\032\n" : "n+2\0\r\n\032\n", 8);
  h.vox_offset = pair ? 0 : 544;
  const char ext[4] = {0, 0, 0, 0};  // no extensions
  size_t nbytes = size_t(nim->nvox) * size_t(nim->nbyper);
  if (pair) {
    std::string img = pair_image_name(path);
    write_file(path, {&h, ext}, {sizeof h, 4});
    write_file(img, {nim->data}, {nbytes});
  } else {
    write_file(path, {&h, ext, nim->data}, {sizeof h, 4, nbytes});
  }
}

}  // namespace

void write_nifti(const std::string& path, const Volume& vol, int datatype, const NiftiGeometry* geom) {
  write_nifti_channels(path, {&vol}, datatype, geom);
}

void write_nifti_channels(const std::string& path, const std::vector<const Volume*>& channels, int datatype,
                          const NiftiGeometry* geom) {
  if (!is_nifti_name(path)) throw DataError(path + ": output name must end in .nii, .nii.gz, .hdr or .hdr.gz");
  if (channels.empty()) throw DataError(path + ": no volume to write");
  const Volume& vol = *channels[0];
  for (const Volume* c : channels) {
    if (int64_t(c->data.size()) != c->numel()) throw DataError(path + ": volume data size does not match its dims");
    if (c->dims != vol.dims) throw DataError(path + ": the channels differ in size");
  }
  if (geom && geom->dims != vol.dims) throw DataError(path + ": volume dims differ from the original grid's");
  const int64_t nc = int64_t(channels.size());
  int64_t dims[8] = {nc > 1 ? 4 : 3, vol.dims[0], vol.dims[1], vol.dims[2], nc, 1, 1, 1};
  nifti_image* nim = nifti_make_new_nim(dims, datatype, 0);
  if (!nim) throw DataError(path + ": nifti_clib could not make an image of datatype " + std::to_string(datatype));
  struct Free { nifti_image* n; ~Free() { nifti_image_free(n); } } guard{nim};
  nim->data = calloc(size_t(vol.numel() * nc), size_t(nim->nbyper));
  if (!nim->data) throw DataError(path + ": out of memory");
  for (int64_t c = 0; c < nc; ++c) {
    void* dst = static_cast<char*>(nim->data) + size_t(c * vol.numel()) * size_t(nim->nbyper);
    const Volume& v = *channels[size_t(c)];
    switch (datatype) {
      case kUInt8: fill<uint8_t>(dst, v, path); break;
      case kInt8: fill<int8_t>(dst, v, path); break;
      case kInt16: fill<int16_t>(dst, v, path); break;
      case kUInt16: fill<uint16_t>(dst, v, path); break;
      case kInt32: fill<int32_t>(dst, v, path); break;
      case kUInt32: fill<uint32_t>(dst, v, path); break;
      case kInt64: fill<int64_t>(dst, v, path); break;
      case kUInt64: fill<uint64_t>(dst, v, path); break;
      case kFloat32: fill<float>(dst, v, path); break;
      case kFloat64: fill<double>(dst, v, path); break;
      default: throw DataError(path + ": cannot write datatype " + std::to_string(datatype));
    }
  }

  if (geom) {
    nim->qfac = geom->pixdim[0] < 0 ? -1 : 1;
    nim->pixdim[0] = nim->qfac;
    nim->dx = nim->pixdim[1] = geom->pixdim[1];
    nim->dy = nim->pixdim[2] = geom->pixdim[2];
    nim->dz = nim->pixdim[3] = geom->pixdim[3];
    nim->qform_code = geom->qform_code;
    nim->sform_code = geom->sform_code;
    nim->quatern_b = geom->quatern[0]; nim->quatern_c = geom->quatern[1]; nim->quatern_d = geom->quatern[2];
    nim->qoffset_x = geom->qoffset[0]; nim->qoffset_y = geom->qoffset[1]; nim->qoffset_z = geom->qoffset[2];
    for (int i = 0; i < 3; ++i) for (int j = 0; j < 4; ++j) nim->sto_xyz.m[i][j] = geom->srow[i][j];
    nim->sto_xyz.m[3][0] = nim->sto_xyz.m[3][1] = nim->sto_xyz.m[3][2] = 0; nim->sto_xyz.m[3][3] = 1;
    nim->xyz_units = geom->xyzt_units & 7;
    // nifti_clib recomputes qto_xyz from the quaternion when writing; keep its copy consistent.
    nim->qto_xyz = nifti_quatern_to_dmat44(nim->quatern_b, nim->quatern_c, nim->quatern_d, nim->qoffset_x,
                                           nim->qoffset_y, nim->qoffset_z, std::fabs(nim->dx), std::fabs(nim->dy),
                                           std::fabs(nim->dz), nim->qfac);
  } else {
    nifti_dmat44 m;
    for (int i = 0; i < 4; ++i) for (int j = 0; j < 4; ++j) m.m[i][j] = vol.affine[i][j];
    nim->sto_xyz = m;
    nim->qto_xyz = m;
    nim->sform_code = nim->qform_code = 1;
    double qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac;
    nifti_dmat44_to_quatern(m, &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qfac);
    nim->quatern_b = qb; nim->quatern_c = qc; nim->quatern_d = qd;
    nim->qoffset_x = qx; nim->qoffset_y = qy; nim->qoffset_z = qz;
    nim->qfac = qfac; nim->pixdim[0] = qfac;
    nim->dx = nim->pixdim[1] = dx; nim->dy = nim->pixdim[2] = dy; nim->dz = nim->pixdim[3] = dz;
    nim->xyz_units = NIFTI_UNITS_MM;
  }
  nim->scl_slope = 1;
  nim->scl_inter = 0;
  bool pair = path.size() >= 4 && (path.compare(path.size() - 4, 4, ".hdr") == 0 ||
                                   (path.size() >= 7 && path.compare(path.size() - 7, 7, ".hdr.gz") == 0));
  const std::string tmp = temporary_name(path);
  const std::string tmp_img = pair ? pair_image_name(tmp) : "";
  auto remove_temporaries = [&] {
    std::remove(tmp.c_str());
    if (pair) std::remove(tmp_img.c_str());
  };
  try {
    // NIfTI-1 stores dims as int16: larger volumes must be NIfTI-2, which nifti_clib 3.0.1's writer gets wrong
    // (it writes the header, then overwrites it with the voxels), so those are written here.
    if (vol.dims[0] > 32767 || vol.dims[1] > 32767 || vol.dims[2] > 32767) {
      write_nifti2_file(tmp, nim, pair);
    } else {
      int type = pair ? NIFTI_FTYPE_NIFTI1_2 : NIFTI_FTYPE_NIFTI1_1;
      nim->nifti_type = type;
      if (nifti_set_filenames(nim, tmp.c_str(), 0, 1) != 0)
        throw DataError(path + ": nifti_clib rejected the file name");
      nim->nifti_type = type;
      nifti_image_write(nim);
    }
    // A full disk or a file-size limit shows as a short or corrupt file here.
    const int64_t nbytes = vol.numel() * int64_t(nim->nbyper);
    const int64_t header = written_size(tmp);
    if (pair ? (header < 348 || written_size(tmp_img) != nbytes) : header < 348 + nbytes)
      throw DataError(tmp + ": written file is shorter than the image");
  } catch (const DataError& e) {
    remove_temporaries();
    throw DataError(path + ": writing failed, the previous file (if any) is unchanged: " + e.what());
  }
  if ((pair && std::rename(tmp_img.c_str(), pair_image_name(path).c_str()) != 0) ||
      std::rename(tmp.c_str(), path.c_str()) != 0) {
    remove_temporaries();
    throw DataError(path + ": cannot rename the written file into place: " + std::strerror(errno));
  }
}

void write_label_nifti(const std::string& path, const Volume& labels, const NiftiGeometry* geom) {
  float mx = 0;
  for (float v : labels.data) {
    if (!(v >= 0 && v <= 65535 && v == std::floor(v))) throw DataError(path + ": label value " + std::to_string(v) + " is not an integer in [0, 65535]");
    mx = std::max(mx, v);
  }
  write_nifti(path, labels, mx <= 255 ? kUInt8 : kUInt16, geom);
}

}  // namespace hdssl::data
