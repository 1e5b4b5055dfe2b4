#!/usr/bin/env bash
# Packs 22,000 synthetic 256x256 RGB PNGs with `eoc pack` into an npz over 4 GiB (so ZIP64 is
# needed) and checks that numpy reads it back: shape, dtype, the zip layout, and a few images
# against the ones written. NOT part of CI: it needs about 10 GB of free disk and some minutes.
#
#   scripts/bench/bench_pack_large.sh [WORKDIR]      (default WORKDIR: build/bench-pack)
#
# Environment: EOC (binary, default build/eoc), N (images, default 22000), PYTHON (with numpy
# and PIL, default /usr/bin/python3), KEEP=1 keeps WORKDIR afterwards.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
EOC="${EOC:-$ROOT/build/eoc}"
N="${N:-22000}"
PY="${PYTHON:-/usr/bin/python3}"
WORK="${1:-$ROOT/build/bench-pack}"

[[ -x "$EOC" ]] || { echo "bench_pack_large: no eoc binary at $EOC (set EOC=...)" >&2; exit 2; }
mkdir -p "$WORK/images"
if [[ "${KEEP:-0}" != 1 ]]; then trap 'rm -rf "$WORK"' EXIT; fi
echo "bench_pack_large: $N images in $WORK (free: $(df -h --output=avail "$WORK" | tail -1))"

# Image i is uniform noise from numpy's generator seeded with i (incompressible, the worst case
# for PNG decoding); the check below regenerates a few of them.
t0=$(date +%s.%N)
"$PY" - "$WORK/images" "$N" <<'EOF'
import os, sys
from multiprocessing import Pool
import numpy as np
from PIL import Image

folder, n = sys.argv[1], int(sys.argv[2])

def write(i):
    path = os.path.join(folder, f"{i:06d}.png")
    if not os.path.exists(path):
        img = np.random.default_rng(i).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        Image.fromarray(img).save(path + ".part", format="PNG", compress_level=1)
        os.replace(path + ".part", path)

with Pool(os.cpu_count()) as pool:
    pool.map(write, range(n), chunksize=64)
EOF
t1=$(date +%s.%N)
echo "bench_pack_large: wrote PNGs in $(echo "$t1 - $t0" | bc) s ($(du -sh "$WORK/images" | cut -f1))"

/usr/bin/time -v "$EOC" -q pack "$WORK/images" -o "$WORK/big.npz" --num "$N" 2> "$WORK/time.txt"
t2=$(date +%s.%N)
pack_s=$(echo "$t2 - $t1" | bc)
rss_kb=$(grep "Maximum resident" "$WORK/time.txt" | awk '{print $NF}')
size=$(stat -c %s "$WORK/big.npz")
echo "bench_pack_large: eoc pack took $pack_s s, max RSS $((rss_kb / 1024)) MiB, npz $size bytes"

"$PY" - "$WORK/big.npz" "$N" <<'EOF'
import struct, sys, zipfile
import numpy as np

path, n = sys.argv[1], int(sys.argv[2])
with zipfile.ZipFile(path) as z:
    (info,) = z.infolist()
    assert info.filename == "arr_0.npy" and info.compress_type == zipfile.ZIP_STORED
    assert info.file_size > 4 * 2**30, info.file_size
    extra, ids = info.extra, []
    while len(extra) >= 4:
        tag, size = struct.unpack("<HH", extra[:4])
        ids.append(tag)
        extra = extra[4 + size:]
    assert 0x0001 in ids, "no ZIP64 extra field"
arr = np.load(path)["arr_0"]  # reads the whole member: zipfile checks its CRC-32 at the end
assert arr.dtype == np.uint8 and arr.shape == (n, 256, 256, 3), (arr.dtype, arr.shape)
for i in (0, 1, n // 2, n - 1):
    want = np.random.default_rng(i).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert (arr[i] == want).all(), f"image {i} differs"
print(f"bench_pack_large: numpy read arr_0 {arr.shape} {arr.dtype}; ZIP64, stored, CRC and "
      f"4 sampled images OK")
EOF
echo "bench_pack_large: OK"
