//! The scripts of `cargo xtask vm-test --boot`: the maintenance guest's `/test.sh` (run by
//! `vm_guest::INIT`: install the image, or tamper with the installed repository), and the
//! bootable image's own `/init` (in its `initramfs.img`) and test program (`/usr/sbin/init`).
//!
//! Every check prints `CFSVM PASS <name>` or `CFSVM FAIL <name>: <why>` on the serial console,
//! as in `vm_guest.rs`; the host (`boot_test.rs`) parses them and some `CFSBOOT …` markers.

/// The maintenance guest's `/test.sh`; `cfstest.step=` on the command line chooses the step.
pub(crate) const MAINTENANCE: &str = r#"
C=/usr/bin/cfsctl
R=/disk/composefs
pass() { echo "CFSVM PASS $1"; }
fail() { echo "CFSVM FAIL $1: $(echo "$2" | tr '\n' ' ')"; }
check() {
    name=$1; shift
    if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$out"; fi
    echo "CFSBOOT TIME $name $(cut -d' ' -f1 /proc/uptime)"
}
arg() { for a in $(cat /proc/cmdline); do case "$a" in "$1"=*) echo "${a#*=}" ;; esac; done; }
step=$(arg cfstest.step)

i=0
while [ ! -b /dev/vdb ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
mkdir -p /disk /src
check mount-root-disk mount -t ext4 /dev/vda /disk
check mount-oci-disk mount -t ext4 -o ro /dev/vdb /src

case "$step" in
install)
    out=$($C --repo $R init 2>&1)
    case "$out" in
        *"verity enforced"*) pass install-init-enforced ;;
        *) fail install-init-enforced "$out" ;;
    esac
    check install-pull $C --repo $R oci pull oci:/src/layout:boot boot
    mkdir -p /disk/boot
    if out=$($C --repo $R oci prepare-boot boot --bootdir /disk/boot \
            --cmdline console=ttyS0 --cmdline mitigations=off --cmdline panic=-1 \
            --cmdline root=/dev/vda --cmdline rw 2>&1); then
        pass install-prepare-boot
    else
        fail install-prepare-boot "$out"
    fi
    if karg=$($C --repo $R oci compute-karg boot 2>&1); then
        echo "CFSBOOT KARG $karg"
        pass install-compute-karg
    else
        fail install-compute-karg "$karg"
    fi
    check install-fsck $C --repo $R fsck
    ;;
tamper-object)
    # Swap the data file's object for another object that has valid fs-verity.
    T=$(/usr/bin/fsverity digest --compact /src/data)
    T="$R/objects/$(echo "$T" | cut -c1-2)/$(echo "$T" | cut -c3-)"
    mkdir -p /tmp/decoy
    dd if=/dev/urandom of=/tmp/decoy/file bs=4096 count=16 2>/dev/null
    check tamper-decoy-image $C --repo $R create-image /tmp/decoy decoy
    D=$(/usr/bin/fsverity digest --compact /tmp/decoy/file)
    D="$R/objects/$(echo "$D" | cut -c1-2)/$(echo "$D" | cut -c3-)"
    if [ -f "$T" ] && [ -f "$D" ] && mv -f "$D" "$T"; then
        pass tamper-object-swapped
    else
        fail tamper-object-swapped "target $T or decoy $D missing"
    fi
    check tamper-object-has-verity /usr/bin/fsverity measure "$T"
    ;;
tamper-image)
    # Replace the bootable EROFS with another image that has valid fs-verity.
    id=$(arg cfstest.id)
    T="$R/objects/$(echo "$id" | cut -c1-2)/$(echo "$id" | cut -c3-)"
    mkdir -p /tmp/other
    echo other > /tmp/other/file
    if D=$($C --repo $R create-image /tmp/other other 2>&1); then
        D="$R/objects/$(echo "$D" | cut -c1-2)/$(echo "$D" | cut -c3-)"
        if [ -f "$T" ] && mv -f "$D" "$T"; then
            pass tamper-image-replaced
        else
            fail tamper-image-replaced "target $T missing"
        fi
    else
        fail tamper-image-replaced "$D"
    fi
    ;;
*)
    fail step "unknown cfstest.step=$step"
    ;;
esac
umount /src
umount /disk
"#;

/// The bootable image's `/init` (in its `initramfs.img`): mounts the physical root (`root=`)
/// at `/sysroot`, runs `cfsctl setup-root`, and hands over to the image's `/sbin/init`.
pub(crate) const INITRAMFS_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "CFSBOOT INITRAMFS $(cut -d' ' -f1 /proc/uptime)"
for m in $(cat /modules/order); do
    insmod "/modules/$m" || echo "CFSBOOT insmod $m failed"
