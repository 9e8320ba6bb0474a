#!/bin/bash
# Issue 13's GPU figures as one bounded script (run from the repo root on a GPU machine with jax[cuda];
# wheels for what the image lacks in shared/wheels, tiny Shakespeare in shared/data): the train-step
# throughput, MFU and memory of (1) the nanoGPT GPU Shakespeare config and (2) a GPT-2-small-shaped
# model (12 layers x 768, 12 heads, context 1024; a character vocabulary, so 85M parameters, not 124M),
# both bf16 with float32 master weights. JSON lines land in $OUT.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
T=shared/data/tiny_shakespeare/input.txt
{
  python -m pip install -q --no-index --find-links shared/wheels grain ml_collections tensorboardX 2>&1 | tail -2
  export PYTHONPATH=$PWD
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  python tools/bench_train.py --config configs/text/shakespeare_char_gpu.py --config.data.path=$T \
      --steps 50 --json $OUT/gpt_shakespeare_gpu.json 2>&1 | grep -v "^W1"
  python tools/bench_train.py --config configs/text/shakespeare_char_gpu.py --config.data.path=$T \
      --config.model.num_layers=12 --config.model.num_heads=12 --config.model.emb_dim=768 \
      --config.model.max_len=1024 --config.data.seq_len=1024 --config.model.dropout=0.0 \
      --config.model.scan_layers=True --config.batch_size=${BATCH:-32} --steps 20 \
      --json $OUT/gpt_12x768_1024.json 2>&1 | grep -v "^W1"
} 2>&1 | tee $OUT/log.txt
