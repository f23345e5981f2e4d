// What every program does with --device and --threads, in one place.
#pragma once
#include <string>

#include "engine/check.h"
#include "engine/device.h"

namespace hdssl::app {

// A --device value that is not cpu, cuda, cuda:N or auto.
struct BadDeviceName : Error {
  using Error::Error;
};

// Sets the CPU math threads of OpenMP and OpenBLAS; threads <= 0 means every core. Returns the count.
int set_math_threads(int threads);

// Turns a --device value into a usable Device: starts the CUDA backend when one is asked for (or for
// "auto": the first GPU when one is usable, else the CPU). Throws BadDeviceName for an unknown name and
// hdssl::Error, saying why, when a GPU is asked for but none is usable.
Device open_device(const std::string& name);

// The line every program prints after open_device: which device, and for "auto" why ("device: cpu
// (--device auto: no CUDA device)").
std::string device_line(const std::string& requested, Device chosen);

// Every program's --device default: the first GPU when one is usable, else the CPU.
constexpr const char* kDefaultDevice = "auto";

}  // namespace hdssl::app