done
root=
for a in $(cat /proc/cmdline); do
    case "$a" in root=*) root=${a#root=} ;; esac
done
i=0
while [ ! -b "$root" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
give_up() {
    echo "CFSBOOT $1"
    umount /sysroot 2>/dev/null
    sync
    poweroff -f
}
mount -t ext4 -o rw "$root" /sysroot || give_up "ROOT-MOUNT-FAILED $root"
if /usr/bin/cfsctl setup-root --sysroot /sysroot; then
    echo "CFSBOOT SETUP-ROOT OK"
else
    give_up "SETUP-ROOT REFUSED"
fi
for d in proc sys dev; do
    mount --move /$d /sysroot/$d
done
exec switch_root /sysroot /sbin/init
"#;

/// The test program, the image's `/usr/sbin/init` (Debian's `sh`, coreutils, util-linux):
/// checks the verified root it runs from. `cfstest.phase=` says which boot this is.
pub(crate) const TEST_PROGRAM: &str = r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
[ -e /proc/self/mountinfo ] || mount -t proc proc /proc
echo "CFSVM BOOTED $(cut -d' ' -f1 /proc/uptime)"
echo "CFSBOOT IMAGE-RUNNING"
pass() { echo "CFSVM PASS $1"; }
fail() { echo "CFSVM FAIL $1: $(echo "$2" | tr '\n' ' ')"; }
arg() { for a in $(cat /proc/cmdline); do case "$a" in "$1"=*) echo "${a#*=}" ;; esac; done; }
phase=$(arg cfstest.phase)
karg=$(arg composefs.digest)
hex=${karg##*:}

# mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPER_OPTIONS
mi() { awk -v m="$1" '$5 == m' /proc/self/mountinfo | tail -n 1; }
root=$(mi /)
fstype=$(echo "$root" | sed 's/.* - //' | cut -d' ' -f1)
source=$(echo "$root" | sed 's/.* - //' | cut -d' ' -f2)
opts=$(echo "$root" | cut -d' ' -f6)
super=$(echo "$root" | sed 's/.* - //' | cut -d' ' -f3)
[ "$fstype" = overlay ] && pass "$phase-root-is-overlay" || fail "$phase-root-is-overlay" "$root"
case ",$opts," in *,ro,*) pass "$phase-root-read-only" ;; *) fail "$phase-root-read-only" "$root" ;; esac
case ",$super," in *,verity=require,*) pass "$phase-root-verity-require" ;; *) fail "$phase-root-verity-require" "$root" ;; esac
[ "$source" = "composefs:$hex" ] && pass "$phase-root-source" || fail "$phase-root-source" "source $source, karg $karg"
if touch /cfs-test-write 2>/dev/null; then fail "$phase-root-refuses-writes" "wrote /"; else pass "$phase-root-refuses-writes"; fi
[ -z "$(ls -A /boot)" ] && pass "$phase-boot-empty" || fail "$phase-boot-empty" "$(ls -A /boot)"
[ -d /sysroot/composefs/objects ] && pass "$phase-physical-root-at-sysroot" || fail "$phase-physical-root-at-sysroot" "$(ls /sysroot)"

case "$phase" in
first|second)
    sum=$(sha256sum /usr/share/cfs-boot-test/data 2>&1 | cut -d' ' -f1)
    [ "$sum" = "@DATA_SHA256@" ] && pass "$phase-data-sha256" || fail "$phase-data-sha256" "$sum"
    ;;
tampered)
    if out=$(cat /usr/share/cfs-boot-test/data 2>&1 >/dev/null); then
        fail tampered-data-eio "the swapped object was read without error"
    else
        case "$out" in
            *"Input/output error"*) pass tampered-data-eio ;;
            *) fail tampered-data-eio "$out" ;;
        esac
    fi
    ;;
esac

case "$phase" in
first)
    for d in /etc /var; do
        if out=$(sh -c "echo 'written in the first boot' > $d/cfs-test-marker" 2>&1); then
            pass "first-$d-writable"
        else
            fail "first-$d-writable" "$out"
        fi
    done
    ;;
second)
    for d in /etc /var; do
        m=$(cat $d/cfs-test-marker 2>&1)
        [ "$m" = "written in the first boot" ] && pass "second-$d-marker-survived" || fail "second-$d-marker-survived" "$m"
    done
    ;;
esac
echo "CFSVM DONE $(cut -d' ' -f1 /proc/uptime)"
sync
echo 1 > /proc/sys/kernel/sysrq
echo o > /proc/sysrq-trigger
sleep 30
"#;
