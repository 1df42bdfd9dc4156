#!/bin/bash
# cfs dracut module: puts cfsctl and cfs-setup-root.service into the initramfs, so that a
# systemd initrd mounts the verified composefs root named on the kernel command line
# (docs/boot.md, "The initramfs: setup-root").
#
# Install this directory as /usr/lib/dracut/modules.d/90cfs/, cfsctl as /usr/bin/cfsctl and
# contrib/systemd/cfs-setup-root.service as /usr/lib/systemd/system/cfs-setup-root.service.
# The module is used only when asked for: `add_dracutmodules+=" cfs "` in a
# /usr/lib/dracut/dracut.conf.d/ file, or `dracut --add cfs`.

check() {
    require_binaries cfsctl || return 1
    # Only when explicitly requested: it changes how the root is mounted.
    return 255
}

depends() {
    echo systemd
    return 0
}

installkernel() {
    # EROFS for the image, overlayfs for the root and /etc, loop for kernels that cannot
    # mount EROFS from a file (before 6.12, or a repository on tmpfs).
    instmods erofs overlay loop
}

install() {
    local service=cfs-setup-root.service
    # From wherever it is on the host, to the path the unit runs.
    inst_binary "$(find_binary cfsctl)" /usr/bin/cfsctl
    inst_simple "${systemdsystemunitdir}/${service}"
    $SYSTEMCTL -q --root "$initdir" add-wants initrd-root-fs.target "$service"
}
