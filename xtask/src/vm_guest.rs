//! The scripts that run inside the `cargo xtask vm-test` guest: `/init` (mounts the pseudo
//! filesystems, loads modules, runs the test, powers off) and `/test.sh` (the checks).
//!
//! Both run under busybox `sh`, which prefers its own applets to programs on `PATH`, so real
//! tools are called by absolute path (`/usr/bin/cfsctl`, `/usr/bin/fsverity`). Every check
//! prints one line on the serial console, `CFSVM PASS <name>` or `CFSVM FAIL <name>: <why>`;
//! `CFSVM BOOTED <uptime>` marks the start of init and `CFSVM DONE` the end. The host
//! (`vm.rs`) parses these lines.

/// `/init`.
pub const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo "CFSVM BOOTED $(cut -d' ' -f1 /proc/uptime)"
for m in $(cat /modules/order); do
    insmod "/modules/$m" || echo "CFSVM FAIL insmod-$m: insmod failed"
done
sh /test.sh
echo "CFSVM DONE $(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
"#;

/// `/test.sh`.
pub const TEST: &str = r#"
C=/usr/bin/cfsctl
R=/disk/repo
pass() { echo "CFSVM PASS $1"; }
fail() { echo "CFSVM FAIL $1: $(echo "$2" | tr '\n' ' ')"; }
# check NAME CMD...: CMD must succeed.
check() {
    name=$1; shift
    if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$out"; fi
}
# refuse NAME PATTERN CMD...: CMD must fail, saying something matching PATTERN.
refuse() {
    name=$1; pattern=$2; shift 2
    if out=$("$@" 2>&1); then
        fail "$name" "succeeded but should have failed: $out"
    elif echo "$out" | grep -q -i -e "$pattern"; then
        pass "$name"
    else
        fail "$name" "failed, but not with '$pattern': $out"
    fi
}
same() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "'$2' != '$3'"; fi; }

i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
mkdir -p /disk /mnt /src
check mount-disk mount -t ext4 /dev/vda /disk

# A repository on ext4 with the verity feature enforces verity.
out=$($C --repo $R init 2>&1)
case "$out" in
    *"verity enforced"*) pass init-enforced ;;
    *) fail init-enforced "$out" ;;
esac

# A source directory with the usual kinds of files.
mkdir -p /src/sub/deeper
echo hello > /src/small
dd if=/dev/urandom of=/src/sub/big bs=1024 count=300 2>/dev/null
dd if=/dev/urandom of=/src/medium bs=1000 count=5 2>/dev/null
ln /src/sub/big /src/big-link
ln -s sub/big /src/sym
mknod /src/null c 1 3
mkfifo /src/fifo
chmod 4755 /src/small
chown 1000:1001 /src/medium

ID=$($C --repo $R create-image /src img 2>&1)
CID=$($C compute-id /src 2>&1)
same create-image-equals-compute-id "$ID" "$CID"
check fsck-clean $C --repo $R fsck

# The objects carry fs-verity, measured by the kernel, equal to their names.
BIG=$($C digest /src/sub/big | cut -d' ' -f1 | cut -d: -f2)
D=$(echo "$BIG" | cut -c1-2)
REST=$(echo "$BIG" | cut -c3-)
OBJ=$R/objects/$D/$REST
if [ -x /usr/bin/fsverity ]; then
    M=$(/usr/bin/fsverity measure "$OBJ" 2>&1 | cut -d' ' -f1)
    same object-verity-measured "$M" "sha256:$BIG"
fi
IMG=$R/objects/$(echo "$ID" | cut -c1-2)/$(echo "$ID" | cut -c3-)
if [ -x /usr/bin/fsverity ]; then
    M=$(/usr/bin/fsverity measure "$IMG" 2>&1 | cut -d' ' -f1)
    same image-verity-measured "$M" "sha256:$ID"
fi

# Mount by name with verity=require and read everything back.
check mount-by-ref $C --repo $R mount img /mnt
case "$(grep ' /mnt ' /proc/mounts)" in
    *verity=require*) pass mount-verity-require ;;
    *) fail mount-verity-require "$(grep ' /mnt ' /proc/mounts)" ;;
