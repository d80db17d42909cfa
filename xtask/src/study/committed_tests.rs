//! The committed study reports against what the records give.

use super::tests::tempfile_dir;
use super::*;
use crate::workspace::root;

/// The committed docs/study.md and its figures are exactly what `cargo xtask report --study` writes
/// from the records in `results/` (issue 11: the report is regenerated from the records alone,
/// byte-identically, never edited by hand).
#[test]
fn the_committed_study_report_is_what_the_records_give() {
    let dir = tempfile_dir();
    write(&dir.join("study.md")).unwrap();
    let docs = root().join("docs");
    let same = |ours: &Path, committed: &Path| {
        let (a, b) = (std::fs::read_to_string(ours).unwrap(), std::fs::read_to_string(committed).unwrap_or_default());
        if a != b {
            let line =
                a.lines().zip(b.lines()).position(|(x, y)| x != y).unwrap_or(a.lines().count().min(b.lines().count()));
            panic!(
                "{} differs from what the records give (first at line {}): run `cargo xtask report --study` and commit",
                committed.display(),
                line + 1
            );
        }
    };
    same(&dir.join("study.md"), &docs.join("study.md"));
    same(&dir.join("selection.md"), &docs.join("selection.md"));
    same(&dir.join("study-appendix.md"), &docs.join("study-appendix.md"));
    let mut figures = 0;
    for e in std::fs::read_dir(dir.join("figures")).unwrap() {
        let p = e.unwrap().path();
        same(&p, &docs.join("figures").join(p.file_name().unwrap()));
        figures += 1;
    }
    assert!(figures > 0, "the report drew no figure");
    std::fs::remove_dir_all(&dir).unwrap();
}
