// The pretraining memory estimate: the parameter count is exact, the estimate of one step's peak is
// checked against the peak resident memory (VmHWM) measured around real steps in a fresh child process,
// and the refusal names the estimate, the memory available and settings that fit.
#include <gtest/gtest.h>
#include <omp.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "autograd/autocast.h"
#include "autograd/optim.h"
#include "engine/backend.h"
#include "models/memory_estimate.h"
#include "tests/sanitizer/under_asan.h"

using namespace hdssl;
using namespace hdssl::models;

namespace {

int64_t status_bytes(const char* key) {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind(std::string(key) + ":", 0) == 0) return std::stoll(line.substr(std::string(key).size() + 1)) * 1024;
  return -1;
}

// Runs one full step (loss of both views, backward, Adam) of `c` in a forked child on one thread and
// returns the growth of its peak RSS over the RSS it had before building anything.
int64_t measured_step_peak(const MemoryConfig& c) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    omp_set_num_threads(1);
    const int64_t base = status_bytes("VmRSS");
    { std::ofstream("/proc/self/clear_refs") << "5"; }  // reset VmHWM to the current RSS
    Rng rng(5);
    Pretrainer model(c.model, rng);
    model.train();
    Adam adam(model.parameters());
    const int64_t B = c.batch_pairs, n = c.voxels_per_pair;
    const Shape vs{B, 1, c.patch[0], c.patch[1], c.patch[2]};
    auto rnd = [&] {
      std::vector<float> v(size_t(numel(vs)));
      for (float& x : v) x = float(rng.uniform());
      return Tensor::from_vector(v, vs);
    };
    PretrainInputs in{rnd(), rnd(), rnd(), rnd(), Tensor(), Tensor()};
    auto coords = [&] {
      std::vector<int32_t> v(size_t(B * n * 3));
      for (size_t i = 0; i < v.size(); ++i) v[i] = int32_t(rng.randint(0, c.patch[i % 3]));
      return Tensor::from_vector(v, {B, n, 3});
    };
    in.coords_a = coords();
    in.coords_b = coords();
    AutocastGuard precision(c.bf16 ? Precision::BF16 : Precision::FP32);
    PretrainLoss loss = model.loss(in);
    loss.total.backward();
    loss = {};
    adam.step();
    adam.zero_grad();
    int64_t peak = status_bytes("VmHWM") - base;
    ssize_t w = write(fds[1], &peak, sizeof peak);
    (void)w;
    _exit(0);
  }
  close(fds[1]);
  int64_t peak = -1;
  if (read(fds[0], &peak, sizeof peak) != sizeof peak) peak = -1;
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return peak;
}

PretrainConfig small(int base, int scales, int blocks) {
  PretrainConfig m;
  m.base = base;
  m.scales = scales;
  m.blocks = blocks;
  return m;
}

}  // namespace

TEST(MemoryEstimate, ParameterCountIsExact) {
  for (const PretrainConfig& m : {PretrainConfig::ours(), PretrainConfig::vox2vec(), small(4, 2, 1), small(6, 3, 3)}) {
    Rng rng(1);
    Pretrainer p(m, rng);
    EXPECT_EQ(pretrain_parameter_count(m), p.parameter_count()) << m.to_json();
  }
  PretrainConfig single = small(4, 3, 1);
  single.restoration_single_conv = true;
  Rng rng(1);
  EXPECT_EQ(pretrain_parameter_count(single), Pretrainer(single, rng).parameter_count());
}

