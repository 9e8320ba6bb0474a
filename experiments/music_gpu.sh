#!/bin/bash
# The music family's GPU checks, as one bounded script (run from the repo root on a GPU machine where
# jax[cuda] is installed; wheels for what the image lacks in shared/wheels, data in shared/data):
#   Coconet (configs/music/jsb_coconet.py:gpu) trained for a fixed time, its chronological test NLL,
#   a harmonization and samples (tools/music_report.py), and every music model's throughput
#   (tools/bench_music.py). Everything lands in $OUT (a tarball of the report, and the log).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
D=shared/data/jsb_chorales
TRAIN_SECONDS=${TRAIN_SECONDS:-240}
{
  python -m pip install -q --no-index --find-links shared/wheels grain ml_collections tensorboardX pretty_midi mido 2>&1 | tail -2
  export PYTHONPATH=$PWD  # artjax from the checkout (pip install --no-deps -e . needs setuptools from an index)
  python -c "import jax; print('jax', jax.__version__, jax.devices())"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  # SIGTERM at the time limit: the loop saves a checkpoint and exits 0 (preemption path).
  timeout -s TERM $TRAIN_SECONDS python -m artjax.train --config configs/music/jsb_coconet.py:gpu \
      --workdir /tmp/coconet --config.data.dir=$D --config.total_steps=${STEPS:-6000} \
      --config.checkpoint_every=1000 --config.eval_every=1000 2>&1 | grep -v "it/s\]" | tail -15
  tail -2 /tmp/coconet/metrics.jsonl
  python tools/music_report.py --workdir /tmp/coconet --data_dir $D --out /tmp/report --chorale test/000 \
      --num 4 --bars 8 --batch 64 --order ${ORDER:-chronological} 2>&1 | grep -v "^W1" | head -80
  [ -n "${SKIP_BENCH:-}" ] || python tools/bench_music.py --data_dir $D --configs jsb_lstm,jsb_tcn,jsb_transformer,jsb_coconet,jsb_coconet:gpu \
      --steps 30 --num 16 --frames 64 --json /tmp/report/bench.jsonl 2>&1 | grep -v "^W1"
} 2>&1 | tee $OUT/log.txt
cp /tmp/coconet/config.json /tmp/report/ 2>/dev/null
tar czf $OUT/report.tgz -C /tmp/report .
