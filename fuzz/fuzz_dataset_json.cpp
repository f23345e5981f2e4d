// libFuzzer harness for dataset.json (data/dataset.cpp read_labeled_dataset), both layouts: nnU-Net v2
// and the Medical Segmentation Decathlon. The input is dataset.json; the folder around it holds one case
// of each layout (empty files: only their existence is checked here).
#include "data/dataset.h"
#include "fuzz/fuzz_util.h"

using namespace hdssl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string root = [] {
    std::string r = fuzz::scratch() + "/ds";
    for (const char* sub : {"/imagesTr", "/labelsTr"}) std::filesystem::create_directories(r + sub);
    for (const char* f : {"/imagesTr/case_001_0000.nii.gz", "/labelsTr/case_001.nii.gz", "/imagesTr/la_003.nii.gz",
                          "/labelsTr/la_003.nii.gz"})
      std::ofstream(r + f).put('x');
    return r;
  }();
  fuzz::write_file(root + "/dataset.json", data, size);
  fuzz::expect_clean("ds", [&] { data::read_labeled_dataset(root); });
  return 0;
}