TEST(MemoryEstimate, MatchesMeasuredPeakOfRealSteps) {
  if (hdssl::test::kUnderAsan) GTEST_SKIP() << "AddressSanitizer inflates resident memory: peaks are not the program's";
  // The step's own memory (everything but the process baseline, the loader's prefetch and the dataset)
  // against the child's peak RSS growth. Printed for the record. Never more than 20 % under (an
  // underestimate lets the OOM killer in) nor 35 % over (the smallest case, where fixed terms dominate,
  // is ~27 % over; the larger ones within 10 %).
  struct Case {
    PretrainConfig m;
    int64_t B;
    std::array<int64_t, 3> patch;
    int64_t n;
  };
  const Case cases[] = {{small(8, 3, 1), 2, {32, 32, 32}, 256},
                        {small(16, 4, 2), 2, {64, 64, 32}, 512},
                        {PretrainConfig::ours(), 1, {64, 64, 16}, 1024}};
  for (const bool bf16 : {false, true})
    for (const Case& k : cases) {
      MemoryConfig c;
      c.bf16 = bf16;
      c.model = k.m;
      c.batch_pairs = k.B;
      c.patch = k.patch;
      c.voxels_per_pair = k.n;
      c.threads = 1;
      c.prefetch = 0;
      MemoryEstimate e = estimate_pretrain_memory(c);
      const int64_t est = e.host - e.baseline;
      const int64_t got = measured_step_peak(c);
      ASSERT_GT(got, 0);
      std::printf(
          "%s base %d scales %d blocks %d, B %lld, patch %lldx%lldx%lld: estimate %.1f MiB, measured %.1f MiB "
          "(%.2fx)\n",
          bf16 ? "bf16" : "fp32", k.m.base, k.m.scales, k.m.blocks, (long long)k.B, (long long)k.patch[0],
          (long long)k.patch[1], (long long)k.patch[2], est / 1048576.0, got / 1048576.0, double(est) / double(got));
      EXPECT_GT(double(est), 0.80 * double(got)) << e.str();
      EXPECT_LT(double(est), 1.35 * double(got)) << e.str();
    }
}

TEST(MemoryEstimate, RefusalGivesEstimateAvailableAndSettingsThatFit) {
  MemoryConfig c;  // the paper's defaults: 10 pairs of 128x128x32, base 32, 5 scales
  c.model = PretrainConfig::ours();
  c.threads = 2;
  const MemoryEstimate e = estimate_pretrain_memory(c);
  EXPECT_GT(e.host, int64_t(8) << 30) << e.str();  // the OOM of the issue: far beyond a 24 GB machine's share
  EXPECT_EQ(memory_refusal(c, e.host * 2, "test"), "");
  const int64_t avail = int64_t(16) << 30;
  const std::string m = memory_refusal(c, avail, "MemAvailable in /proc/meminfo");
  std::printf("%s\n", m.c_str());  // for the record: the paper's defaults on a machine with 16 GiB free
  EXPECT_NE(m.find("needs about host"), std::string::npos) << m;
  EXPECT_NE(m.find("only 16.00 GiB is available (MemAvailable"), std::string::npos) << m;
  EXPECT_NE(m.find("--batch-pairs "), std::string::npos) << m;
  EXPECT_NE(m.find("--patch "), std::string::npos) << m;
  EXPECT_NE(m.find("--device cuda"), std::string::npos) << m;
  // The batch it suggests does fit, one more does not.
  const size_t at = m.find("--batch-pairs ") + 14;
  MemoryConfig t = c;
  t.batch_pairs = std::stoll(m.substr(at));
  EXPECT_LE(estimate_pretrain_memory(t).host * 11 / 10, avail);
  t.batch_pairs += 1;
  EXPECT_GT(estimate_pretrain_memory(t).host * 11 / 10, avail);
  std::string source;
  EXPECT_GT(available_host_memory(&source), 0);
  EXPECT_FALSE(source.empty());
}

