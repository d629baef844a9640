#!/usr/bin/env bash
# HOI-R1 stage 2: GRPO with the HOI rewards, verl's main_ppo with the hoi_grpo recipe
# (verl_hoi/configs/recipe/hoi_grpo.yaml: every setting is explained there).
#
# Usage: DATA_DIR=data/hicodet NGPUS=8 bash recipes/grpo.sh [hoi_family=NAME] [overrides...]
#   hoi_family  the model family (verl_hoi/configs/hoi_family/): qwen2_5_vl (default), qwen3_vl or qwen3_5,
#               the one recipes/sft.sh trained; DATA_DIR must be converted for it (--family)
#   SFT_DIR     recipes/sft.sh's checkpoint folder (its CKPT_DIR); its latest Hugging Face copy is the
#               start model (default: the folder the hoi_sft recipe writes for the family, e.g.
#               checkpoints/verl_hoi/hoi_r1_sft_qwen2_5_vl_3b)
#   MODEL_PATH  or the start model itself (a Hugging Face folder or hub id)
#   DATA_DIR    folder with train.parquet and test.parquet from data_prep/hicodet_to_parquet.py
#   NGPUS       GPUs per node; NNODES nodes (Ray cluster already started for NNODES > 1)
#   PYTHON      interpreter with verl-hoi installed (default: python3)
# Extra arguments are Hydra overrides, e.g. hoi_family=qwen3_vl trainer.experiment_name=run2
# data.train_batch_size=64; `bash recipes/grpo.sh --cfg job` prints the composed config without starting anything
# (`--cfg job --resolve` with the family's values filled in).
set -euo pipefail

DATA_DIR=${DATA_DIR:-data/hicodet}
NGPUS=${NGPUS:-8}
NNODES=${NNODES:-1}
PYTHON=${PYTHON:-python3}

family=()
for arg in "$@"; do
    case $arg in
        hoi_family=*) family=("$arg") ;;
    esac
done

if [ -z "${MODEL_PATH:-}" ]; then
    if [ -z "${SFT_DIR:-}" ]; then
        # Where the hoi_sft recipe puts this family's checkpoints, asked from the recipe itself.
        SFT_DIR=$("$PYTHON" -m verl_hoi.verl_plugin.sft_config_app +recipe=hoi_sft "${family[@]}" \
            --cfg job --resolve --package trainer.default_local_dir)
    fi
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
