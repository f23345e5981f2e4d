#include "apps/common/device_setup.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <thread>

#include "engine/backend.h"
#ifdef HDSSL_HAVE_CUDA
#include "cuda/backend.h"
#endif

namespace hdssl::app {

int set_math_threads(int threads) {
  const int t = threads > 0 ? threads : int(std::max(1u, std::thread::hardware_concurrency()));
  omp_set_num_threads(t);
  openblas_set_num_threads(t);
  return t;
}

Device open_device(const std::string& name) {
  if (name == "cpu") return Device::cpu();
  Device device;
  if (name != "auto") {
    try {
      device = Device::parse(name);
    } catch (const Error& e) {
      throw BadDeviceName(std::string("--device: ") + e.what());
    }
  }
#ifdef HDSSL_HAVE_CUDA
  cuda::init();
#endif
  if (name == "auto") return cuda_available() ? Device::cuda(0) : Device::cpu();
  if (!cuda_available())
    throw Error("--device " + name + ": no CUDA device available (" +
#ifdef HDSSL_HAVE_CUDA
                std::string("this build has CUDA support but found no usable GPU") +
#else
                std::string("this build has no CUDA support; rebuild on a machine with the CUDA toolkit and cuDNN") +
#endif
                "); use --device cpu");
  return device;
}

std::string device_line(const std::string& requested, Device chosen) {
  if (requested != "auto") return "device: " + chosen.str();
  return "device: " + chosen.str() +
         " (--device auto: " + (chosen.is_cuda() ? "a CUDA device is usable" : "no usable CUDA device") + ")";
}

}  // namespace hdssl::app
