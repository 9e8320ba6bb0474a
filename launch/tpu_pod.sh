#!/bin/bash
# artjax on a Cloud TPU pod slice (e.g. v5e-32 / v4-32): one process per TPU VM host, started on all
# hosts at once with `gcloud ... ssh --worker=all`. `--distributed` lets JAX find the other hosts through
# the TPU metadata (no addresses to pass); each process drives its host's 4 or 8 chips.
#
#   TPU_NAME=my-pod ZONE=us-central2-b BUCKET=my-bucket launch/tpu_pod.sh configs/diffusion/cifar10_ddpm.py
#   TPU_NAME=my-pod ZONE=us-central2-b BUCKET=my-bucket launch/tpu_pod.sh configs/X.py --config.batch_size=1024
#
# Prerequisites on every worker (same command with --worker=all): the repository at ~/artjax and its venv
# with jax[tpu]; see docs/cluster.md. The workdir is a gs:// path (every host joins each checkpoint save,
# and the TPU VMs share no disk); only process 0 writes logs and sample grids. TFDS data can also live in
# gs:// (--config.data.tfds_data_dir=gs://...).
#
# Preemption (spot/preemptible TPUs) sends SIGTERM to every host's process: they agree within 10 steps,
# save and exit 0; rerun this script to resume.
set -euo pipefail

CONFIG=${1:?usage: launch/tpu_pod.sh CONFIG [artjax.train flags...]}
shift
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${BUCKET:?set BUCKET}"
RUN=${RUN:-$(basename "$CONFIG" .py)}
WORKDIR=gs://$BUCKET/runs/$RUN
EXTRA=$(printf ' %q' "$@")

gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all \
  --command="set -o pipefail; cd ~/artjax && PYTHONUNBUFFERED=1 .venv/bin/python -m artjax.train --distributed \
--config $(printf %q "$CONFIG") --workdir $(printf %q "$WORKDIR")$EXTRA 2>&1 | tee -a ~/artjax-$RUN.log"
