#!/bin/sh
# Peak memory with many files (docs/performance.md, "Many files"): builds one uncompressed
# layer of N empty files (half in one flat directory, half in 300 nested directories) as an
# OCI layout, pulls it into an insecure repository, and measures the peak RSS and wall time of
# `cfsctl oci pull`, `oci create-image`, `oci mount` (root; unmounted after), `fsck` and `gc`
# with GNU time. Everything lives in a temporary directory under $TMPDIR, removed at the end.
#
# usage: xtask/scripts/many_files.sh [CFSCTL] [N]   (default target/release/cfsctl, 300000);
# KEEP=1 keeps the directory (printed) for further measurements.
set -eu
CFS=${1:-${CARGO_TARGET_DIR:-target}/release/cfsctl}
N=${2:-300000}
CFS=$(realpath "$CFS")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cfs-many-files.XXXXXX")
trap 'umount "$WORK/mnt" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
cd "$WORK"
echo "work: $WORK" >&2

python3 - "$N" <<'PY'
import hashlib, io, json, os, sys, tarfile
n = int(sys.argv[1])
os.makedirs("oci/blobs/sha256")
def blob(data):
    h = hashlib.sha256(data).hexdigest()
    with open(f"oci/blobs/sha256/{h}", "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{h}", "size": len(data)}
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
    def add(name, kind=tarfile.REGTYPE, mode=0o644):
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime = kind, mode, 1700000000
        t.addfile(ti)
    flat = n // 2
    add("flat", tarfile.DIRTYPE, 0o755)
    for i in range(flat):
        add(f"flat/file-{i:07d}")
    dirs = 300
    for d in range(dirs):
        add(f"nested/a/b/d{d:03d}", tarfile.DIRTYPE, 0o755)
    for i in range(n - flat):
        add(f"nested/a/b/d{i % dirs:03d}/file-{i:07d}")
layer = buf.getvalue()
l = blob(layer)
config = json.dumps({"architecture": "amd64", "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": [l["digest"]]}, "config": {}}).encode()
c = blob(config)
manifest = json.dumps({"schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": dict(c, mediaType="application/vnd.oci.image.config.v1+json"),
    "layers": [dict(l, mediaType="application/vnd.oci.image.layer.v1.tar")]}).encode()
m = blob(manifest)
with open("oci/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [dict(m,
        mediaType="application/vnd.oci.image.manifest.v1+json",
        annotations={"org.opencontainers.image.ref.name": "many"})]}, f)
with open("oci/oci-layout", "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
print(f"layer: {n} files, {len(layer) >> 20} MiB", file=sys.stderr)
PY

measure() {
    what=$1
    shift
    /usr/bin/time -f "%e %M" -o time.out "$@" >out.txt 2>err.txt || {
        echo "$what failed:" >&2
        cat err.txt >&2
        exit 1
    }
    read -r wall rss <time.out
    printf '| `%s` | %s | %d |\n' "$what" "$wall" $((rss / 1024))
}

"$CFS" --repo repo init --insecure >/dev/null
echo "files: $N; load: $(uptime | sed 's/.*load average: //')"
echo "| command | wall s | peak RSS MiB |"
echo "|---|---|---|"
measure "oci pull oci:DIR:many" "$CFS" --repo repo oci pull --quiet "oci:$WORK/oci:many" many
measure "oci create-image many" "$CFS" --repo repo oci create-image many
if [ "$(id -u)" = 0 ]; then
    mkdir mnt
    measure "oci mount many DIR" "$CFS" --repo repo oci mount many mnt
    count=$(find mnt -type f | wc -l)
    [ "$count" = "$N" ] || { echo "mount shows $count files, not $N" >&2; exit 1; }
    umount mnt
fi
measure "fsck" "$CFS" --repo repo fsck
measure "gc" "$CFS" --repo repo gc
echo "load after: $(uptime | sed 's/.*load average: //')"
