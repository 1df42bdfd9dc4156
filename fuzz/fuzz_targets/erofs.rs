//! Fuzz target: the composefs EROFS reader on arbitrary (mostly corrupted) images. Must return
//! an error or a tree — no panic, no unbounded allocation, no endless loop (directory cycles,
//! self-referencing inodes, huge sizes).

#![no_main]

use cfs_image::{dumpfile, erofs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(fs) = erofs::read(data) {
        // Whatever reads must be printable.
        let _ = dumpfile::to_vec(&fs);
    }
    let _ = erofs::referenced_objects(data);
});
