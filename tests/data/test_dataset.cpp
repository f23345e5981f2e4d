// Phantoms (deterministic, all 13 organs, plausible sizes and contrast), the nnU-Net v2 and Decathlon
// readers with their geometry/label checks, and the preprocessed-volume cache.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "data/cache.h"
#include "data/dataset.h"
#include "data/nifti.h"
#include "data/phantom.h"
#include "tests/data/test_util.h"
#include "tests/file_size_limit.h"

using namespace hdssl::data;
namespace fs = std::filesystem;

// The CT preset at a coarse spacing that the small test phantoms survive.
PreprocessConfig small_ct_preset() {
  PreprocessConfig pc = PreprocessConfig::ct();
  pc.spacing = {3.0, 3.0, 5.0};
  pc.min_size = {32, 32, 16};
  return pc;
}

TEST(Phantom, DeterministicPerSeedAndCase) {
  auto cfg = test::small_phantom_config();
  Phantom a = make_phantom(cfg, 3, 1), b = make_phantom(cfg, 3, 1), c = make_phantom(cfg, 3, 2), d = make_phantom(cfg, 4, 1);
  EXPECT_EQ(a.image.data, b.image.data);
  EXPECT_EQ(a.labels.data, b.labels.data);
  EXPECT_NE(a.image.data, c.image.data);
  EXPECT_NE(a.labels.data, c.labels.data) << "each subject is deformed differently";
  EXPECT_NE(a.labels.data, d.labels.data);
}

TEST(Phantom, OrgansHavePlausibleSizeAndContrast) {
  PhantomConfig cfg;
  cfg.spacing = {2.0, 2.0, 2.5};
  Phantom ph = make_phantom(cfg, 1, 0);
  const double voxel_ml = 2.0 * 2.0 * 2.5 / 1000.0;
  std::vector<double> ml(14, 0), hu(14, 0);
  for (size_t i = 0; i < ph.labels.data.size(); ++i) {
    int l = int(ph.labels.data[i]);
    ml[size_t(l)] += voxel_ml;
    hu[size_t(l)] += ph.image.data[i];
  }
  for (int l = 1; l < 14; ++l) hu[size_t(l)] /= ml[size_t(l)] / voxel_ml;
  // Volumes (mL) within broad adult ranges; small organs really are small.
  EXPECT_GT(ml[6], 900); EXPECT_LT(ml[6], 3000);   // liver
  EXPECT_GT(ml[1], 80); EXPECT_LT(ml[1], 500);     // spleen
  for (int k : {2, 3}) { EXPECT_GT(ml[size_t(k)], 80); EXPECT_LT(ml[size_t(k)], 300); }  // kidneys
  EXPECT_GT(ml[4], 5); EXPECT_LT(ml[4], 60);       // gallbladder
  for (int k : {12, 13}) { EXPECT_GT(ml[size_t(k)], 0.5); EXPECT_LT(ml[size_t(k)], 10); }  // adrenals
  EXPECT_GT(ml[11], 20); EXPECT_LT(ml[11], 150);   // pancreas
  // Contrast (HU): enhanced vessels bright, bile dark, adrenals close to muscle/bowel.
  EXPECT_GT(hu[8], 140);
  EXPECT_LT(hu[4], 40);
  EXPECT_GT(hu[6], 80); EXPECT_LT(hu[6], 140);
  EXPECT_GT(hu[12], 0); EXPECT_LT(hu[12], 80);
  // The body has fat, the outside is air, and the spine is bone.
  EXPECT_LT(ph.image.data[0], -900);
}

TEST(Phantom, MriVariantIsPositiveArbitraryUnits) {
  auto cfg = test::small_phantom_config();
  cfg.modality = Modality::MRI;
  Phantom ph = make_phantom(cfg, 1, 0);
  float mn = *std::min_element(ph.image.data.begin(), ph.image.data.end());
  float mx = *std::max_element(ph.image.data.begin(), ph.image.data.end());
  EXPECT_GE(mn, 0.f);
  EXPECT_GT(mx, 500.f);
}

