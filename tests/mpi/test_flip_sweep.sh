#!/usr/bin/env bash
# Issue 13: a flipped byte anywhere in a quantized container or a checkpoint is either detected
# (non-zero exit, one line naming the file and the object) or provably harmless (the output is
# byte-identical to the unflipped run's). Case $1:
#   container   N offsets spread evenly over model.sp.h5 of a tiny quantize; each copy with one
#               byte XOR 0xFF is evaluated (eval --json); the ppl/nll must equal the clean
#               run's exactly, or the run must fail cleanly naming model.sp.h5.
#   checkpoint  N offsets over the newest checkpoint of the same run; `resume` continues from
#               the flipped directory; the container it writes must be byte-identical to the
#               clean run's (a checkpoint found corrupt is skipped with a warning naming it and
#               an older one, or the start, is used), or resume fails cleanly naming the file.
# Any silent change of the result, crash (signal) or hang fails the test. The fractions are
# printed ("flip sweep: ...") for docs/architecture.md. N: $2 (default 96 / 48, halved in
# sanitized builds).
. "$(dirname "$0")/lib.sh"
M="$SP_MODEL_DIR"; CAL="$SP_DATA_DIR/text/stories260K-samples/calib.txt"
head -c 3000 "$SP_DATA_DIR/text/stories260K-samples/eval.txt" >"$WORK/eval.txt"
# Sanitized builds run each command several times slower: half the flips there.
half=1; [ "${SP_SANITIZED:-0}" = 1 ] && half=2
case "$1" in
  container) N=${2:-$((96 / half))} ;;
  checkpoint) N=${2:-$((48 / half))} ;;
  *) fail "unknown case $1" ;;
esac
"$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/q" --group-size 32 --nsamples 4 \
  --ctx 32 --checkpoint-dir "$WORK/ck" >/dev/null
python3 - "$1" "$N" "$WORK" "$SP_BIN" <<'PY'
import json, os, re, shutil, subprocess, sys
case, N, W, BIN = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def run(cmd, timeout=300):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return None, "", "timeout"
def flip(src, dst, off):
    b = bytearray(open(src, "rb").read()); b[off] ^= 0xFF; open(dst, "wb").write(bytes(b))
counts = {"harmless": 0, "detected_named": 0, "detected": 0}
bad = []
if case == "container":
    q = f"{W}/q"; target = f"{q}/model.sp.h5"
    ev = lambda d: run([BIN, "eval", "--model", d, "--text", f"{W}/eval.txt", "--ctx", "64", "--json"])
    rc, out, err = ev(q); assert rc == 0, err
    ref = json.loads(out); ref = (ref["mean_nll"], ref["ppl"], ref["scored"])
    size = os.path.getsize(target)
    for i in range(N):
        off = (i * size) // N + (i * 7919) % max(1, size // N)  # spread, not aligned to 4 KiB
        d = f"{W}/f"; shutil.rmtree(d, ignore_errors=True); os.mkdir(d)
        for n in os.listdir(q):
            if n != "model.sp.h5": os.symlink(f"{q}/{n}", f"{d}/{n}")
        flip(target, f"{d}/model.sp.h5", off)
        rc, out, err = ev(d)
        if rc == 0:
            r = json.loads(out)
            if (r["mean_nll"], r["ppl"], r["scored"]) == ref: counts["harmless"] += 1
            else: bad.append((off, f"silent change: ppl {r['ppl']} vs {ref[1]}"))
        elif rc is None or rc < 0 or rc >= 128: bad.append((off, f"crash/hang rc={rc}: {err[-300:]}"))
        else:
            lines = err.strip().splitlines()
            if len(lines) != 1 or "model.sp.h5" not in lines[0]: bad.append((off, f"unclear error: {err[-300:]}"))
            elif re.search(r"/(dense|modules)/|dataset|qweight|scales|zeros|g_idx", lines[0]): counts["detected_named"] += 1
            else: counts["detected"] += 1; print(f"  offset {off}: {lines[0]}")
else:
    # run.json (and every checkpoint's copy of it) names the output and checkpoint
    # directories, so each flip works in place: a pristine copy of the checkpoint directory is
    # restored, one byte of the newest checkpoint flipped, and resume rewrites <W>/q.
    ck = f"{W}/ck"; latest = open(f"{ck}/latest").read().strip(); target = f"{ck}/{latest}"
    ref = open(f"{W}/q/model.sp.h5", "rb").read()
    shutil.copytree(ck, f"{W}/ck.orig", symlinks=True)
    size = os.path.getsize(target)
    for i in range(N):
        off = (i * size) // N + (i * 7919) % max(1, size // N)
        d = ck
        for x in (ck, f"{W}/q", f"{W}/q.partial"): shutil.rmtree(x, ignore_errors=True)
        shutil.copytree(f"{W}/ck.orig", ck, symlinks=True)
        src = f"{W}/ck.orig/{latest}"
        flip(src, target, off)
        rc, out, err = run([BIN, "resume", d])
        if rc == 0:
            same = open(f"{W}/q/model.sp.h5", "rb").read() == ref
            if not same: bad.append((off, "silent change: container differs"))
            elif latest in err and re.search(r"dataset|checksum|attribute|'X'|block_crc|HDF5", err): counts["detected_named"] += 1
            elif latest in err: counts["detected"] += 1
            else: counts["harmless"] += 1
        elif rc is None or rc < 0 or rc >= 128: bad.append((off, f"crash/hang rc={rc}: {err[-300:]}"))
        else:
            lines = err.strip().splitlines()
            if len(lines) != 1 or latest not in lines[0]: bad.append((off, f"unclear error: {err[-300:]}"))
            else: counts["detected_named"] += 1
tot = N
det = counts["detected_named"] + counts["detected"]
print(f"flip sweep: {case}: {N} flips over {size} bytes: detected {det} ({100*det/tot:.0f}%; "
      f"{counts['detected_named']} naming the object), harmless {counts['harmless']} "
      f"({100*counts['harmless']/tot:.0f}%), undetected changes or crashes {len(bad)}")
for off, why in bad: print(f"  FAIL offset {off}: {why}")
sys.exit(1 if bad else 0)
PY
