#!/usr/bin/env bash
# HOI-R1 stage 2: GRPO with the HOI rewards, verl's main_ppo with the hoi_grpo recipe
# (verl_hoi/configs/recipe/hoi_grpo.yaml: every setting is explained there).
#
# Usage: DATA_DIR=data/hicodet NGPUS=8 bash recipes/grpo.sh [overrides...]
#   SFT_DIR     recipes/sft.sh's checkpoint folder (its CKPT_DIR); its latest Hugging Face copy is the
#               start model
#   MODEL_PATH  or the start model itself (a Hugging Face folder or hub id)
#   DATA_DIR    folder with train.parquet and test.parquet from data_prep/hicodet_to_parquet.py
#   NGPUS       GPUs per node; NNODES nodes (Ray cluster already started for NNODES > 1)
#   PYTHON      interpreter with verl-hoi installed (default: python3)
# Extra arguments are Hydra overrides, e.g. trainer.experiment_name=run2 data.train_batch_size=64;
# `bash recipes/grpo.sh --cfg job` prints the composed config without starting anything.
set -euo pipefail

SFT_DIR=${SFT_DIR:-checkpoints/verl_hoi/hoi_r1_sft_qwen2_5_vl_3b}
DATA_DIR=${DATA_DIR:-data/hicodet}
NGPUS=${NGPUS:-8}
NNODES=${NNODES:-1}
PYTHON=${PYTHON:-python3}

if [ -z "${MODEL_PATH:-}" ]; then
    tracker="$SFT_DIR/latest_checkpointed_iteration.txt"
    if [ ! -f "$tracker" ]; then
        echo "error: $tracker not found (run recipes/sft.sh, or set SFT_DIR or MODEL_PATH)" >&2
        exit 2
    fi
    MODEL_PATH="$SFT_DIR/global_step_$(cat "$tracker")/huggingface"
fi
for split in train test; do
    if [ ! -f "$DATA_DIR/$split.parquet" ]; then
        echo "error: $DATA_DIR/$split.parquet not found (run data_prep/hicodet_to_parquet.py, or set DATA_DIR)" >&2
        exit 2
    fi
done

cmd=(
    "$PYTHON" -m verl.trainer.main_ppo +recipe=hoi_grpo
    actor_rollout_ref.model.path="$MODEL_PATH"
    data.train_files="$DATA_DIR/train.parquet"
    data.val_files="$DATA_DIR/test.parquet"
    trainer.n_gpus_per_node="$NGPUS"
    trainer.nnodes="$NNODES"
    "$@"
)
printf '+' >&2
printf ' %q' "${cmd[@]}" >&2
printf '\n' >&2
exec "${cmd[@]}"