esac
if grep -q erofs /proc/mounts; then fail erofs-detached "$(grep erofs /proc/mounts)"; else pass erofs-detached; fi
check read-big cmp /src/sub/big /mnt/sub/big
check read-medium cmp /src/medium /mnt/medium
same read-small "$(cat /mnt/small)" hello
same symlink "$(readlink /mnt/sym)" sub/big
same hardlink "$(stat -c %i /mnt/big-link)" "$(stat -c %i /mnt/sub/big)"
same mode "$(stat -c %a /mnt/small)" 4755
same owner "$(stat -c %u:%g /mnt/medium)" 1000:1001
same device "$(stat -c %F-%t-%T /mnt/null)" "character special file-1-3"
umount /mnt

# An image with no ref, mounted by ID, survives gc while mounted (verity=require still reads
# every file afterwards) and goes with the first gc after it is unmounted.
mkdir -p /src2 /mnt2
dd if=/dev/urandom of=/src2/only-here bs=1024 count=200 2>/dev/null
ID2=$($C --repo $R create-image /src2 2>&1)
check mount-unnamed-by-id $C --repo $R mount "$ID2" /mnt2
out=$($C --repo $R gc 2>&1)
case "$out" in
    *"kept image $ID2 (mounted"*) pass gc-keeps-mounted ;;
    *) fail gc-keeps-mounted "$out" ;;
esac
echo 3 > /proc/sys/vm/drop_caches
check read-after-gc cmp /src2/only-here /mnt2/only-here
umount /mnt2
out=$($C --repo $R gc -v 2>&1)
case "$out" in
    *"removed image $ID2"*) pass gc-after-unmount ;;
    *) fail gc-after-unmount "$out" ;;
esac

# An object replaced behind the repository's back (another file in its place, same size, no
# verity) must not be readable through the mount.
rm -f "$OBJ"
dd if=/dev/urandom of="$OBJ" bs=1024 count=300 2>/dev/null
# The same for a replacement that has fs-verity, but with another digest.
MED=$($C digest /src/medium | cut -d' ' -f1 | cut -d: -f2)
MOBJ=$R/objects/$(echo "$MED" | cut -c1-2)/$(echo "$MED" | cut -c3-)
if [ -x /usr/bin/fsverity ]; then
    rm -f "$MOBJ"
    dd if=/dev/urandom of="$MOBJ" bs=1000 count=5 2>/dev/null
    check enable-verity-on-impostor /usr/bin/fsverity enable "$MOBJ"
fi
check mount-by-id $C --repo $R mount "$ID" /mnt
refuse tampered-object-eio "Input/output error" cat /mnt/sub/big
if [ -x /usr/bin/fsverity ]; then
    refuse impostor-with-verity-eio "Input/output error" cat /mnt/medium
fi
same untouched-file-still-reads "$(cat /mnt/small)" hello
umount /mnt
refuse fsck-finds-tampered-object "" $C --repo $R fsck

# Wrong image IDs do not mount.
refuse mount-unknown-id "not found" $C --repo $R mount 0000000000000000000000000000000000000000000000000000000000000000 /mnt
cp "$IMG" /tmp/image-copy
rm -f "$IMG"
echo "not the image" > "$IMG"
refuse mount-replaced-image "verity" $C --repo $R mount "$ID" /mnt
if grep -q ' /mnt ' /proc/mounts; then fail nothing-mounted "$(grep ' /mnt ' /proc/mounts)"; else pass nothing-mounted; fi

# OCI: pull from an oci: layout on the second disk, if the host provided one.
if [ -b /dev/vdb ] && [ -x /usr/bin/skopeo ]; then
    mkdir -p /oci
    check mount-oci-disk mount -t ext4 -o ro /dev/vdb /oci
    R2=/disk/repo2
    $C --repo $R2 init >/dev/null 2>&1
    check oci-pull $C --repo $R2 oci pull --quiet oci:/oci/layout:test test
    check oci-fsck $C --repo $R2 fsck
    for diff in $(cat /oci/diff_ids); do
        got=$($C --repo $R2 oci layer "$diff" | sha256sum | cut -d' ' -f1)
        same "oci-layer-${diff#sha256:}" "sha256:$got" "$diff"
    done
    # The pulled image, merged into a composefs image and mounted with verity=require.
    mkdir -p /mnt3
    check oci-mount $C --repo $R2 oci mount test /mnt3
    case "$(grep ' /mnt3 ' /proc/mounts)" in
        *verity=require*) pass oci-mount-verity-require ;;
        *) fail oci-mount-verity-require "$(grep ' /mnt3 ' /proc/mounts)" ;;
    esac
    check oci-mount-contents sh -c 'cd /mnt3 && sha256sum -c /oci/expect.sha256'
    umount /mnt3
fi
"#;
