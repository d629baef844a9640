#!/usr/bin/env bash
# The whole pipeline in minutes on one GPU, to check an install before downloading HICO-DET: the
# 8-image sample in recipes/sample/, a tiny random model of one family built on the fly, SFT on the
# ground-truth answers (no teacher API), two GRPO steps with vLLM, predict, evaluate. The tiny model
# learns nothing: expect an mAP near 0; what matters is that every step runs.
#
# On a machine without a GPU (no working nvidia-smi) it runs what a CPU can, and says what it left
# for a GPU: it installs the CPU set (torch and verl-hoi, no vLLM), builds the tiny model, converts
# the sample, composes the SFT and GRPO configs instead of training, predicts with transformers,
# evaluates and draws.
#
# Usage: bash recipes/smoke.sh                   # makes $VENV and installs into it what this machine can run
#        FAMILY=qwen3_5 bash recipes/smoke.sh    # another model family: qwen2_5_vl (default), qwen3_vl, qwen3_5
#        VENV=.venv bash recipes/smoke.sh        # reuse an environment (installed into only if verl-hoi is missing)
#        SMOKE_CPU=1 bash recipes/smoke.sh       # the CPU steps even where a GPU is present
set -euo pipefail
cd "$(dirname "$0")/.."

FAMILY=${FAMILY:-qwen2_5_vl}
OUT=${OUT:-runs/smoke/$FAMILY}
VENV=${VENV:-runs/venv-smoke}
if [ -z "${SMOKE_CPU:-}" ]; then
    if nvidia-smi -L >/dev/null 2>&1; then SMOKE_CPU=0; else SMOKE_CPU=1; fi
fi
SAMPLE=recipes/sample

step() { printf '\n== %s\n' "$*" >&2; }
run() {
    printf '+' >&2
    printf ' %q' "$@" >&2
    printf '\n' >&2
    "$@"
}

step "1/8 install"
[ -x "$VENV/bin/python" ] || run python3 -m venv "$VENV"
if [ "$SMOKE_CPU" = 1 ]; then
    echo "no GPU (or SMOKE_CPU=1): CPU steps only, no vLLM" >&2
    if ! "$VENV/bin/python" -c "import verl, verl_hoi" 2>/dev/null; then
        # An old bundled pip backtracks for many minutes on verl's pins.
        run "$VENV/bin/python" -m pip install -q --upgrade pip
        run "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
        run "$VENV/bin/python" -m pip install -q -e .
    fi
else
    run "$VENV/bin/python" -m pip install -q --upgrade pip
    run "$VENV/bin/python" -m pip install -q -e '.[train]'
fi
PY=$(cd "$VENV/bin" && pwd)/python
mkdir -p "$OUT"

