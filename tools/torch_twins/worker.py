"""PyTorch side of tools/bench_vs_torch.py: builds one workload, then times rounds on request.

  python worker.py MODEL [key=value ...]      MODEL: dcgan | gpt | conv_fwd | conv_wgrad
Prints one JSON line {"ready": ...} after warm-up, then for each stdin line "N" runs N steps and prints
{"wall": seconds, "cpu": process CPU seconds}; "quit" (or EOF) ends it. Imports no artjax.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402


def conv_step(kind, batch=128, size=14, cin=128, cout=64):
  torch.manual_seed(0)
  x = torch.randn(batch, cin, size, size)
  w = (torch.randn(cout, cin, 3, 3) * 0.05).requires_grad_()
  if kind == "conv_fwd":
    def step():
      with torch.no_grad():
        return torch.nn.functional.conv2d(x, w, padding=1)
  else:
    def step():  # forward, then the weight gradient for cotangent = output (as the JAX side)
      y = torch.nn.functional.conv2d(x, w, padding=1)
      return torch.autograd.grad(y, w, y.detach())[0]
  return step


def main():
  model, kw = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
  kw = {k: (float(v) if "." in v else int(v)) for k, v in kw.items()}
  if "threads" in kw:
    torch.set_num_threads(int(kw.pop("threads")))
  if model == "dcgan":
    import dcgan
    step = dcgan.make_step(**kw)
  elif model == "gpt":
    import gpt
    step = gpt.make_step(**kw)
  elif model in ("conv_fwd", "conv_wgrad"):
    step = conv_step(model, **kw)
  else:
    raise SystemExit(f"unknown model {model!r}")
  for _ in range(3):
    step()
  print(json.dumps({"ready": model, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
  for line in sys.stdin:
    if line.strip() in ("", "quit"):
      break
    n = int(line)
    c, t = time.process_time(), time.perf_counter()
    for _ in range(n):
      step()
    print(json.dumps({"wall": time.perf_counter() - t, "cpu": time.process_time() - c}), flush=True)


if __name__ == "__main__":
  main()
