// bench_data: how fast the data room works on one core. Synthesises one CT phantom, times its
// preprocessing (CT preset), then times augmented pretraining pairs at the paper's patch size
// (128 x 128 x 32) with the loader building batches on the calling thread (threads = 0), per augmentation set.
//   ./bench_data [--batches N] [--threads T] [--input FILE]
#include <CLI/CLI.hpp>

#include <chrono>
#include <ctime>
#include <cstdio>

#include "data/loader.h"
#include "data/nifti.h"
#include "data/phantom.h"

using namespace hdssl::data;
using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
// Process CPU time: on a shared machine this is the honest per-core figure (wall time includes waiting).
static double cpu_now() { return double(std::clock()) / CLOCKS_PER_SEC; }

int main(int argc, char** argv) {
  CLI::App app{"bench_data: phantom synthesis, preprocessing and augmented pretraining pairs per second per core"};
  int batches = 5, threads = 0;
  std::string input;
  app.add_option("--batches", batches, "batches of 10 pairs to time per augmentation set")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "loader worker threads (0 = build on the calling thread: one core)");
  app.add_option("--input", input, "a NIfTI CT to use instead of a synthetic phantom");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // -h: 0; a bad command line: 2 (apps/README.md, exit codes)
  }
  try {
    NiftiImage img;
    if (input.empty()) {
      auto t0 = Clock::now();
      double c0 = cpu_now();
      Phantom ph = make_phantom(PhantomConfig{}, 0, 0);
      std::printf("phantom synthesis: %.2f s wall, %.2f s CPU (%lldx%lldx%lld voxels at 1x1x2.5 mm)\n", seconds_since(t0), cpu_now() - c0,
                  (long long)ph.image.dims[0], (long long)ph.image.dims[1], (long long)ph.image.dims[2]);
      img.volume = ph.image;
      img.info.path = "phantom_000";
      img.info.geom.dims = ph.image.dims;
      img.info.geom.affine = ph.image.affine;
    } else {
      auto t0 = Clock::now();
      img = read_nifti(input);
      std::printf("read %s: %.2f s\n", input.c_str(), seconds_since(t0));
    }
    auto t0 = Clock::now();
    double c0 = cpu_now();
    PreprocessedVolume pv = preprocess(img, PreprocessConfig::ct());
    std::printf("preprocessing (CT preset: RAS, resample to 1x1x2 mm, crop, clip/scale, body mask): %.2f s wall, %.2f s CPU -> %lldx%lldx%lld\n",
                seconds_since(t0), cpu_now() - c0, (long long)pv.image.dims[0], (long long)pv.image.dims[1], (long long)pv.image.dims[2]);
    std::vector<PreprocessedVolume> vols{std::move(pv)};
    struct Set { const char* name; PretrainConfig::Aug aug; } sets[] = {
        {"ours (shuffle + Bezier + in-painting)", PretrainConfig::Aug::Local},
        {"vox2vec (window + blur/sharpen + noise)", PretrainConfig::Aug::Vox2vec},
        {"none (sampling and copies only)", PretrainConfig::Aug::None}};
    for (const Set& s : sets) {
      PretrainConfig cfg;
      cfg.aug = s.aug;
      PretrainLoader loader(vols, cfg, threads, 2);
      loader.next();  // warm-up
      auto t1 = Clock::now();
      double c1 = cpu_now();
      for (int b = 0; b < batches; ++b) loader.next();
      double sec = seconds_since(t1), cpu = cpu_now() - c1, pairs = double(batches * cfg.batch_pairs);
      int cores = threads == 0 ? 1 : threads;
      std::printf("%-42s %7.2f pairs/s wall with %d thread%s; %.2f pairs per CPU-second (= per core) (128x128x32, %d positives)\n",
                  s.name, pairs / sec, cores, cores > 1 ? "s" : "", pairs / cpu, cfg.voxels_per_pair);
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_data: %s\n", e.what());
    return 1;
  }
  return 0;
}
