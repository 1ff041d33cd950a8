#!/usr/bin/env bash
# cli_test.sh KILN [SHARED] — end-to-end checks of `kiln inspect/run/bench` on
# tiny node-less models (outputs are the inputs, so no kernel is needed) and on
# crafted bad files: exit statuses, messages, .npy round trip, no crashes.
set -u
kiln=$1
shared=${2:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# Tiny ONNX models, written byte by byte (ir 7, opset 13, graph output = graph input):
#   ident: x float [batch,10]; img: img float [N,3,H,W]; nhwc: in:0 float [1,8,6,3];
#   multi: ids int64 [batch,seq], mask float [batch,seq]
printf '\x08\x07\x12\x05\x6d\x6b\x2e\x70\x79\x3a\x37\x12\x01\x67\x5a\x18\x0a\x01\x78\x12\x13\x0a\x11\x08\x01\x12\x0d\x0a\x07\x12\x05\x62\x61\x74\x63\x68\x0a\x02\x08\x0a\x62\x18\x0a\x01\x78\x12\x13\x0a\x11\x08\x01\x12\x0d\x0a\x07\x12\x05\x62\x61\x74\x63\x68\x0a\x02\x08\x0a\x42\x04\x0a\x00\x10\x0d' > "$tmp/ident.onnx"
printf '\x08\x07\x12\x05\x6d\x6b\x2e\x70\x79\x3a\x47\x12\x01\x67\x5a\x20\x0a\x03\x69\x6d\x67\x12\x19\x0a\x17\x08\x01\x12\x13\x0a\x03\x12\x01\x4e\x0a\x02\x08\x03\x0a\x03\x12\x01\x48\x0a\x03\x12\x01\x57\x62\x20\x0a\x03\x69\x6d\x67\x12\x19\x0a\x17\x08\x01\x12\x13\x0a\x03\x12\x01\x4e\x0a\x02\x08\x03\x0a\x03\x12\x01\x48\x0a\x03\x12\x01\x57\x42\x04\x0a\x00\x10\x0d' > "$tmp/img.onnx"
printf '\x08\x07\x12\x05\x6d\x6b\x2e\x70\x79\x3a\x43\x12\x01\x67\x5a\x1e\x0a\x04\x69\x6e\x3a\x30\x12\x16\x0a\x14\x08\x01\x12\x10\x0a\x02\x08\x01\x0a\x02\x08\x08\x0a\x02\x08\x06\x0a\x02\x08\x03\x62\x1e\x0a\x04\x69\x6e\x3a\x30\x12\x16\x0a\x14\x08\x01\x12\x10\x0a\x02\x08\x01\x0a\x02\x08\x08\x0a\x02\x08\x06\x0a\x02\x08\x03\x42\x04\x0a\x00\x10\x0d' > "$tmp/nhwc.onnx"
printf '\x08\x07\x12\x05\x6d\x6b\x2e\x70\x79\x3a\x81\x01\x12\x01\x67\x5a\x1d\x0a\x03\x69\x64\x73\x12\x16\x0a\x14\x08\x07\x12\x10\x0a\x07\x12\x05\x62\x61\x74\x63\x68\x0a\x05\x12\x03\x73\x65\x71\x5a\x1e\x0a\x04\x6d\x61\x73\x6b\x12\x16\x0a\x14\x08\x01\x12\x10\x0a\x07\x12\x05\x62\x61\x74\x63\x68\x0a\x05\x12\x03\x73\x65\x71\x62\x1d\x0a\x03\x69\x64\x73\x12\x16\x0a\x14\x08\x07\x12\x10\x0a\x07\x12\x05\x62\x61\x74\x63\x68\x0a\x05\x12\x03\x73\x65\x71\x62\x1e\x0a\x04\x6d\x61\x73\x6b\x12\x16\x0a\x14\x08\x01\x12\x10\x0a\x07\x12\x05\x62\x61\x74\x63\x68\x0a\x05\x12\x03\x73\x65\x71\x42\x04\x0a\x00\x10\x0d' > "$tmp/multi.onnx"

# check NAME WANT_RC PATTERN CMD...: runs CMD, wants exit WANT_RC and PATTERN (grep -E) in its output
check() {
  local name=$1 want=$2 pat=$3; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne "$want" ] || ! grep -qE -- "$pat" <<< "$out"; then
    echo "FAIL $name: exit $rc (want $want), pattern '$pat'"; echo "$out" | head -20 | sed 's/^/    /'
    fails=$((fails + 1))
  else
    echo "ok   $name"
  fi
}

