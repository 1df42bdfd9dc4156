//! Unit tests of BLS entry parsing, relocation, option editing and the entry checks.

use super::*;

const KARG: &str = "composefs.digest=v1-sha256-12:aa";

#[test]
fn entries_parse_and_print_line_for_line() {
    let text = "# c\ntitle  Debian GNU/Linux\nversion 6.1\nlinux /boot/vmlinuz-6.1\ninitrd /boot/initrd.img-6.1\ninitrd /boot/ucode.img\noptions root=UUID=x ro\n";
    let e = BlsEntry::parse(text);
    assert_eq!(e.to_text(), text);
    assert_eq!(e.value("title"), Some("Debian GNU/Linux"));
    assert_eq!(e.value("titlex"), None);
    assert_eq!(
        e.files(),
        [
            "/boot/vmlinuz-6.1",
            "/boot/initrd.img-6.1",
            "/boot/ucode.img"
        ]
    );
    // `linuxefi x` is not `linux`.
    assert!(BlsEntry::parse("linuxefi /x\n").files().is_empty());
}

#[test]
fn relocation_moves_files_under_the_entry_id() {
    let mut e =
        BlsEntry::parse("linux /boot/vmlinuz-6.1\ninitrd /boot/x/initrd.img\nefi noslash\n");
    let moved = e.relocate("myid");
    assert_eq!(
        moved,
        [
            (
                "/boot/vmlinuz-6.1".to_owned(),
                "/myid/vmlinuz-6.1".to_owned()
            ),
            (
                "/boot/x/initrd.img".to_owned(),
                "/myid/initrd.img".to_owned()
            )
        ]
    );
    assert_eq!(
        e.to_text(),
        "linux /myid/vmlinuz-6.1\ninitrd /myid/initrd.img\nefi noslash\n"
    );
}

#[test]
fn options_follow_composefs_rs_order_and_replace_by_whole_key() {
    let mut e = BlsEntry::parse("title x\n");
    e.adjust_cmdline(KARG, &["rw".into(), "console=ttyS0".into()]);
    assert_eq!(
        e.to_text(),
        format!("title x\noptions {KARG} rw console=ttyS0\n")
    );

    let mut e = BlsEntry::parse(
        "options root=/dev/vda composefs.digest=v1-sha512-12:bb quiet\noptions composefs=cc x\n",
    );
    e.adjust_cmdline(
        KARG,
        &[
            "ro".into(),
            "quiet".into(),
            "root=/dev/vdb".into(),
            "a=\"b c\"".into(),
        ],
    );
    // The karg in place of the old one, `ro` appended (not replacing `root=`), `quiet` not
    // doubled, `root=` replaced; the second line's composefs= removed.
    assert_eq!(
        e.to_text(),
        format!("options root=/dev/vdb {KARG} quiet ro a=\"b c\"\noptions x\n")
    );

    let mut e = BlsEntry::parse(&format!("options composefs=dd {KARG} {KARG}\n"));
    e.adjust_cmdline(KARG, &[]);
    assert_eq!(e.to_text(), format!("options {KARG}\n"));
}

#[test]
fn entry_ids_that_could_leave_the_boot_directory_or_the_line_are_refused() {
    for id in ["6.1.0-13-amd64", "debian", "a+b~c@d:e_f"] {
        check_entry_id(id, "test").expect(id);
    }
    let long = "a".repeat(ENTRY_ID_MAX + 1);
    for id in [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "/abs",
        ".hidden",
        "a b",
        "a\nlinux /x",
        "a\0",
        "é",
        long.as_str(),
    ] {
        assert!(check_entry_id(id, "test").is_err(), "{id:?} accepted");
    }
}

#[test]
fn cmdline_args_must_be_one_argument_and_not_composefs() {
    for a in ["rw", "console=ttyS0,115200", "x=\"a b\""] {
        check_cmdline_arg(a).expect(a);
    }
    for a in [
        "",
        "a b",
        " a",
        "a\nlinux /evil",
        "x=\"a",
        "composefs=abc",
        "composefs.digest=v1-x",
        "a\tb",
    ] {
        assert!(check_cmdline_arg(a).is_err(), "{a:?} accepted");
    }
    assert_eq!(one_line(" Debian\nlinux /evil\r "), "Debian linux /evil");
}
