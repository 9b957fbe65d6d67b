#!/usr/bin/env bash
# One batch script over K GPUs as a Slurm job array (docs/docker-and-cloud.md, "Sharding"):
#   jobid=$(sbatch --parsable deploy/slurm/batch-array.sh /shared/script.yaml /shared/batch-out)
#   sbatch --dependency=afterok:"$jobid" --wrap "voice-synth batch /shared/script.yaml --out-exact /shared/batch-out --merge"
# Each array task renders shard SLURM_ARRAY_TASK_ID (from 0) of SLURM_ARRAY_TASK_COUNT into the
# shared output folder; a re-submitted task resumes its shard. --array sets K (here 3).
# PAB_RUN runs the app: `voice-synth` where the project is installed, or through the image, e.g.
#   PAB_RUN="apptainer exec --nv docker://ghcr.io/you/py-audio-box:cuda voice-synth"
#SBATCH --job-name=pab-batch
#SBATCH --array=0-2
#SBATCH --gres=gpu:1
#SBATCH --time=12:00:00
#SBATCH --output=pab-batch-%A_%a.log
set -euo pipefail
script="${1:?usage: sbatch batch-array.sh SCRIPT OUT_DIR}"
out="${2:?usage: sbatch batch-array.sh SCRIPT OUT_DIR}"
read -r -a run <<<"${PAB_RUN:-voice-synth}"
exec "${run[@]}" batch "$script" --out-exact "$out" --shard auto