TEST(Dataset, SynthFolderReadsAsNnunetV2WithDeclaredLabels) {
  std::string dir = test::temp_dir("ds_nnunet");
  auto cfg = test::small_phantom_config();
  auto written = write_phantom_dataset(dir, 2, 5, cfg, false);
  ASSERT_EQ(written.size(), 2u);
  LabeledDataset ds = read_labeled_dataset(dir);
  EXPECT_EQ(ds.layout, "nnunetv2");
  EXPECT_EQ(ds.modality, Modality::CT);
  ASSERT_EQ(ds.cases.size(), 2u);
  EXPECT_EQ(ds.cases[0].id, "phantom_000");
  EXPECT_EQ(ds.label_names.size(), 14u);
  EXPECT_EQ(ds.label_names[11], "pancreas");
  PreprocessConfig pc = small_ct_preset();
  PreprocessedCase c = load_labeled_case(ds, 1, pc);
  EXPECT_EQ(c.labels.dims, c.image.image.dims);
  // The image on disk is int16 HU and identical to a fresh phantom.
  NiftiImage img = read_nifti(ds.cases[1].image);
  EXPECT_EQ(img.info.datatype, kInt16);
  EXPECT_EQ(orientation_code(img.volume.affine), "LPS");
  Phantom ph = make_phantom(cfg, 5, 1);
  NiftiImage lab = read_nifti(ds.cases[1].label);
  EXPECT_EQ(lab.volume.data, ph.labels.data);
  // Mapping the preprocessed labels back gives the file's labels (same spacing: exact).
  EXPECT_EQ(restore_labels(c.labels, c.image.record).data, lab.volume.data);
  // As a plain folder (pretraining, predict): the images only, not the label maps.
  EXPECT_EQ(find_nifti_files(dir), written);
  // Unlabeled images for pretraining.
  std::string u = test::temp_dir("ds_unlabeled");
  write_phantom_dataset(u, 2, 5, cfg, true);
  EXPECT_EQ(find_nifti_files(u).size(), 2u);
}

TEST(Dataset, DecathlonLayoutAndItsChecks) {
  std::string dir = test::temp_dir("ds_msd");
  fs::create_directories(dir + "/imagesTr");
  fs::create_directories(dir + "/labelsTr");
  auto cfg = test::small_phantom_config();
  Phantom ph = make_phantom(cfg, 2, 0);
  write_nifti(dir + "/imagesTr/case_1.nii.gz", ph.image, kInt16);
  write_label_nifti(dir + "/labelsTr/case_1.nii.gz", ph.labels);
  nlohmann::json j;
  j["name"] = "test";
  j["modality"] = {{"0", "CT"}};
  for (int l = 0; l < 14; ++l) j["labels"][std::to_string(l)] = btcv_label_names()[size_t(l)];
  j["training"] = {{{"image", "./imagesTr/case_1.nii.gz"}, {"label", "./labelsTr/case_1.nii.gz"}}};
  std::ofstream(dir + "/dataset.json") << j.dump();
  LabeledDataset ds = read_labeled_dataset(dir);
  EXPECT_EQ(ds.layout, "msd");
  ASSERT_EQ(ds.cases.size(), 1u);
  EXPECT_EQ(ds.cases[0].id, "case_1");
  PreprocessConfig pc = small_ct_preset();
  EXPECT_NO_THROW(load_labeled_case(ds, 0, pc));
  // An undeclared label value is refused.
  j["labels"].erase("13");
  std::ofstream(dir + "/dataset.json") << j.dump();
  try {
    load_labeled_case(read_labeled_dataset(dir), 0, pc);
    ADD_FAILURE() << "undeclared label accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("label value 13 is not declared"), std::string::npos) << e.what();
  }
  // A label map on another grid is refused.
  Volume shifted = ph.labels;
  shifted.affine[0][3] += 5;
  write_label_nifti(dir + "/labelsTr/case_1.nii.gz", shifted);
  j["labels"]["13"] = "left adrenal gland";
  std::ofstream(dir + "/dataset.json") << j.dump();
  try {
    load_labeled_case(read_labeled_dataset(dir), 0, pc);
    ADD_FAILURE() << "label map with another geometry accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("geometry"), std::string::npos) << e.what();
  }
  // A missing file is named, with the dataset.json that lists it.
  fs::remove(dir + "/labelsTr/case_1.nii.gz");
  try {
    read_labeled_dataset(dir);
    ADD_FAILURE() << "missing label map accepted";
  } catch (const DataError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(dir + "/dataset.json: label map of case case_1 is missing: "), std::string::npos) << m;
    EXPECT_NE(m.find("labelsTr/case_1.nii.gz"), std::string::npos) << m;
  }
  // An absolute path outside the folder (the fuzzer's find) is refused naming dataset.json as well.
  j["training"] = {{{"image", "/nonexistent/case_1.nii.gz"}, {"label", "./labelsTr/case_1.nii.gz"}}};
  std::ofstream(dir + "/dataset.json") << j.dump();
  try {
    read_labeled_dataset(dir);
    ADD_FAILURE() << "missing absolute image accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("dataset.json: image of case case_1 is missing: /nonexistent/case_1.nii.gz"),
              std::string::npos)
        << e.what();
  }
}