# npy FILE DESCR SHAPE NBYTES [HEADER]: a .npy with a 64-byte-aligned v1.0 header and NBYTES zero data bytes
npy() {
  local f=$1 h=${5:-"{'descr': '$2', 'fortran_order': False, 'shape': $3, }"}
  local len=$(( ${#h} + 1 )); local pad=$(( (64 - (10 + len) % 64) % 64 )); len=$((len + pad))
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $((len & 255)))\\x$(printf %02x $((len >> 8)))";
    printf '%s%*s\n' "$h" "$pad" ''; head -c "$4" /dev/zero; } > "$f"
}

check "inspect shows symbolic dims" 0 'x +float32 +\[batch, 10\]' "$kiln" inspect "$tmp/ident.onnx"
check "inspect FLOPs" 0 'FLOPs +0 FLOP' "$kiln" inspect "$tmp/ident.onnx"
check "inspect missing model" 1 'cannot load model' "$kiln" inspect "$tmp/nope.onnx"
printf 'garbage' > "$tmp/bad.onnx"
check "inspect corrupt model" 1 'cannot load model' "$kiln" inspect "$tmp/bad.onnx"
check "inspect usage" 2 'no model given' "$kiln" inspect

check "run without inputs" 1 "input not given: 'x'" "$kiln" run "$tmp/ident.onnx"
check "run --random + --output" 0 'wrote .*/out/x\.npy' "$kiln" run "$tmp/ident.onnx" --random --output "$tmp/out"
check "run top-5 of a [1,10] output" 0 'top-5: \[' "$kiln" run "$tmp/ident.onnx" --random
a=$("$kiln" run "$tmp/ident.onnx" --random --seed 7 --output "$tmp/o1" | grep min)
b=$("$kiln" run "$tmp/ident.onnx" --input "x=$tmp/o1/x.npy" | grep min)
if [ -n "$a" ] && [ "$a" = "$b" ]; then echo "ok   npy round trip"; else echo "FAIL npy round trip: '$a' vs '$b'"; fails=$((fails + 1)); fi
check "run unknown input name" 1 "names no input" "$kiln" run "$tmp/ident.onnx" --input "y=$tmp/o1/x.npy"
check "run bad option" 2 "unknown option" "$kiln" run "$tmp/ident.onnx" --bogus
check "run sanitized output names" 0 'wrote .*/in_0\.npy' "$kiln" run "$tmp/nhwc.onnx" --random --output "$tmp/o2"
check "run shared symbolic dims" 0 'mask +float32 \[3, 5\]' "$kiln" run "$tmp/multi.onnx" --random --dim batch=3 --dim seq=5

npy "$tmp/f8.npy" '<f8' '(1, 10)' 80
check "npy float64 converted" 0 'converting' "$kiln" run "$tmp/ident.onnx" --input "x=$tmp/f8.npy"
npy "$tmp/be.npy" '>f4' '(1, 10)' 40
check "npy big-endian refused" 1 'big-endian' "$kiln" run "$tmp/ident.onnx" --input "x=$tmp/be.npy"
npy "$tmp/fo.npy" '<f4' '(1, 10)' 40 "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 10), }"
check "npy fortran refused" 1 'Fortran' "$kiln" run "$tmp/ident.onnx" --input "x=$tmp/fo.npy"
npy "$tmp/short.npy" '<f4' '(1, 10)' 39
check "npy short data refused" 1 'need 40 data bytes but the file holds 39' "$kiln" run "$tmp/ident.onnx" --input "x=$tmp/short.npy"
npy "$tmp/huge.npy" '<f4' '(100000, 100000, 1000)' 8
check "npy huge shape refused before allocating" 1 'over the limit' "$kiln" run "$tmp/ident.onnx" --input "x=$tmp/huge.npy"
npy "$tmp/ovf.npy" '<f4' '(99999999999999999999, 1)' 8
check "npy overflowing dim refused" 1 'overflows' "$kiln" run "$tmp/ident.onnx" --input "x=$tmp/ovf.npy"
npy "$tmp/key.npy" '<f4' '' 40 "{'descr': '<f4', 'shape': (1, 10), }"
check "npy missing key refused" 1 "missing key 'fortran_order'" "$kiln" run "$tmp/ident.onnx" --input "x=$tmp/key.npy"
printf '\x93NUMPY\x01\x00\xff\xff{' > "$tmp/hl.npy"
check "npy header length past EOF refused" 1 'header claims' "$kiln" run "$tmp/ident.onnx" --input "x=$tmp/hl.npy"
npy "$tmp/c8.npy" '<c8' '(1, 10)' 80
check "npy complex refused" 1 "dtype '<c8' is not supported" "$kiln" run "$tmp/ident.onnx" --input "x=$tmp/c8.npy"
printf 'not a picture' > "$tmp/fake.png"
check "fake png refused" 1 'not a PNG or JPEG' "$kiln" run "$tmp/img.onnx" --input "img=$tmp/fake.png"

check "bench table" 0 'batch +mean_ms' "$kiln" bench "$tmp/ident.onnx" --iters 3 --warmup 1 --threads 1 --batch 1,2
check "bench json keys" 0 '^\{"model":"ident","batch":2,"threads":1,"mean_ms":[0-9.]+,"p50_ms":[0-9.]+,"p90_ms":[0-9.]+,"p99_ms":[0-9.]+,"min_ms":[0-9.]+,"max_ms":[0-9.]+,"throughput_per_s":[0-9.]+' \
  "$kiln" bench "$tmp/ident.onnx" --iters 3 --warmup 1 --threads 1 --batch 2 --json
check "bench fixed batch refused" 1 'does not apply' "$kiln" bench "$tmp/nhwc.onnx" --iters 3 --threads 1 --batch 2
check "bench bad --batch" 2 'batch size 0 is outside' "$kiln" bench "$tmp/ident.onnx" --batch 0

if [ -n "$shared" ] && [ -d "$shared/images" ]; then
  check "png resized NCHW" 0 'img +float32 \[1, 3, 32, 48\]' "$kiln" run "$tmp/img.onnx" --input "img=$shared/images/chelsea.png" --dim H=32 --dim W=48
  check "png NHWC grey page, BGR" 0 'in:0 +float32 \[1, 8, 6, 3\] <- .*NHWC, BGR' "$kiln" run "$tmp/nhwc.onnx" --input "in:0=$shared/images/page.png" --bgr
  check "png aspect ratio for an open width" 0 'img +float32 \[1, 3, 48, 72\]' "$kiln" run "$tmp/img.onnx" --input "img=$shared/images/chelsea.png" --dim H=48
fi
if [ -n "$shared" ] && [ -f "$shared/models/mobilenet_v2/model.onnx" ]; then
  check "inspect a real model" 0 'input +float32 +\[batch, 3, 224, 224\]' "$kiln" inspect "$shared/models/mobilenet_v2/model.onnx"
fi

# --precision on bench/run compiles an .onnx on the fly through kiln compile
# (temporary plans go to a TMPDIR of our own, which must be empty afterwards)
old_tmpdir=${TMPDIR-}
export TMPDIR=$tmp/ptmp
mkdir -p "$TMPDIR"
check "bench --precision bf16 compiles first" 0 'kiln compile .* --precision bf16' \
  "$kiln" bench "$tmp/ident.onnx" --precision bf16 --iters 2 --warmup 1 --threads 1
check "bench --precision int8 needs --calibrate" 2 'needs calibration inputs: --calibrate DIR' \
  "$kiln" bench "$tmp/ident.onnx" --precision int8
check "run bad --precision" 2 "bad --precision 'fp16'" "$kiln" run "$tmp/ident.onnx" --precision fp16 --random
check "run --calibrate without int8" 2 'only used with --precision int8' "$kiln" run "$tmp/ident.onnx" --calibrate "$tmp" --random
"$kiln" compile "$tmp/ident.onnx" -o "$tmp/ident.kiln" >/dev/null 2>&1
check "bench --precision on a .kiln refused" 2 'already compiled' "$kiln" bench "$tmp/ident.kiln" --precision bf16
cp "$tmp/ident.kiln" "$tmp/ident-plan.bin"
check "a plan under another name is told by its magic" 2 'already compiled' \
  "$kiln" run "$tmp/ident-plan.bin" --precision int8 --calibrate "$tmp" --random
check "failed on-the-fly compile reported" 1 'compiling .* at int8 failed' \
  "$kiln" run "$tmp/ident.onnx" --precision int8 --calibrate "$tmp/no-such-dir" --random
if [ -n "$shared" ] && [ -f "$shared/models/mobilenet_v2/model.onnx" ] && [ -d "$shared/images" ]; then
  check "run --precision int8 --calibrate on a real model" 0 'int8: [0-9]+ Conv and [0-9]+ Gemm/MatMul quantized' \
    "$kiln" run "$shared/models/mobilenet_v2/model.onnx" --precision int8 --calibrate "$shared/images" \
    --input "$shared/images/chelsea.png" --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --threads 2
fi
if [ -n "$shared" ] && [ -f "$shared/models/bert_mini/model.onnx" ]; then
  # a test_data_set_N folder itself is one input set (its output_K.pb are not inputs)
  check "compile int8 calibrated on one test_data_set folder" 0 'calibrated on 1 input set' \
    "$kiln" compile "$shared/models/bert_mini/model.onnx" -o "$tmp/bert8.kiln" --precision int8 \
    --calibrate "$shared/models/bert_mini/test_data_set_0"
fi
if [ -n "$(ls -A "$TMPDIR")" ]; then echo "FAIL temporary plans left behind: $(ls "$TMPDIR")"; fails=$((fails + 1))
else echo "ok   no temporary plan left"; fi
if [ -n "$old_tmpdir" ]; then export TMPDIR=$old_tmpdir; else unset TMPDIR; fi

[ "$fails" -eq 0 ] && echo "cli: all passed" || echo "cli: $fails failed"
exit $(( fails > 0 ))
