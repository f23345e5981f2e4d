# The PyTorch yardstick of the engine micro-benchmark (scripts/bench-cpu-conv.sh runs it next to ./bench).
"""CPU anchor for the engine issue's micro-benchmark: conv3d forward+backward, 2x16x32x32x16 -> 16, 3x3x3."""
import time, torch
torch.manual_seed(0)
import sys
if len(sys.argv) > 1: torch.set_num_threads(int(sys.argv[1]))
x = torch.randn(2, 16, 32, 32, 16, requires_grad=True)
c = torch.nn.Conv3d(16, 16, 3, padding=1)
for _ in range(3):
    c(x).sum().backward()
ts = []
for _ in range(20):
    t = time.perf_counter(); y = c(x); y.sum().backward(); ts.append(time.perf_counter() - t)
ts.sort()
print(f"torch {torch.__version__} threads {torch.get_num_threads()}: conv3d fwd+bwd median {ts[10]*1e3:.2f} ms min {ts[0]*1e3:.2f} ms")