// On a GPU the free device memory decides too (./pretrain passes available_device_memory(device)); here a
// number stands in for the GPU this machine may not have.
TEST(MemoryEstimate, OnAGpuTheFreeDeviceMemoryDecidesWithTheSameRefusal) {
  MemoryConfig c;  // the paper's defaults on a GPU
  c.model = PretrainConfig::ours();
  c.cuda = true;
  const MemoryEstimate e = estimate_pretrain_memory(c);
  ASSERT_GT(e.device, int64_t(1) << 30) << e.str();
  const int64_t host = e.host * 2;  // the host is never short below
  EXPECT_EQ(memory_refusal(c, host, "test", e.device * 2), "");
  EXPECT_EQ(memory_refusal(c, host, "test", e.device * 11 / 10), "");  // the 10 % margin, just
  EXPECT_EQ(memory_refusal(c, host, "test", -1), "") << "an unknown GPU amount is not checked";

  const int64_t gpu = e.device / 2;
  const std::string m = memory_refusal(c, host, "MemAvailable in /proc/meminfo", gpu);
  std::printf("%s\n", m.c_str());  // for the record: the paper's defaults on a GPU with half of it free
  EXPECT_NE(m.find("not enough memory for this configuration: it needs about GPU "), std::string::npos) << m;
  char free_text[64];
  std::snprintf(free_text, sizeof free_text, "but the GPU has %.2f GiB free. ", double(gpu) / double(1 << 30));
  EXPECT_NE(m.find(free_text), std::string::npos) << m;
  EXPECT_EQ(m.find("is available ("), std::string::npos) << "the host is not short: " << m;
  EXPECT_EQ(m.find("--device cuda"), std::string::npos) << m;
  // The batch it suggests fits the GPU's free memory, one more does not.
  ASSERT_NE(m.find("--batch-pairs "), std::string::npos) << m;
  MemoryConfig t = c;
  t.batch_pairs = std::stoll(m.substr(m.find("--batch-pairs ") + 14));
  EXPECT_LE(estimate_pretrain_memory(t).device * 11 / 10, gpu);
  t.batch_pairs += 1;
  EXPECT_GT(estimate_pretrain_memory(t).device * 11 / 10, gpu);
  EXPECT_NE(m.find("--patch "), std::string::npos) << m;

  // The GPU is checked when the host's amount is unknown, and both are named when both are short.
  EXPECT_EQ(memory_refusal(c, -1, "", gpu), m);
  const std::string both = memory_refusal(c, e.host / 2, "RLIMIT_AS (ulimit -v)", gpu);
  EXPECT_NE(both.find("the GPU has "), std::string::npos) << both;
  EXPECT_NE(both.find(" free and only "), std::string::npos) << both;
  EXPECT_NE(both.find("is available (RLIMIT_AS (ulimit -v))"), std::string::npos) << both;

  // On the CPU a device amount plays no part, and the CPU backend reports none.
  MemoryConfig cpu = c;
  cpu.cuda = false;
  const int64_t cpu_host = estimate_pretrain_memory(cpu).host * 2;
  EXPECT_EQ(memory_refusal(cpu, cpu_host, "test", 1), "");
  EXPECT_EQ(available_device_memory(Device::cpu()), -1);
  EXPECT_EQ(backend(Device::cpu()).free_memory(), -1);
}

TEST(MemoryEstimate, AnAddressSpaceLimitIsSeenAndRefusesThePaperDefaults) {
  if (hdssl::test::kUnderAsan)
    GTEST_SKIP() << "AddressSanitizer's shadow memory cannot run under an address-space limit";
  // ulimit -v in a child: 512 MiB above what it maps now.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    rlimit rl{};
    rl.rlim_cur = rl.rlim_max = rlim_t(status_bytes("VmSize") + (int64_t(512) << 20));
    setrlimit(RLIMIT_AS, &rl);
    std::string source;
    const int64_t avail = available_host_memory(&source);
    MemoryConfig c;
    c.model = PretrainConfig::ours();
    std::string msg = std::to_string(avail) + "\n" + source + "\n" + memory_refusal(c, avail, source);
    ssize_t w = write(fds[1], msg.data(), msg.size());
    (void)w;
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, size_t(n));
  close(fds[0]);
  waitpid(pid, nullptr, 0);
  const int64_t avail = std::stoll(out);
  EXPECT_LE(avail, int64_t(512) << 20) << out;
  EXPECT_GT(avail, int64_t(400) << 20) << out;
  EXPECT_NE(out.find("RLIMIT_AS (ulimit -v)"), std::string::npos) << out;
  EXPECT_NE(out.find("not enough memory"), std::string::npos) << out;
}