TEST(Cache, SecondLoadSkipsPreprocessingAndGivesTheSameVolume) {
  std::string dir = test::temp_dir("cache");
  write_phantom_dataset(dir + "/in", 2, 8, test::small_phantom_config(), true);
  PreprocessConfig pc = small_ct_preset();
  LoadReport r1, r2;
  auto a = load_folder(dir + "/in", pc, dir + "/cache", &r1, 2, false);
  auto b = load_folder(dir + "/in", pc, dir + "/cache", &r2, 2, false);
  EXPECT_EQ(r1.cache_hits, 0);
  EXPECT_EQ(r2.cache_hits, 2);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].image.data, b[i].image.data);
    EXPECT_EQ(a[i].body.data, b[i].body.data);
    EXPECT_EQ(a[i].record.crop_begin, b[i].record.crop_begin);
    EXPECT_EQ(a[i].record.original.affine, b[i].record.original.affine);
    EXPECT_EQ(a[i].image.affine, b[i].image.affine);
  }
  // Other settings are another entry.
  pc.body_threshold = 0.35;
  LoadReport r3;
  load_folder(dir + "/in", pc, dir + "/cache", &r3, 1, false);
  EXPECT_EQ(r3.cache_hits, 0);
}

TEST(Cache, ConcurrentWritersAndDamagedEntriesAreSafe) {
  std::string dir = test::temp_dir("cache_concurrent");
  std::string file = write_phantom_dataset(dir + "/in", 1, 9, test::small_phantom_config(), true)[0];
  PreprocessConfig pc = small_ct_preset();
  PreprocessedVolume ref = load_preprocessed(file, pc);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) ts.emplace_back([&] {
    for (int k = 0; k < 3; ++k) cache_store(dir + "/cache", file, pc, ref);
  });
  for (auto& t : ts) t.join();
  auto got = cache_load(dir + "/cache", file, pc);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->image.data, ref.image.data);
  size_t entries = 0;
  for (auto& e : fs::directory_iterator(dir + "/cache")) { (void)e; ++entries; }
  EXPECT_EQ(entries, 1u) << "no temporary files left behind";
  // Damage the entry: the cache misses and load_preprocessed recomputes (and repairs it).
  std::string entry = cache_entry_path(dir + "/cache", file, pc);
  fs::resize_file(entry, fs::file_size(entry) - 100);
  EXPECT_FALSE(cache_load(dir + "/cache", file, pc).has_value());
  bool hit = true;
  PreprocessedVolume again = load_preprocessed(file, pc, dir + "/cache", &hit);
  EXPECT_FALSE(hit);
  EXPECT_EQ(again.image.data, ref.image.data);
  EXPECT_TRUE(cache_load(dir + "/cache", file, pc).has_value());
}

