r"""Converts pytorch-fid's FID Inception weights (a PyTorch state dict) to the .npz `artjax.evaluate --inception` reads.

  pip install torch     # CPU build is enough; artjax itself does not need torch
  # pt_inception-2015-12-05-6726825d.pth from https://github.com/mseitzer/pytorch-fid/releases (fid_weights)
  python tools/convert_inception.py pt_inception-2015-12-05-6726825d.pth --out fid_inception.npz
  python -m artjax.evaluate --workdir runs/X --inception fid_inception.npz

Arrays keep their PyTorch names and layouts; artjax.eval.inception.load_npz maps and transposes them,
and this tool checks that every FIDInceptionV3 weight is found. Not run in artjax's own environment
(no torch, no internet there): it has only been checked through the loader's round-trip test.
"""

import argparse
import sys

import numpy as np


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("pth", help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth")
  ap.add_argument("--out", required=True, help="output .npz")
  args = ap.parse_args()
  try:
    import torch
  except ImportError:
    sys.exit("error: this tool needs PyTorch (pip install torch) to read the .pth file")
  state = torch.load(args.pth, map_location="cpu", weights_only=True)
  arrays = {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "numpy")}
  np.savez(args.out, **arrays)

  from artjax.errors import ArtjaxError
  from artjax.eval.inception import load_npz

  try:
    load_npz(args.out)  # every weight present, every shape right
  except ArtjaxError as e:
    sys.exit(f"error: {e}")
  print(f"wrote {len(arrays)} arrays to {args.out}")


if __name__ == "__main__":
  main()
