// libFuzzer harness for nnU-Net's splits_final.json (eval/folds.cpp read_splits), with and without the
// list of known case ids.
#include "eval/folds.h"
#include "fuzz/fuzz_util.h"

using namespace hdssl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::scratch() + "/splits_final.json";
  fuzz::write_file(path, data, size);
  fuzz::expect_clean("splits_final.json", [&] { eval::read_splits(path); });
  fuzz::expect_clean("splits_final.json", [&] { eval::read_splits(path, {"case_a", "case_b", "case_c", "case_d"}); });
  return 0;
}
