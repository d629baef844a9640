#!/usr/bin/env bash
# HOI-R1 stage 1: SFT on teacher-distilled reasoning, verl's sft_trainer under torchrun with the hoi_sft recipe
# (verl_hoi/configs/recipe/hoi_sft.yaml: every setting is explained there).
#
# Usage: SFT_DATA=data/hicodet_sft/sft.parquet NGPUS=8 bash recipes/sft.sh [hoi_family=NAME] [overrides...]
#   hoi_family   the model family (verl_hoi/configs/hoi_family/): qwen2_5_vl (default), qwen3_vl or qwen3_5;
#                give recipes/grpo.sh the same one. SFT_DATA must come from rows converted for it
#                (data_prep/hicodet_to_parquet.py --family NAME).
#   SFT_DATA     sft.parquet from data_prep/distill_thinking.py (default: data/hicodet_sft/sft.parquet)
#   MODEL_PATH   the start model (default: the family's base model, e.g. Qwen/Qwen2.5-VL-3B-Instruct)
#   CKPT_DIR     checkpoint folder (default: the recipe's checkpoints/verl_hoi/hoi_r1_sft_<run name of the
#                family>, e.g. hoi_r1_sft_qwen2_5_vl_3b, where recipes/grpo.sh looks)
#   NGPUS        GPUs per node (default: all that nvidia-smi lists)
#   NNODES       nodes (default 1); for NNODES > 1 run the script on every node with the same MASTER_ADDR (node
#                0's address) and MASTER_PORT (default 29500), and NODE_RANK from 0 (node 0) to NNODES - 1
#   PYTHON       interpreter with verl-hoi installed (default: python3), torchrun as $PYTHON -m torch.distributed.run
# Extra arguments are Hydra overrides, e.g. hoi_family=qwen3_vl optim.lr=2e-5 trainer.logger='[console,wandb]';
# `bash recipes/sft.sh --cfg job` prints the composed config without a GPU or verl's training extras
# (`--cfg job --resolve` with the family's values filled in).
set -euo pipefail

SFT_DATA=${SFT_DATA:-data/hicodet_sft/sft.parquet}
NGPUS=${NGPUS:-$( (nvidia-smi --list-gpus 2>/dev/null || true) | wc -l)}
NNODES=${NNODES:-1}
PYTHON=${PYTHON:-python3}

# Settings this script used to read from the environment are Hydra overrides now: stop rather than ignore them.
for moved in VAL_DATA:data.val_files EPOCHS:trainer.total_epochs LR:optim.lr WARMUP_RATIO:optim.lr_warmup_steps_ratio \
    BATCH_SIZE:data.train_batch_size MICRO_BATCH_SIZE:data.micro_batch_size_per_gpu MAX_LENGTH:data.max_length \
    MAX_TOKEN_LEN_PER_GPU:data.max_token_len_per_gpu SAVE_FREQ:trainer.save_freq; do
    name=${moved%%:*}
    if [ -n "${!name:-}" ]; then
        echo "error: $name is no longer read: pass ${moved#*:}=${!name} as an argument instead" >&2
        exit 2
    fi
done
if [ -n "${PRINT_CONFIG:-}" ]; then
    echo "error: PRINT_CONFIG is no longer read: pass --cfg job as an argument instead" >&2
    exit 2
fi

print_only=
for arg in "$@"; do
    case $arg in
        --cfg | --cfg=* | -c | --info | --info=* | -i | --help | -h | --hydra-help) print_only=1 ;;
    esac
done

if [ ! -f "$SFT_DATA" ]; then
    echo "error: SFT data $SFT_DATA not found (make it with data_prep/distill_thinking.py, or set SFT_DATA)" >&2
    exit 2
fi

overrides=(+recipe=hoi_sft data.train_files="$SFT_DATA")
if [ -n "${MODEL_PATH:-}" ]; then overrides+=(model.path="$MODEL_PATH"); fi
if [ -n "${CKPT_DIR:-}" ]; then overrides+=(trainer.default_local_dir="$CKPT_DIR"); fi
# verl's SFT trainer takes its world from torchrun; these two only make the logged config say what ran.
overrides+=(trainer.nnodes="$NNODES" trainer.n_gpus_per_node="$NGPUS" "$@")

if [ -n "$print_only" ]; then
    cmd=("$PYTHON" -m verl_hoi.verl_plugin.sft_config_app "${overrides[@]}")
else
    if [ "$NGPUS" -lt 1 ]; then
        echo "error: no GPU found (set NGPUS to the number of GPUs per node)" >&2
        exit 2
    fi
    if [ "$NNODES" = 1 ]; then
        launch=(--standalone --nnodes=1)
    elif [ -z "${MASTER_ADDR:-}" ] || [ -z "${NODE_RANK:-}" ]; then
        echo "error: NNODES=$NNODES needs MASTER_ADDR (node 0's address) and NODE_RANK (this node's, from 0)" >&2
        exit 2
    else
        launch=(--nnodes="$NNODES" --node-rank="$NODE_RANK" --master-addr="$MASTER_ADDR"
            --master-port="${MASTER_PORT:-29500}")
    fi
    cmd=("$PYTHON" -m torch.distributed.run "${launch[@]}" --nproc-per-node="$NGPUS"
        -m verl.trainer.sft_trainer "${overrides[@]}")
fi
printf '+' >&2
printf ' %q' "${cmd[@]}" >&2
printf '\n' >&2
exec "${cmd[@]}"
