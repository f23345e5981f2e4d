// The CUDA step capture (engine/step_graph.h): stream capture of the backend's one stream into a CUDA
// graph, served by a private pool of the caching allocator (cuda/allocator.h). cuda::init() registers it.
#pragma once

namespace hdssl::cuda {

// Registers the CUDA StepCapturer with engine/step_graph.h (called once by init()).
void register_step_capture();

}  // namespace hdssl::cuda