step "2/8 tiny $FAMILY"
# Small images keep the tiny model fast: 4 to 256 image tokens of the family's block (patch x merge pixels).
read -r MIN_PIXELS MAX_PIXELS < <("$PY" -c "from verl_hoi.families import get_family
block = get_family('$FAMILY').block
print(4 * block**2, 256 * block**2)")
run "$PY" -m verl_hoi.tiny_model "$OUT/tiny_model" --family "$FAMILY" --min-pixels "$MIN_PIXELS" \
    --max-pixels "$MAX_PIXELS"

step "3/8 convert the sample for the tiny model's processor"
run "$PY" data_prep/hicodet_to_parquet.py --annotations "$SAMPLE/annotations.json" --images "$SAMPLE/images" \
    --split test --out "$OUT/data" --processor "$OUT/tiny_model"
# The sample has test images only: train on them too.
run cp "$OUT/data/test.parquet" "$OUT/data/train.parquet"

step "4/8 SFT rows: the ground-truth answers after a fixed stand-in for the teacher's reasoning"
run "$PY" - "$OUT/data/test.parquet" "$OUT/data/sft.parquet" <<'EOF'
import sys

import pyarrow.parquet as pq

from verl_hoi.convert import write_parquet
from verl_hoi.sft import sft_row, sft_schema

table = pq.read_table(sys.argv[1])
rows = (sft_row(row, "I look for every person and what each one does.") for row in table.to_pylist())
print(f"{write_parquet(rows, sys.argv[2], sft_schema(table.schema))} SFT rows", file=sys.stderr)
EOF

step "5/8 SFT: a few steps"
SFT_DIR="$OUT/sft"
sft_env=(SFT_DATA="$OUT/data/sft.parquet" MODEL_PATH="$OUT/tiny_model" NGPUS=1 CKPT_DIR="$SFT_DIR" PYTHON="$PY")
sft_overrides=(hoi_family="$FAMILY" trainer.total_epochs=2 data.train_batch_size=4)
if [ "$SMOKE_CPU" = 1 ]; then
    run env "${sft_env[@]}" bash recipes/sft.sh "${sft_overrides[@]}" --cfg job >"$OUT/sft_config.yaml"
else
    run env "${sft_env[@]}" bash recipes/sft.sh "${sft_overrides[@]}"
fi

step "6/8 GRPO: two steps with vLLM"
GRPO_DIR="$OUT/grpo"
grpo_overrides=(
    hoi_family="$FAMILY"
    data.train_batch_size=4
    data.max_response_length=256
    actor_rollout_ref.actor.ppo_mini_batch_size=4
    actor_rollout_ref.rollout.n=2
    actor_rollout_ref.rollout.gpu_memory_utilization=0.3
    actor_rollout_ref.rollout.agent.num_workers=1
    reward.num_workers=1
    trainer.total_training_steps=2
    trainer.test_freq=2
    trainer.save_freq=2
    trainer.experiment_name=smoke
    trainer.default_local_dir="$GRPO_DIR"
)
if [ "$SMOKE_CPU" = 1 ]; then
    # No SFT checkpoint on CPU: the tiny model stands in for it, and the config is printed, not run.
    run env MODEL_PATH="$OUT/tiny_model" DATA_DIR="$OUT/data" NGPUS=1 PYTHON="$PY" bash recipes/grpo.sh \
        "${grpo_overrides[@]}" --cfg job >"$OUT/grpo_config.yaml"
    MODEL="$OUT/tiny_model"
    BACKEND=(--backend hf --device cpu --max-new-tokens 32)
else
    run env SFT_DIR="$SFT_DIR" DATA_DIR="$OUT/data" NGPUS=1 PYTHON="$PY" bash recipes/grpo.sh "${grpo_overrides[@]}"
    MODEL="$GRPO_DIR/global_step_2/actor/huggingface"
    BACKEND=(--backend vllm --max-new-tokens 256)
fi

step "7/8 predict"
rm -f "$OUT/predictions.jsonl"
run "$PY" -m verl_hoi.predict --model "$MODEL" --data "$OUT/data/test.parquet" --out "$OUT/predictions.jsonl" \
    "${BACKEND[@]}"

step "8/8 evaluate and draw"
run "$PY" -m verl_hoi.evaluate --annotations "$SAMPLE/annotations.json" --predictions "$OUT/predictions.jsonl" \
    --json "$OUT/map.json"
if [ "$SMOKE_CPU" != 1 ]; then
    # The last validation dump of the GRPO run, scored by the same evaluator.
    run "$PY" -m verl_hoi.evaluate --annotations "$SAMPLE/annotations.json" \
        --predictions "$GRPO_DIR/validation/2.jsonl" --data "$OUT/data/test.parquet"
fi
run "$PY" -m verl_hoi.visualize --predictions "$OUT/predictions.jsonl" --images "$SAMPLE/images" \
    --annotations "$SAMPLE/annotations.json" --out "$OUT/vis"
if [ "$SMOKE_CPU" = 1 ]; then
    step "smoke run done on CPU: $OUT"
    echo "left for a GPU: SFT and GRPO training (configs composed: $OUT/sft_config.yaml, $OUT/grpo_config.yaml)," \
        "vLLM prediction, scoring a GRPO validation dump" >&2
else
    step "smoke run done: $OUT"
fi
