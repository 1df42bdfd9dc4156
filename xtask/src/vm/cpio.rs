//! A newc (`070701`) cpio archive built in memory: the initramfs format the kernel unpacks,
//! for the guests of `cargo xtask vm-test` (and the bootable fixture's `initramfs.img`).

/// A newc (`070701`) cpio archive in memory, as the kernel unpacks an initramfs.
#[derive(Default)]
pub(crate) struct Cpio {
    data: Vec<u8>,
    names: std::collections::HashSet<String>,
    ino: u32,
}

impl Cpio {
    pub(crate) fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    fn entry(&mut self, name: &str, mode: u32, body: &[u8]) {
        if !self.names.insert(name.to_owned()) {
            return;
        }
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            body.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.data.extend_from_slice(header.as_bytes());
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(body);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    pub(crate) fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, b"");
    }

    pub(crate) fn file(&mut self, name: &str, body: &[u8], perm: u32) {
        self.entry(name, 0o100000 | perm, body);
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.names.remove("TRAILER!!!");
        self.entry("TRAILER!!!", 0, b"");
        self.data
    }
}
