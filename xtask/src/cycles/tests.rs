//! Tests of `check-cycles` on small synthetic crates written to temp dirs, and on the
//! workspace itself.

use super::*;

/// Writes `files` (path relative to `src/`, contents) into a temp crate; returns the dir.
fn synthetic(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        let path = dir.path().join("src").join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
    }
    dir
}

fn cycles_of(files: &[(&str, &str)]) -> Vec<Cycle> {
    let dir = synthetic(files);
    check_crate(&dir.path().join("src/lib.rs"), false).expect("check")
}

/// An edge as `(from, to, [(file relative to src/, line)])`.
type Shape = (String, String, Vec<(String, usize)>);

/// The shape of each edge of a cycle.
fn shape(cycle: &Cycle) -> Vec<Shape> {
    cycle
        .edges
        .iter()
        .map(|e| {
            let sites = e
                .sites
                .iter()
                .map(|s| {
                    let parts: Vec<_> = s.file.iter().collect();
                    let at = parts.iter().rposition(|p| *p == "src").expect("src");
                    let rel: PathBuf = parts[at + 1..].iter().collect();
                    (rel.display().to_string(), s.line)
                })
                .collect();
            (e.from.clone(), e.to.clone(), sites)
        })
        .collect()
}

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn finds_a_two_module_cycle_with_its_sites() {
    let cycles = cycles_of(&[
        ("lib.rs", "mod pull;\nmod store;\nmod other;\n"),
        (
            "pull.rs",
            "//! doc\nuse crate::store::Store;\npub fn fetch() {}\n",
        ),
        (
            "store.rs",
            "pub struct Store;\nfn f() {\n    crate::pull::fetch();\n}\n",
        ),
        ("other.rs", "use crate::store::Store;\n"),
    ]);
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].parent, Vec::<String>::new());
    assert_eq!(cycles[0].members, vec![s("pull"), s("store")]);
    assert_eq!(
        shape(&cycles[0]),
        vec![
            (s("pull"), s("store"), vec![(s("pull.rs"), 2)]),
            (s("store"), s("pull"), vec![(s("store.rs"), 3)]),
        ]
    );
}

#[test]
fn parent_and_child_are_one_unit() {
    // `a` uses its submodule, the submodule uses its parent (`super::` and `crate::a`),
    // and a grandchild reaches its grandparent: no cycle anywhere.
    let cycles = cycles_of(&[
        (
            "lib.rs",
            "pub mod a;\npub use a::Y;\nfn f() -> Y { a::Y }\n",
        ),
        (
            "a/mod.rs",
            "mod c;\nuse c::X;\npub use self::c::*;\npub struct Y;\nfn g(_: X) {}\n",
        ),
        (
            "a/c.rs",
            "use super::Y;\nuse crate::a::Y as Z;\nmod d { use super::super::Y; }\npub struct X;\n",
        ),
    ]);
    assert_eq!(cycles, vec![]);
}

#[test]
fn grouped_and_nested_use_trees() {
    let cycles = cycles_of(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
        (
            "a.rs",
            "use crate::{\n    c::Z,\n    b::{self as bee, inner::{W, *}},\n};\n",
        ),
        (
            "b.rs",
            "pub mod inner { pub struct W; }\nuse crate::c::Z;\n",
        ),
        ("c.rs", "pub struct Z;\nuse crate::{a::*};\n"),
    ]);
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].members, vec![s("a"), s("b"), s("c")]);
    assert_eq!(
        shape(&cycles[0]),
        vec![
            (
                s("a"),
                s("b"),
                vec![(s("a.rs"), 3), (s("a.rs"), 3), (s("a.rs"), 3)]
            ),
            (s("a"), s("c"), vec![(s("a.rs"), 2)]),
            (s("b"), s("c"), vec![(s("b.rs"), 2)]),
            (s("c"), s("a"), vec![(s("c.rs"), 2)]),
        ]
    );
}

#[test]
fn super_resolves_relative_to_the_module() {
    // `a::deep::inner` reaches `b` through `super::super::b`; `b` reaches `a` through
    // `super::a` (in a top-level module `super` is the crate root).
    let cycles = cycles_of(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "mod deep;\npub fn fa() {}\n"),
        (
            "a/deep.rs",
            "mod inner {\n    use super::super::super::b::fb;\n}\n",
        ),
        ("b.rs", "pub fn fb() {}\nfn g() { super::a::fa() }\n"),
    ]);
    assert_eq!(cycles.len(), 1);
    assert_eq!(
        shape(&cycles[0]),
        vec![
            (s("a"), s("b"), vec![(s("a/deep.rs"), 2)]),
            (s("b"), s("a"), vec![(s("b.rs"), 2)]),
        ]
    );
}

