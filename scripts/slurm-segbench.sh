#!/usr/bin/env bash
# Example SLURM batch script: segbench over all GPUs of an allocation with torchrun.
#   sbatch --nodes 2 --gres gpu:8 scripts/slurm-segbench.sh suites/paper-ade20k.yaml
#SBATCH --job-name=segbench
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
set -euo pipefail
SUITE="${1:?usage: sbatch scripts/slurm-segbench.sh SUITE [OUT_DIR]}"
OUT="${2:-results}"
GPUS_PER_NODE="${SLURM_GPUS_ON_NODE:-$(nvidia-smi -L | wc -l)}"
MASTER="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
srun torchrun --nnodes "$SLURM_NNODES" --nproc-per-node "$GPUS_PER_NODE" \
     --rdzv-id "$SLURM_JOB_ID" --rdzv-backend c10d --rdzv-endpoint "$MASTER:29500" \
     -m harness run "$SUITE" --out "$OUT"
