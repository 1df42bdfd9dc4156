//! The composefs dumpfile corpus (`../shared/composefs-dumps`): every dump with a `.sha256`
//! must produce exactly mkcomposefs's image, every `should-fail-*` must be refused, parse →
//! print must round-trip, and writer → reader must give back the same tree.
//!
//! Without the corpus the tests fail under `CI` and are skipped (with a message) otherwise.

use std::io::Read;
use std::path::{Path, PathBuf};

use cfs_image::{FormatOptions, dumpfile, erofs};
use sha2::{Digest, Sha256};

fn corpus_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/composefs-dumps");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "composefs dump corpus missing at {}",
        dir.display()
    );
    eprintln!(
        "skipping: composefs dump corpus not found at {}",
        dir.display()
    );
    None
}

/// A dumpfile of the corpus, decompressed.
struct Case {
    name: String,
    data: Vec<u8>,
    /// Expected sha256 of mkcomposefs's image, if given.
    sha256: Option<String>,
    version: Option<u32>,
}

fn read_dump(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).expect("read dump");
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .expect("gunzip");
        out
    } else {
        raw
    }
}

fn cases(dir: &Path) -> Vec<Case> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list corpus")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".dump") || n.ends_with(".dump.gz"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let side = |ext: &str| std::fs::read_to_string(dir.join(format!("{name}.{ext}"))).ok();
            Case {
                data: read_dump(&path),
                sha256: side("sha256")
                    .map(|s| s.split_whitespace().next().unwrap_or("").to_owned()),
                version: side("version").map(|s| s.trim().parse().expect("version number")),
                name,
            }
        })
        .collect()
}

fn options(case: &Case) -> FormatOptions {
    match case.version {
        Some(v) => FormatOptions::exactly(v),
        None => FormatOptions::default(),
    }
}

fn image_of(case: &Case) -> Result<Vec<u8>, String> {
    let fs = dumpfile::parse(&case.data).map_err(|e| e.to_string())?;
    erofs::write(&fs, options(case)).map_err(|e| e.to_string())
}

#[test]
fn images_are_byte_identical_to_mkcomposefs() {
    let Some(dir) = corpus_dir() else { return };
    let mut failures = Vec::new();
    let mut passed = 0;
    for case in cases(&dir) {
        let Some(expected) = &case.sha256 else {
            continue;
        };
        match image_of(&case) {
            Ok(image) => {
                let got = hex::encode(Sha256::digest(&image));
                if &got == expected {
                    passed += 1;
                } else {
                    failures.push(format!("{}: sha256 {got}, expected {expected}", case.name));
                }
            }
            Err(e) => failures.push(format!("{}: refused: {e}", case.name)),
        }
    }
    eprintln!("{passed} corpus images byte-identical");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(passed >= 1);
}

#[test]
fn should_fail_cases_are_refused() {
    let Some(dir) = corpus_dir() else { return };
    let mut accepted = Vec::new();
    let mut n = 0;
    for case in cases(&dir) {
        if !case.name.starts_with("should-fail-") {
            continue;
        }
        n += 1;
        match image_of(&case) {
            Ok(_) => accepted.push(case.name),
            Err(e) => eprintln!("{}: {e}", case.name),
        }
    }
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
    assert!(n > 0);
}

#[test]
fn parse_print_round_trips() {
    let Some(dir) = corpus_dir() else { return };
    for case in cases(&dir) {
        let Ok(fs) = dumpfile::parse(&case.data) else {
            assert!(
                case.name.starts_with("should-fail-"),
                "{} refused",
                case.name
            );
            continue;
        };
        let printed = dumpfile::to_vec(&fs);
        let lines = |d: &[u8]| -> Vec<Vec<u8>> {
            d.split(|&c| c == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        };
        let (given, ours) = (lines(&case.data), lines(&printed));
        let differing: Vec<_> = given.iter().zip(&ours).filter(|(a, b)| a != b).collect();
        eprintln!(
            "{}: {}/{} lines printed exactly as given",
            case.name,
            given.len() - differing.len(),
            given.len()
        );
        for (a, b) in differing.iter().take(2) {
            let cut = |l: &[u8]| String::from_utf8_lossy(&l[..l.len().min(120)]).into_owned();
            eprintln!("  given: {}\n  ours:  {}", cut(a), cut(b));
        }
        let again = dumpfile::parse(&printed)
            .unwrap_or_else(|e| panic!("{}: printed dump does not parse: {e}", case.name));
        assert!(
            fs == again,
            "{}: tree changed through print/parse",
            case.name
        );
        assert_eq!(
            printed,
            dumpfile::to_vec(&again),
            "{}: printing is not stable",
            case.name
        );
    }
}

#[test]
fn writer_reader_round_trips() {
    let Some(dir) = corpus_dir() else { return };
    for case in cases(&dir) {
        let Ok(fs) = dumpfile::parse(&case.data) else {
            continue;
        };
        let Ok(image) = erofs::write(&fs, options(&case)) else {
            continue;
        };
        let back = erofs::read(&image)
            .unwrap_or_else(|e| panic!("{}: image does not read back: {e}", case.name));
        if fs != back {
            let a = String::from_utf8_lossy(&dumpfile::to_vec(&fs)).into_owned();
            let b = String::from_utf8_lossy(&dumpfile::to_vec(&back)).into_owned();
            let diff: Vec<_> = a
                .lines()
                .zip(b.lines())
                .filter(|(x, y)| x != y)
                .map(|(x, y)| {
                    (
                        x.chars().take(200).collect::<String>(),
                        y.chars().take(200).collect::<String>(),
                    )
                })
                .take(3)
                .collect();
            panic!("{}: tree changed through write/read: {diff:#?}", case.name);
        }
    }
}