TEST(Cache, TwoProcessesSharingTheCacheNeverSeeAHalfWrittenEntry) {
  // Separate processes (not threads) each write the entry repeatedly while reading it back. Entries are
  // written to a temporary file and renamed into place, so once one exists every read must hit and give
  // the exact volume: a miss would mean a reader met a half-written entry. No temporary file may remain.
  std::string dir = test::temp_dir("cache_processes");
  std::string file = write_phantom_dataset(dir + "/in", 1, 11, test::small_phantom_config(), true)[0];
  PreprocessConfig pc = small_ct_preset();
  PreprocessedVolume ref = load_preprocessed(file, pc);
  std::vector<pid_t> children;
  for (int p = 0; p < 3; ++p) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0) << "fork failed";
    if (pid == 0) {  // child: no gtest assertions here, only an exit status
      int bad = 0;
      try {
        for (int k = 0; k < 6; ++k) {
          cache_store(dir + "/cache", file, pc, ref);
          for (int r = 0; r < 3; ++r) {
            auto got = cache_load(dir + "/cache", file, pc);
            if (!got || got->image.data != ref.image.data) ++bad;
          }
        }
      } catch (...) {
        bad = 100;
      }
      _exit(bad);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "a process met a half-written or wrong cache entry (or threw)";
  }
  auto got = cache_load(dir + "/cache", file, pc);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->image.data, ref.image.data);
  size_t entries = 0;
  for (auto& e : fs::directory_iterator(dir + "/cache")) { (void)e; ++entries; }
  EXPECT_EQ(entries, 1u) << "no temporary files left behind";
}

TEST(Cache, AFullDiskKeepsThePreviousEntryAndSaysWhy) {
  std::string dir = test::temp_dir("cache_full");
  std::string file = write_phantom_dataset(dir + "/in", 1, 9, test::small_phantom_config(), true)[0];
  PreprocessConfig pc = small_ct_preset();
  PreprocessedVolume ref = load_preprocessed(file, pc);
  const std::string entry = dir + "/entry.hdpv";
  save_preprocessed(entry, ref, "key");
  const auto good_size = fs::file_size(entry);
  PreprocessedVolume bigger = ref;
  bigger.image.data.insert(bigger.image.data.end(), ref.image.data.begin(), ref.image.data.end());
  bigger.image.dims[0] *= 2;
  std::string err =
      hdssl::test::error_with_file_size_limit(good_size / 2, [&] { save_preprocessed(entry, bigger, "key"); });
  EXPECT_NE(err.find(entry), std::string::npos) << err;
  EXPECT_NE(err.find("cannot write cache entry"), std::string::npos) << err;
  EXPECT_NE(err.find("File too large"), std::string::npos) << err;
  auto back = load_preprocessed_file(entry, "key");
  ASSERT_TRUE(back.has_value()) << "the previous entry must survive";
  EXPECT_EQ(back->image.data, ref.image.data);
  size_t files = 0;
  for (auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u) << "no temporary file left behind";
}

TEST(DatasetJson, FuzzRegressionsAreRefusedByName) {
  // Each input the fuzzer (fuzz/fuzz_dataset_json.cpp) once crashed or escaped with: now a DataError
  // naming dataset.json. The folder mirrors the harness's.
  std::string root = test::temp_dir("fuzz_regressions_dataset");
  for (const char* sub : {"/imagesTr", "/labelsTr"}) fs::create_directories(root + sub);
  for (const char* f : {"/imagesTr/case_001_0000.nii.gz", "/labelsTr/case_001.nii.gz", "/imagesTr/la_003.nii.gz",
                        "/labelsTr/la_003.nii.gz"})
    std::ofstream(root + f).put('x');
  int n = 0;
  for (const auto& e : fs::directory_iterator(std::string(HDSSL_SOURCE_DIR) + "/fuzz/regressions/fuzz_dataset_json")) {
    SCOPED_TRACE(e.path().string());
    fs::copy_file(e.path(), root + "/dataset.json", fs::copy_options::overwrite_existing);
    try {
      read_labeled_dataset(root);
      ADD_FAILURE() << "accepted";
    } catch (const DataError& ex) {
      EXPECT_NE(std::string(ex.what()).find("dataset.json"), std::string::npos) << ex.what();
    }
    ++n;
  }
  EXPECT_GE(n, 3);
}
