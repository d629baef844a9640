#!/usr/bin/env bash
# Stage 1 of HOI-R1: supervised fine-tuning on teacher-distilled reasoning with verl's SFT trainer.
#
#   bash recipes/sft.sh                                   # defaults below
#   NGPUS=4 LR=2e-5 bash recipes/sft.sh trainer.logger='[console,wandb]'   # env vars and Hydra overrides
#   PRINT_CONFIG=1 bash recipes/sft.sh                    # print the composed config, train nothing (CPU is enough)
#
# Input: OUT/sft.parquet from data_prep/distill_thinking.py (verl MultiTurnSFTDataset rows), read by verl-hoi's
# HOISFTDataset, which checks every row before training: its image decodes at the row's image_size, and the row's
# pixel budget and the processor's give the image the model_size its boxes assume. A bad row stops the run with a
# message naming the file and the row; `+data.hoi.on_bad_row=skip` drops such rows instead and reports their number.
# Output: checkpoints in CKPT_DIR, including a Hugging Face model (checkpoint hf_model) to start GRPO from.
# Extra arguments are Hydra overrides of verl's sft_trainer_engine.yaml and win over everything here.
set -euo pipefail

SFT_DATA=${SFT_DATA:-data/hicodet_sft/sft.parquet}
VAL_DATA=${VAL_DATA:-null}
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-VL-3B-Instruct}
NGPUS=${NGPUS:-$( (nvidia-smi --list-gpus 2>/dev/null || true) | wc -l)}
EPOCHS=${EPOCHS:-1}
LR=${LR:-1e-5}
WARMUP_RATIO=${WARMUP_RATIO:-0.05}
BATCH_SIZE=${BATCH_SIZE:-64}
MICRO_BATCH_SIZE=${MICRO_BATCH_SIZE:-2}
MAX_LENGTH=${MAX_LENGTH:-8192}
MAX_TOKEN_LEN_PER_GPU=${MAX_TOKEN_LEN_PER_GPU:-16384}
SAVE_FREQ=${SAVE_FREQ:-200}
PROJECT=${PROJECT:-verl_hoi}
EXPERIMENT=${EXPERIMENT:-hoi_r1_sft_qwen2_5_vl_3b}
CKPT_DIR=${CKPT_DIR:-checkpoints/${PROJECT}/${EXPERIMENT}}
LOGGER=${LOGGER:-[console]}
PRINT_CONFIG=${PRINT_CONFIG:-}
PYTHON=${PYTHON:-python}

if [ ! -f "$SFT_DATA" ]; then
    echo "error: SFT data $SFT_DATA not found (make it with data_prep/distill_thinking.py, or set SFT_DATA)" >&2
    exit 2
fi
if [ -z "$PRINT_CONFIG" ] && [ "$NGPUS" -lt 1 ]; then
    echo "error: no GPU found (set NGPUS to the number of GPUs to use)" >&2
    exit 2
fi

OVERRIDES=(
    data.train_files="$SFT_DATA"
    data.val_files="$VAL_DATA"
    data.train_batch_size="$BATCH_SIZE"
    data.micro_batch_size_per_gpu="$MICRO_BATCH_SIZE"
    data.max_length="$MAX_LENGTH"
    data.use_dynamic_bsz=True
    data.max_token_len_per_gpu="$MAX_TOKEN_LEN_PER_GPU"
    data.pad_mode=no_padding
    data.truncation=error
    data.custom_cls.path=pkg://verl_hoi.verl_plugin.dataset
    data.custom_cls.name=HOISFTDataset
    model.path="$MODEL_PATH"
    model.enable_gradient_checkpointing=True
    model.use_remove_padding=True
    optim.lr="$LR"
    optim.lr_warmup_steps_ratio="$WARMUP_RATIO"
    optim.lr_scheduler_type=cosine
    optim.min_lr_ratio=0.1
    optim.weight_decay=0.01
    optim.clip_grad=1.0
    engine.strategy=fsdp2
    checkpoint.save_contents=[model,optimizer,extra,hf_model]
    trainer.total_epochs="$EPOCHS"
    trainer.project_name="$PROJECT"
    trainer.experiment_name="$EXPERIMENT"
    trainer.default_local_dir="$CKPT_DIR"
    trainer.logger="$LOGGER"
    trainer.save_freq="$SAVE_FREQ"
    trainer.test_freq=-1
    trainer.resume_mode=auto
    trainer.nnodes=1
    trainer.n_gpus_per_node="$NGPUS"
)

if [ -n "$PRINT_CONFIG" ]; then
    # Compose verl's own sft_trainer_engine.yaml with these overrides (what --cfg job would print)
    # without importing the trainer, so it works on a machine without GPUs or training extras.
    exec "$PYTHON" - "${OVERRIDES[@]}" "$@" <<'EOF'
import os, sys
from importlib.util import find_spec
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

config_dir = os.path.join(find_spec("verl").submodule_search_locations[0], "trainer", "config")
with initialize_config_dir(config_dir=config_dir, version_base=None):
    print(OmegaConf.to_yaml(compose(config_name="sft_trainer_engine", overrides=sys.argv[1:])), end="")
EOF
fi

CMD=(torchrun --standalone --nnodes=1 --nproc_per_node="$NGPUS" -m verl.trainer.sft_trainer "${OVERRIDES[@]}" "$@")
echo "+ ${CMD[*]}" >&2
exec "${CMD[@]}"
