//! Tests of the kernel argument forms: printing as composefs-rs 0.9.4 prints them, and finding
//! the argument on a command line as its initramfs does.

use super::*;

const H256: &str = "8b7df143d91c716ecfa5fc1730022f6b421b05cedee8fd52b1fc65a96030ad52";

fn id256() -> ObjectId {
    ObjectId::parse_for(HashAlgorithm::Sha256, H256).expect("test digest")
}

fn id512() -> ObjectId {
    ObjectId::parse_for(HashAlgorithm::Sha512, &H256.repeat(2)).expect("test digest")
}

#[test]
fn prints_every_form() {
    let k = ComposefsKarg::v1(id256(), false);
    assert_eq!(
        k.to_string(),
        format!("composefs.digest=v1-sha256-12:{H256}")
    );
    let k = ComposefsKarg::v1(id256(), true);
    assert_eq!(
        k.to_string(),
        format!("composefs.digest=?v1-sha256-12:{H256}")
    );
    let k = ComposefsKarg::v1(id512(), false);
    assert_eq!(
        k.to_string(),
        format!("composefs.digest=v1-sha512-12:{}", H256.repeat(2))
    );
    let k = ComposefsKarg {
        format: ErofsFormat::V2,
        id: id256(),
        insecure: true,
    };
    assert_eq!(k.to_string(), format!("composefs=?{H256}"));
}

#[test]
fn printed_forms_parse_back() {
    for format in [ErofsFormat::V1, ErofsFormat::V2] {
        for insecure in [false, true] {
            for id in [id256(), id512()] {
                let k = ComposefsKarg {
                    format,
                    id,
                    insecure,
                };
                let line = format!("root=/dev/vda rw {k} quiet");
                assert_eq!(find(&line, id.algorithm()), Ok(k), "{line}");
            }
        }
    }
}

#[test]
fn digest_form_wins_over_shorthand_and_other_algorithms_are_skipped() {
    let line = format!(
        "composefs={H256} composefs.digest=v1-sha512-12:{} composefs.digest=?v1-sha256-12:{H256}",
        H256.repeat(2)
    );
    let k = find(&line, HashAlgorithm::Sha256).expect("found");
    assert_eq!(k, ComposefsKarg::v1(id256(), true));
    let k = find(&line, HashAlgorithm::Sha512).expect("found");
    assert_eq!(k, ComposefsKarg::v1(id512(), false));
    // Only a sha512 digest form: a sha256 repository falls back to the shorthand.
    let line = format!(
        "composefs.digest=v1-sha512-12:{} composefs={H256}",
        H256.repeat(2)
    );
    let k = find(&line, HashAlgorithm::Sha256).expect("found");
    assert_eq!(k.format, ErofsFormat::V2);
}

#[test]
fn v2_descriptor_and_upper_case_hex() {
    let line = format!("composefs.digest=v2-sha256-12:{}", H256.to_uppercase());
    let k = find(&line, HashAlgorithm::Sha256).expect("found");
    assert_eq!(k.format, ErofsFormat::V2);
    assert_eq!(k.id, id256());
}

#[test]
fn quoted_arguments_do_not_hide_or_fake_the_karg() {
    let line = format!("foo=\"a composefs={H256} b\" composefs.digest=v1-sha256-12:{H256}");
    assert_eq!(
        find(&line, HashAlgorithm::Sha256),
        Ok(ComposefsKarg::v1(id256(), false))
    );
    let line = format!("foo=\"a composefs={H256} b\"");
    assert_eq!(
        find(&line, HashAlgorithm::Sha256),
        Err(KargError::Missing {
            algorithm: HashAlgorithm::Sha256
        })
    );
}

#[test]
fn refuses_malformed_values() {
    let bad = [
        format!("composefs.digest=v1-sha256-12:{}", &H256[1..]),
        format!("composefs.digest=v1-sha256-8:{H256}"),
        format!("composefs.digest=v3-sha256-12:{H256}"),
        format!("composefs.digest=v1-md5-12:{H256}"),
        format!("composefs.digest=v1-sha256:{H256}"),
        format!("composefs.digest={H256}"),
        "composefs.digest=v1-sha256-12:notahex".to_owned(),
        format!("composefs=sha256:{H256}"),
        format!("composefs={}", H256.repeat(2)),
        "composefs=".to_owned(),
        "composefs=?".to_owned(),
        format!("composefs=??{H256}"),
    ];
    for line in &bad {
        let err = find(line, HashAlgorithm::Sha256).expect_err(line);
        let text = err.to_string();
        assert!(text.contains("composefs"), "{line}: {text}");
    }
}

#[test]
fn missing_names_the_algorithm() {
    let err = find(
        "root=/dev/vda composefsx=1 xcomposefs=2",
        HashAlgorithm::Sha512,
    )
    .expect_err("no karg");
    assert!(err.to_string().contains("sha512"), "{err}");
}

#[test]
fn splits_like_the_kernel() {
    let args: Vec<_> = split_cmdline("  a  b=\"c d\"\te\n f=\"g").collect();
    assert_eq!(args, ["a", "b=\"c d\"", "e", "f=\"g"]);
}
