//! Records the git commit the binary was built from, for checkpoint metadata and run manifests.
fn main() {
    let out = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output();
    let commit = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "unknown".to_string(),
    };
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    println!("cargo:rustc-env=AWT_GIT_COMMIT={commit}{}", if dirty { "-dirty" } else { "" });
    // The sources too: an edit after the last commit must mark the binary dirty even when git's
    // index has not changed (a directory here means any file below it).
    for p in ["../../.git/HEAD", "../../.git/index", "../../.git/refs/heads", "../../crates", "../../Cargo.lock"] {
        println!("cargo:rerun-if-changed={p}");
    }
}
