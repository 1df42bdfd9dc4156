#!/bin/sh
# Peak memory of pulling a zstd layer (docs/performance.md, "zstd window"): tars DIR
# (default /usr/lib/gcc), compresses it from a pipe with zstd at the largest window cfs accepts
# (8 MiB, window log 23) and at level 19, makes an OCI layout of each, and measures
# `cfsctl oci pull` with GNU time. Also checks that a --long=27 layer is refused.
#
# usage: xtask/scripts/zstd_pull.sh [CFSCTL] [DIR]
set -eu
CFS=$(realpath "${1:-${CARGO_TARGET_DIR:-target}/release/cfsctl}")
SRC=${2:-/usr/lib/gcc}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cfs-zstd-pull.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
tar -C "$SRC" -cf layer.tar . 2>/dev/null || true
echo "layer: $(($(stat -c %s layer.tar) >> 20)) MiB uncompressed; load: $(uptime | sed 's/.*load average: //')"
cat layer.tar | zstd -q -T0 -3 --zstd=wlog=23 >w23.zst
cat layer.tar | zstd -q -T0 -19 >l19.zst
cat layer.tar | zstd -q -T0 -3 --long=27 >long27.zst
python3 - <<'PY'
import hashlib, json, os
os.makedirs("oci/blobs/sha256")
def blob(data):
    h = hashlib.sha256(data).hexdigest()
    open(f"oci/blobs/sha256/{h}", "wb").write(data)
    return {"digest": f"sha256:{h}", "size": len(data)}
diff_id = "sha256:" + hashlib.file_digest(open("layer.tar", "rb"), "sha256").hexdigest()
manifests = []
for tag in ["w23", "l19", "long27"]:
    l = blob(open(f"{tag}.zst", "rb").read())
    c = blob(json.dumps({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}, "config": {}}).encode())
    m = blob(json.dumps({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(c, mediaType="application/vnd.oci.image.config.v1+json"),
        "layers": [dict(l, mediaType="application/vnd.oci.image.layer.v1.tar+zstd")]}).encode())
    manifests.append(dict(m, mediaType="application/vnd.oci.image.manifest.v1+json",
        annotations={"org.opencontainers.image.ref.name": tag}))
json.dump({"schemaVersion": 2, "manifests": manifests}, open("oci/index.json", "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open("oci/oci-layout", "w"))
PY
echo "| layer | compressed MiB | wall s | peak RSS MiB |"
echo "|---|---|---|---|"
for tag in w23 l19; do
    rm -rf repo
    "$CFS" --repo repo init --insecure >/dev/null
    /usr/bin/time -f "%e %M" -o time.out "$CFS" --repo repo oci pull --quiet "oci:$WORK/oci:$tag" "$tag" >/dev/null
    read -r wall rss <time.out
    printf '| %s | %d | %s | %d |\n' "$tag" $(($(stat -c %s $tag.zst) >> 20)) "$wall" $((rss / 1024))
done
rm -rf repo
"$CFS" --repo repo init --insecure >/dev/null
if "$CFS" --repo repo oci pull --quiet "oci:$WORK/oci:long27" long27 >/dev/null 2>err.txt; then
    echo "a --long=27 layer was accepted" >&2
    exit 1
fi
echo "--long=27: $(tail -1 err.txt)"
