//! Fuzz target: the composefs dumpfile parser. Whatever parses must print and re-parse to the
//! same tree, and must either be written as an EROFS image that reads back as the same tree, or
//! be refused by the writer with an error.

#![no_main]

use cfs_image::{FormatOptions, dumpfile, erofs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(fs) = dumpfile::parse(data) else {
        return;
    };
    let printed = dumpfile::to_vec(&fs);
    let again = dumpfile::parse(&printed).expect("a printed dumpfile parses");
    assert!(again == fs, "print/parse round trip changed the tree");
    if let Ok(image) = erofs::write(&fs, FormatOptions::default()) {
        let back = erofs::read(&image).expect("a written image reads back");
        // Foreign dumpfiles may redirect to paths that are not object names (mkcomposefs
        // allows any path); gc and fsck refuse those images rather than guess. Anything else
        // must read.
        match erofs::referenced_objects(&image) {
            Ok(_) | Err(erofs::ReadError::NotAnObject { .. }) => {}
            Err(e) => panic!("objects of a written image: {e:?}"),
        }
        // The image adds the 256 whiteouts at the root and rewrites overlay xattrs, so compare
        // through a second write: the same tree must give the same bytes.
        let image2 = erofs::write(&back, FormatOptions::default()).expect("re-write");
        assert!(
            image2 == image,
            "write(read(write(fs))) differs from write(fs)"
        );
    }
});