#[test]
fn re_exports_macros_and_nested_siblings() {
    // `b` names `a`'s type through the root's re-export, and `a` names `b` inside a macro;
    // inside `n`, `n::x` and `n::y` use each other (a cycle one level down).
    let cycles = cycles_of(&[
        ("lib.rs", "mod a;\nmod b;\nmod n;\npub use a::A;\n"),
        (
            "a.rs",
            "pub struct A;\nfn f() { println!(\"{}\", crate::b::NAME); }\n",
        ),
        (
            "b.rs",
            "pub const NAME: &str = \"b\";\nfn g(_: crate::A) {}\n",
        ),
        ("n/mod.rs", "mod x;\nmod y;\n"),
        ("n/x.rs", "use super::y::Y;\npub struct X;\n"),
        ("n/y.rs", "pub struct Y;\nfn h(_: super::x::X) {}\n"),
    ]);
    assert_eq!(cycles.len(), 2);
    assert_eq!(cycles[0].parent, Vec::<String>::new());
    assert_eq!(
        shape(&cycles[0]),
        vec![
            (s("a"), s("b"), vec![(s("a.rs"), 2)]),
            (s("b"), s("a"), vec![(s("b.rs"), 2)]),
        ]
    );
    assert_eq!(cycles[1].parent, vec![s("n")]);
    assert_eq!(cycles[1].members, vec![s("x"), s("y")]);
}

#[test]
fn names_from_a_glob_import_follow_its_re_exports() {
    // `b` glob-imports the root, which re-exports `a::A`: naming `A` makes `b -> a`.
    // `c` glob-imports the root too but only names a local `A` of its own.
    let cycles = cycles_of(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\npub use a::A;\n"),
        (
            "a.rs",
            "pub struct A;\nuse crate::b::f;\nuse crate::c::g;\n",
        ),
        ("b.rs", "use super::*;\npub fn f() -> A {\n    A\n}\n"),
        ("c.rs", "use super::*;\nstruct A;\npub fn g() -> A { A }\n"),
    ]);
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].members, vec![s("a"), s("b")]);
    assert_eq!(
        shape(&cycles[0]),
        vec![
            (s("a"), s("b"), vec![(s("a.rs"), 2)]),
            (s("b"), s("a"), vec![(s("b.rs"), 2), (s("b.rs"), 3)]),
        ]
    );
}

#[test]
fn cfg_test_modules_and_visibility_paths_are_ignored() {
    let files = [
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "use crate::b::B;\npub(in crate::a) struct A;\n"),
        (
            "b.rs",
            "pub struct B;\n#[cfg(test)]\nmod tests { use crate::a::A; }\n#[cfg(test)]\nuse crate::a::A;\n",
        ),
    ];
    let cycles = cycles_of(&files);
    assert_eq!(cycles, vec![]);
    // With `--with-tests` the test module's use counts.
    let dir = synthetic(&files);
    let cycles = check_crate(&dir.path().join("src/lib.rs"), true).expect("check");
    assert_eq!(cycles.len(), 1);
    assert_eq!(
        shape(&cycles[0]),
        vec![
            (s("a"), s("b"), vec![(s("a.rs"), 1)]),
            (s("b"), s("a"), vec![(s("b.rs"), 3), (s("b.rs"), 5)]),
        ]
    );
}

#[test]
fn the_workspace_crates_have_no_cycles() {
    // crates/oci is left out while its pull engine is being restructured (pull <-> store).
    let root = project_root();
    for dir in [
        "crates/cfsctl",
        "crates/image",
        "crates/repository",
        "xtask",
    ] {
        for crate_root in crate_roots(&root.join(dir)).expect("crate roots") {
            for with_tests in [false, true] {
                let cycles = check_crate(&crate_root, with_tests).expect("check");
                let shown: Vec<String> = cycles.iter().map(ToString::to_string).collect();
                assert!(
                    cycles.is_empty(),
                    "{}:\n{}",
                    crate_root.display(),
                    shown.join("")
                );
            }
        }
    }
}

#[test]
fn missing_module_file_is_an_error_naming_it() {
    let dir = synthetic(&[("lib.rs", "mod gone;\n")]);
    let err = check_crate(&dir.path().join("src/lib.rs"), false).expect_err("must fail");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("mod gone;") && msg.contains("gone.rs"),
        "{msg}"
    );
}
