#!/usr/bin/env bash
# The checks that still need a GPU, prepared as one call of the device tool (a lent H100 or H200).
#
#   here, once:  make device-data     # ../shared/data/{microscopy,lol15}-dev into the git-ignored .device-shared/
#   the call:    run(command="bash benchmarks/device_check.sh", carry=[".device-shared"], timeout_s=590)
#   afterwards:  tar xzf <files_at>/device_check.tar.gz -C <a folder>; summary.txt first, then the
#                quality_* files into benchmarks/results/ under names that say the GPU
#
# It needs python3 with torch (CUDA), numpy, pillow, scipy, scikit-image, click and tqdm, as the
# device machine's image has them; the package is used from the checkout (PYTHONPATH), not
# installed, and nothing is fetched. Most important first, each part under the time that is left,
# so that the archive is always written (a fit cut short leaves its run's .partial.json):
#   1. tests/test_speed_paths.py: the CUDA paths (graphed steps against eager ones).
#   2. issue 5's microscopy line under its protocol: the four pairs at full size (512x512), 2000
#      steps, intensity-matched `denoise`, napari's default (improved-post-gain, brightness from
#      the highlights) and faithful side by side, seed 2; `linear` is also scored averaged with
#      calibrated TV (`linear_tv`, the microscopy front ends' output), so the average is measured
#      at full size too. Beside them, in a third process, the LOL dev pairs at full size with the
#      default (issue 5's headline protocol, 2000 steps): `denoise` is also scored finished by
#      calibrated TV (`denoise_tv`, the image CLI's photo default since 2026-12-06), measured so far
#      only on the CPU after 300 steps at full size; the fits' last outputs are then finished each
#      way of benchmarks/photo_finish.py and each calibration rule of finish_calibration.py, so
#      that the choice of TV's strength is measured after 2000 steps; and the same fits run again
#      to EARLY_STEPS (250) so that benchmarks/tone_detail.py splits the finished output's change
#      from 250 to 2000 steps into tone and detail (measured so far on the CPU).
#   3. large photos fitted and inferred end to end with the engine's own choices
#      (benchmarks/large_photo.py): 12 megapixels on crops, the captured graph handed back before
#      inference; 3840x2160 whole, checkpoints scored beside the graph. Do they finish within the
#      GPU's memory, and at what peak?
#   4. the microscopy line with seed 3 in the time left.
# Knobs (environment), for a dry run on a CPU: PYTHON, DEVICE, STEPS, EARLY_STEPS, CROP, LOL_SIZE (long
# side; empty: full size), FIRST_SEEDS,
# LARGE_SIZES and LARGE_STEPS (the photos of part 3), LATER_SEEDS (empty: no fourth part),
# BUDGET_S (seconds for the whole script), ZEROIG_SHARED, OUT.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-2000}
EARLY_STEPS=${EARLY_STEPS:-250}
CROP=${CROP:-512}
LOL_SIZE=${LOL_SIZE:-}
FIRST_SEEDS=${FIRST_SEEDS:-2}
LARGE_SIZES=${LARGE_SIZES:-4032x3024 3840x2160}
LARGE_STEPS=${LARGE_STEPS:-300}
LATER_SEEDS=${LATER_SEEDS-3}
BUDGET_S=${BUDGET_S:-560}
OUT=${OUT:-out-device-check}
export ZEROIG_SHARED=${ZEROIG_SHARED:-$PWD/.device-shared}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

work=$(mktemp -d)
mkdir -p "$OUT"
trap 'tar czf "$OUT/device_check.tar.gz" -C "$work" . ; rm -rf "$work"' EXIT

left() { echo $((BUDGET_S - SECONDS)); }

if [ ! -d "$ZEROIG_SHARED/data/microscopy-dev" ]; then
    echo "microscopy-dev not found in $ZEROIG_SHARED/data: run 'make device-data' here and carry .device-shared" >&2
    exit 2
fi
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
    "$PYTHON" -c 'import torch, skimage, numpy, platform; print("torch", torch.__version__, "cuda", torch.version.cuda,
"skimage", skimage.__version__, "numpy", numpy.__version__, "python", platform.python_version())'
} >"$work/environment.txt" 2>&1

timeout "$(left)" "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_speed_paths.py >"$work/tests.log" 2>&1
echo "tests: exit $?" | tee -a "$work/summary.txt"

