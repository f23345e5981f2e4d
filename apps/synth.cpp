// synth: writes synthetic abdominal CT (Hounsfield units) or MRI-like phantoms with BTCV label maps as an
// nnU-Net v2 raw folder (dataset.json, imagesTr/, labelsTr/), or only images for pretraining (--unlabeled).
//   ./synth -o DIR --cases N --seed S [--modality ct|mri] [--unlabeled] [--spacing X Y Z] [--png FILE]
#include <CLI/CLI.hpp>

#include <chrono>
#include <ctime>
#include <cstdio>

#include "data/orient.h"
#include "data/phantom.h"
#include "data/png.h"

using namespace hdssl::data;

int main(int argc, char** argv) {
  CLI::App app{"synth: synthetic abdominal CT/MRI phantoms with BTCV label maps (nnU-Net v2 layout)"};
  std::string out, modality = "ct", png;
  int cases = 1, first = 0;
  uint64_t seed = 0;
  bool unlabeled = false;
  std::vector<double> spacing{1.0, 1.0, 2.5}, fov{360, 280, 240};
  app.add_option("-o,--output", out, "output folder")->required();
  app.add_option("--cases", cases, "number of cases")->check(CLI::Range(1, 100000));
  app.add_option("--first", first, "index of the first case (cases are numbered from here)")->check(CLI::NonNegativeNumber);
  app.add_option("--seed", seed, "random seed");
  app.add_option("--modality", modality, "ct or mri")->check(CLI::IsMember({"ct", "mri"}));
  app.add_flag("--unlabeled", unlabeled, "write only images, as DIR/phantom_XXX.nii.gz (pretraining data)");
  app.add_option("--spacing", spacing, "voxel size in mm (x y z)")->expected(3)->check(CLI::PositiveNumber);
  app.add_option("--fov", fov, "field of view in mm (x y z)")->expected(3)->check(CLI::PositiveNumber);
  app.add_option("--png", png, "also write an axial slice of the first case (with its labels) as PNG");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // -h: 0; a bad command line: 2 (apps/README.md, exit codes)
  }

  PhantomConfig cfg;
  cfg.modality = modality == "ct" ? Modality::CT : Modality::MRI;
  cfg.spacing = {spacing[0], spacing[1], spacing[2]};
  cfg.fov = {fov[0], fov[1], fov[2]};
  try {
    if (!unlabeled) write_phantom_dataset_json(out, first + cases, seed, cfg);
    for (int i = first; i < first + cases; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      std::clock_t c0 = std::clock();
      std::string path = write_phantom_case(out, i, seed, cfg, unlabeled);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double cpu = double(std::clock() - c0) / CLOCKS_PER_SEC;
      std::printf("%s (%.2f s wall, %.2f s CPU)\n", path.c_str(), s, cpu);
      std::fflush(stdout);
      if (!png.empty() && i == first) {
        Phantom ph = make_phantom(cfg, seed, uint64_t(i));
        Volume img = to_ras(ph.image), lab = to_ras(ph.labels);
        bool ct = cfg.modality == Modality::CT;
        write_axial_png(png, img, int64_t(0.56 * double(img.dims[2])), ct ? -175 : 0, ct ? 250 : 1100, &lab);
        std::printf("%s\n", png.c_str());
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "synth: %s\n", e.what());
    return 1;
  }
  return 0;
}
