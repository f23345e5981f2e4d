// NIfTI-1 / NIfTI-2 reading and writing (.nii, .nii.gz, .hdr/.img pairs, both byte orders).
//
// Reading parses and validates the raw header and the raw voxel bytes itself (nifti_clib 3.0.1 silently
// "repairs" bad files, so it is only used for the header structs, byte swapping and quaternions), then
// streams the voxels in chunks, transposing them into a z-fastest Volume. Every refusal throws DataError
// whose message starts with the file name and names the field, before anything large is allocated.
// Writing goes through nifti_clib's nifti_image_write.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/volume.h"

namespace hdssl::data {

// NIfTI datatype codes (nifti1.h).
enum NiftiType : int {
  kUInt8 = 2, kInt16 = 4, kInt32 = 8, kFloat32 = 16, kFloat64 = 64, kInt8 = 256, kUInt16 = 512,
  kUInt32 = 768, kInt64 = 1024, kUInt64 = 1280
};
const char* nifti_type_name(int datatype);  // "uint8", ..., "unknown"
bool nifti_type_is_integer(int datatype);

// The on-disk geometry of a file, kept so outputs can be written in the original grid.
struct NiftiGeometry {
  Dims3 dims{0, 0, 0};
  double pixdim[4] = {1, 1, 1, 1};  // pixdim[0] = qfac
  int qform_code = 0, sform_code = 0;
  double quatern[3] = {0, 0, 0}, qoffset[3] = {0, 0, 0};
  double srow[3][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}};
  int xyzt_units = 2;  // NIFTI_UNITS_MM
  Mat44 affine = identity44();  // the one used: sform if sform_code > 0, else qform, else pixdim
};

// Intensity statistics of the scaled voxels, in float64.
struct VoxelStats {
  double min = 0, max = 0, sum = 0, mean = 0;
  // Integer label values present (unscaled integer datatypes only, at most 1000 values; else empty and
  // `too_many_labels` set).
  std::vector<int64_t> labels;
  bool too_many_labels = false;
};

struct NiftiInfo {
  std::string path;
  int version = 1;           // 1 or 2
  bool byte_swapped = false; // file's byte order differs from this machine's
  bool pair = false;         // .hdr/.img pair
  int datatype = 0;
  double scl_slope = 1, scl_inter = 0;
  bool scaled = false;       // scl_slope was finite and non-zero and (slope, inter) != (1, 0)
  NiftiGeometry geom;
  VoxelStats stats;
};

struct NiftiImage {
  Volume volume;  // in the file's voxel axes (no reorientation), scaled values as float32
  NiftiInfo info;
};

// Reads and validates one file. Throws DataError("<path>: <field>: <problem>").
NiftiImage read_nifti(const std::string& path);
// Reads and validates only the header (no voxel data): cheap, for dataset checks.
NiftiInfo read_nifti_header(const std::string& path);

// True for names ending in .nii, .nii.gz, .hdr, .hdr.gz (the entry file of an image).
bool is_nifti_name(const std::string& path);

// Writes `vol` (z-fastest values) as datatype `datatype` (integer types round to nearest; values out of
// range throw). The format follows the extension: .nii, .nii.gz, .hdr (pair) or .hdr.gz.
// With `geom`, its qform/sform/pixdim are copied (dims must match); otherwise both qform and sform
// (code 1, scanner) are set from vol.affine.
void write_nifti(const std::string& path, const Volume& vol, int datatype, const NiftiGeometry* geom = nullptr);
// Several volumes of one grid as a 4D image (x, y, z, channel), e.g. feature maps; one volume gives a 3D file.
void write_nifti_channels(const std::string& path, const std::vector<const Volume*>& channels, int datatype,
                          const NiftiGeometry* geom = nullptr);
// A label map: uint8 when every value is <= 255, else uint16 (values must be integers in [0, 65535]).
void write_label_nifti(const std::string& path, const Volume& labels, const NiftiGeometry* geom = nullptr);

// Orientation code of an affine, nibabel style: for each voxel axis the world axis it points along,
// e.g. "RAS", "LPI".
std::string orientation_code(const Mat44& affine);

}  // namespace hdssl::data
