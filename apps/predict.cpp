// ./predict: label maps for new images with a model trained by ./evaluate.
//
//   ./predict -i IMAGE_OR_DIR -o OUT -m RUN          every finished fold's tested model (checkpoint_best when
//                                                    ./evaluate selected one, else checkpoint_final), averaged
//   ./predict -i IMAGE_OR_DIR -o OUT -m RUN --fold 0
//   ./predict -i IMAGE_OR_DIR -o OUT -m RUN/fold_0/checkpoint_final.safetensors
//
// Each input is preprocessed exactly as in training (the checkpoint records how), segmented with a
// sliding window (50 % overlap, sigmoid, threshold 0.5, highest probability wins), mapped back to the
// input's own grid and orientation, and written as OUT/<case>.nii.gz (uint8, the input's qform/sform)
// plus OUT/<case>.png, the axial slice with the most foreground. nnU-Net's "_0000" suffix is dropped.
// Exit codes: apps/README.md.

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <new>

#include <CLI/CLI.hpp>

#include "apps/common/device_setup.h"
#include "apps/common/settings.h"
#include "data/dataset.h"
#include "engine/backend.h"
#include "eval/inference.h"

using namespace hdssl;
namespace fs = std::filesystem;

// Creates `dir` if needed and proves it writable with a probe file; throws naming the flag and the reason.
void require_writable_folder(const std::string& dir, const char* flag) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw Error(std::string(flag) + " " + dir +
                ": cannot create the output folder: " + (ec ? ec.message() : "not a folder"));
  const std::string probe = dir + "/.hdssl-write-test-" + std::to_string(::getpid());
  bool ok = false;
  int err = 0;
  if (std::FILE* f = std::fopen(probe.c_str(), "wb")) {
    ok = std::fputc('x', f) != EOF;
    ok = std::fclose(f) == 0 && ok;
  }
  if (!ok) err = errno;
  std::remove(probe.c_str());
  if (!ok) throw Error(std::string(flag) + " " + dir + ": the output folder is not writable: " + std::strerror(err));
}

int main(int argc, char** argv) {
  std::string input, out, model_path, device_name = app::kDefaultDevice;
  int fold = -1, window_batch = 2, threads = 0;
  bool no_png = false;
  CLI::App app{"hdssl predict: label maps (NIfTI in each input's grid) with a model trained by ./evaluate"};
  app::SettingsTable t(app);  // predict saves no settings: the table gives the flags their ranges
  using K = app::Kind;
  t.add("-i,--input", "input", input, "a NIfTI image or a folder searched recursively", K::NotSaved).required();
  t.add("-o,--out", "out", out, "output folder", K::NotSaved).required();
  t.add("-m,--model", "model", model_path, "an ./evaluate run folder or one checkpoint_{best,final}.safetensors",
        K::NotSaved)
      .required();
  t.add("--fold", "fold", fold, "use only this fold of the run (default: all finished folds, averaged)", K::NotSaved)
      .at_least(0);
  t.add("--window-batch", "window_batch", window_batch, "sliding windows per forward", K::NotSaved).at_least(1);
  t.add("--device", "device", device_name, "cpu | cuda | cuda:N | auto (the first GPU when there is one, else cpu)",
        K::NotSaved);
  t.add("--threads", "threads", threads, "CPU threads for the math (0: all cores)", K::NotSaved).at_least(0);
  t.add("--no-png", "no_png", no_png, "skip the PNG overlays", K::NotSaved);
  if (int rc = app::parse_command_line(app, argc, argv); rc >= 0) return rc;
  try {
    t.check_ranges();
  } catch (const app::UsageError& e) {
    std::cerr << "predict: error: " << e.what() << std::endl;
    return 2;
  }
  Device device;
  try {
    device = app::open_device(device_name);
  } catch (const Error& e) {  // an unknown name, or a GPU asked for where none is usable
    std::cerr << "predict: error: " << e.what() << std::endl;
    return 2;
  }
  std::cout << app::device_line(device_name, device) << "\n";
  try {
    require_writable_folder(out, "-o");  // refused before any model is loaded or any work is done
    app::set_math_threads(threads);
    std::vector<std::string> ckpts;
    if (fs::is_directory(model_path)) {
      for (const auto& e : fs::directory_iterator(model_path)) {
        const std::string n = e.path().filename().string();
        if (n.rfind("fold_", 0) != 0 || (fold >= 0 && n != "fold_" + std::to_string(fold))) continue;
        // A finished fold: the model ./evaluate tested, i.e. the best on validation when it selected one.
        if (!fs::exists(e.path() / "checkpoint_final.safetensors")) continue;
        const bool selected = fs::exists(e.path() / "checkpoint_best.safetensors");
        ckpts.push_back(
            (e.path() / (selected ? "checkpoint_best.safetensors" : "checkpoint_final.safetensors")).string());
      }
      std::sort(ckpts.begin(), ckpts.end());
      if (ckpts.empty())
        throw Error(model_path + ": no fold_*/checkpoint_final.safetensors" +
                    (fold >= 0 ? " for fold " + std::to_string(fold) : "") + " (has ./evaluate finished a fold?)");
    } else {
      ckpts.push_back(model_path);
    }
    std::vector<std::unique_ptr<models::Segmenter>> nets;
    std::vector<models::Segmenter*> ptrs;
    eval::SegmenterMeta meta;
    for (const std::string& c : ckpts) {
      eval::SegmenterMeta m;
      nets.push_back(eval::load_segmenter(c, device, &m));
      ptrs.push_back(nets.back().get());
      if (nets.size() == 1) meta = m;
      else if (eval::meta_to_json(m) != eval::meta_to_json(meta))
        throw Error(c + ": model/preprocessing differ from " + ckpts[0]);
    }
    std::cout << "model: " << ckpts.size() << " checkpoint(s), " << meta.model.classes << " classes, mode " << meta.mode
              << "\n";
    for (const std::string& c : ckpts) std::cout << "  " << c << "\n";
    std::vector<std::string> inputs = data::find_nifti_files(input);
    inputs.erase(std::remove_if(inputs.begin(), inputs.end(),
                                [](const std::string& p) {
                                  return p.find("/labelsTr/") != std::string::npos ||
                                         p.find("/labelsTs/") != std::string::npos;
                                }),
                 inputs.end());
    if (inputs.empty()) throw Error(input + ": no NIfTI images");
    for (const std::string& in : inputs) {
      eval::PredictResult r = eval::predict_file(in, out, ptrs, meta, window_batch, device, !no_png);
      std::cout << in << " -> " << r.label_path << (r.png_path.empty() ? "" : " + " + r.png_path) << "\n";
    }
    return 0;
  } catch (const data::DataError& e) {  // an input or label file refused
    std::cerr << "predict: error: " << e.what() << std::endl;
    return 3;
  } catch (const std::bad_alloc&) {
    std::cerr << "predict: error: out of host memory (try a smaller --window-batch)" << std::endl;
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "predict: error: " << e.what() << std::endl;
    return 1;
  }
}
