// libFuzzer harness for the NIfTI reader (data/nifti_read.cpp): .nii, .nii.gz and .hdr/.img pairs.
//
// Input layout: byte 0 picks the container (mod 4), the rest is the payload:
//   0  payload -> x.nii
//   1  payload gzip-compressed -> x.nii.gz   (so mutations reach the header parser behind zlib)
//   2  bytes 1..2 (little-endian) give the split point: payload[0:split] -> x.hdr, the rest -> x.img
//   3  payload as is -> x.nii.gz             (corrupt and truncated gzip streams)
#include <zlib.h>

#include "data/nifti.h"
#include "fuzz/fuzz_util.h"

using namespace hdssl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int mode = data[0] % 4;
  const uint8_t* p = data + 1;
  size_t n = size - 1;
  const std::string dir = fuzz::scratch();
  std::string entry;
  if (mode == 0) {
    entry = dir + "/x.nii";
    fuzz::write_file(entry, p, n);
  } else if (mode == 1) {
    entry = dir + "/x.nii.gz";
    gzFile gz = gzopen(entry.c_str(), "wb1");
    if (!gz) std::abort();
    if (n > 0 && gzwrite(gz, p, unsigned(n)) != int(n)) std::abort();
    gzclose(gz);
  } else if (mode == 2) {
    if (n < 2) return 0;
    size_t split = (size_t(p[0]) | size_t(p[1]) << 8) % (n - 2 + 1);
    entry = dir + "/x.hdr";
    fuzz::write_file(entry, p + 2, split);
    fuzz::write_file(dir + "/x.img", p + 2 + split, n - 2 - split);
  } else {
    entry = dir + "/x.nii.gz";
    fuzz::write_file(entry, p, n);
  }
  fuzz::expect_clean("x.", [&] { data::read_nifti_header(entry); });
  fuzz::expect_clean("x.", [&] {
    data::NiftiImage img = data::read_nifti(entry);
    if (int64_t(img.volume.data.size()) != img.volume.numel()) std::abort();
  });
  return 0;
}