# Both modes at once on the one GPU, each its own process.
microscopy() {  # seeds
    local seeds=$1 label="seed${1// /_}" limit
    [ -n "$seeds" ] || return 0
    limit=$(left)
    if [ "$limit" -lt 30 ]; then
        echo "microscopy seeds $seeds: skipped, ${limit} s left" | tee -a "$work/summary.txt"
        return
    fi
    local common=(--datasets microscopy-dev --crop "$CROP" --steps "$STEPS" --device "$DEVICE" --seeds $seeds)
    timeout "$limit" "$PYTHON" benchmarks/quality.py "${common[@]}" --modes improved-post-gain --brightness headroom \
        --out "$work/quality_microscopy${CROP}_${label}_headroom" >"$work/${label}_headroom.log" 2>&1 &
    timeout "$limit" "$PYTHON" benchmarks/quality.py "${common[@]}" --modes faithful \
        --out "$work/quality_microscopy${CROP}_${label}_faithful" >"$work/${label}_faithful.log" 2>&1 &
    wait -n; local first=$?
    wait -n; local second=$?
    echo "microscopy seeds $seeds: exits $first $second after ${SECONDS} s" | tee -a "$work/summary.txt"
}

lol() {  # the default on the LOL dev pairs, in the background beside the first microscopy runs
    if [ ! -d "$ZEROIG_SHARED/data/lol15-dev" ]; then
        echo "lol: skipped, lol15-dev not in $ZEROIG_SHARED/data" | tee -a "$work/summary.txt"
        return
    fi
    # The fits' outputs are kept outside $work: too large to bring back in the archive.
    local size=${LOL_SIZE:-600} kept outputs
    kept=$(mktemp -d)
    outputs="$kept/lol_outputs.npz"
    timeout "$(left)" "$PYTHON" benchmarks/quality.py --datasets lol15-dev ${LOL_SIZE:+--size "$LOL_SIZE"} --steps "$STEPS" \
        --device "$DEVICE" --modes default --keep-outputs "$outputs" --out "$work/quality_lol${size}_default" \
        >"$work/lol_default.log" 2>&1
    echo "lol: exit $? after ${SECONDS} s" >>"$work/summary.txt"
    if [ -f "$outputs" ]; then  # scored finished each way, then left behind
        timeout "$(left)" "$PYTHON" benchmarks/photo_finish.py --rescore "$outputs" \
            --out "$work/photo_finish_lol${size}_${STEPS}steps" >"$work/lol_finish.log" 2>&1
        echo "lol finishes: exit $? after ${SECONDS} s" >>"$work/summary.txt"
        timeout "$(left)" "$PYTHON" benchmarks/finish_calibration.py "$outputs" \
            --out "$work/finish_calibration_lol${size}_${STEPS}steps" >>"$work/lol_finish.log" 2>&1
        echo "lol finish calibration: exit $? after ${SECONDS} s" >>"$work/summary.txt"
        local early="$kept/lol_outputs_${EARLY_STEPS}.npz"
        timeout "$(left)" "$PYTHON" benchmarks/quality.py --datasets lol15-dev ${LOL_SIZE:+--size "$LOL_SIZE"} \
            --steps "$EARLY_STEPS" --device "$DEVICE" --modes default --keep-outputs "$early" \
            --out "$work/quality_lol${size}_default_${EARLY_STEPS}steps" >"$work/lol_early.log" 2>&1 &&
        timeout "$(left)" "$PYTHON" benchmarks/tone_detail.py --kept "$EARLY_STEPS=$early" "$STEPS=$outputs" \
            --out "$work/tone_detail_lol${size}_${EARLY_STEPS}_${STEPS}steps" >>"$work/lol_early.log" 2>&1
        echo "lol tone and detail: exit $? after ${SECONDS} s" >>"$work/summary.txt"
    fi
    rm -rf "$kept"
}

lol &
lol_job=$!
microscopy "$FIRST_SEEDS"
wait "$lol_job"
for size in $LARGE_SIZES; do
    limit=$(( $(left) < 180 ? $(left) : 180 ))
    if [ "$limit" -lt 60 ]; then
        echo "large photo $size: skipped, $(left) s left" | tee -a "$work/summary.txt"
        continue
    fi
    timeout "$limit" "$PYTHON" benchmarks/large_photo.py --device "$DEVICE" --size "$size" --steps "$LARGE_STEPS" \
        --out "$work/large_photo_$size" >"$work/large_photo_$size.log" 2>&1
    echo "large photo $size: exit $? after ${SECONDS} s" | tee -a "$work/summary.txt"
    tail -n 1 "$work/large_photo_$size.log" >>"$work/summary.txt"
done
microscopy "$LATER_SEEDS"
grep -h "^microscopy-dev\|^lol15-dev" "$work"/*_headroom.log "$work"/*_faithful.log "$work"/lol_default.log 2>/dev/null \
    | tee -a "$work/summary.txt"
