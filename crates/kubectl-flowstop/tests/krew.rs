//! The krew manifest, checked by krew itself: krew (built from its upstream module) installs
//! the plugin from deploy/krew/flowstop.yaml and a local archive into a temporary KREW_ROOT,
//! and kubectl then finds it as `kubectl flowstop`.

use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

fn krew() -> std::path::PathBuf {
    testkit::tools::tool("krew")
}

#[test]
fn krew_installs_the_plugin_from_its_manifest_and_kubectl_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    // The release archive: the binary (stripped, as a release ships it) at the top, as the
    // manifest's `files` say; plain tar entries (krew cannot unpack GNU sparse ones).
    let archive = dir.path().join("kubectl-flowstop-linux-amd64.tar.gz");
    let staged = dir.path().join("kubectl-flowstop");
    let ok = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
    ok(Command::new("strip")
        .arg("-o")
        .arg(&staged)
        .arg(env!("CARGO_BIN_EXE_kubectl-flowstop")));
    ok(Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .arg("kubectl-flowstop"));
    let sha = format!("{:x}", Sha256::digest(std::fs::read(&archive).unwrap()));
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/krew/flowstop.yaml"),
    )
    .unwrap();
    let manifest = dir.path().join("flowstop.yaml");
    std::fs::write(
        &manifest,
        template
            .replace(
                "${ARCHIVE_URL}",
                "https://example.invalid/kubectl-flowstop-linux-amd64.tar.gz",
            )
            .replace("${ARCHIVE_SHA256}", &sha),
    )
    .unwrap();
    let root = dir.path().join("krew-root");
    let out = Command::new(krew())
        .arg("install")
        .arg(format!("--manifest={}", manifest.display()))
        .arg(format!("--archive={}", archive.display()))
        .env("KREW_ROOT", &root)
        .env("HOME", dir.path())
        .env("KREW_NO_UPGRADE_CHECK", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "krew install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // kubectl finds it on PATH through krew's bin directory only.
    let kubectl = testkit::cluster::bin_dir().join("kubectl");
    let path = format!("{}:/usr/bin:/bin", root.join("bin").display());
    let out = Command::new(&kubectl)
        .args(["flowstop", "--help"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{help}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(help.contains("Usage: kubectl flowstop"), "{help}");
    assert!(help.contains("Exit codes:"), "{help}");
    let out = Command::new(&kubectl)
        .args(["plugin", "list"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kubectl-flowstop"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A wrong checksum is refused: krew really checks the archive against the manifest.
    std::fs::write(
        &manifest,
        template
            .replace("${ARCHIVE_URL}", "https://example.invalid/a.tar.gz")
            .replace("${ARCHIVE_SHA256}", &"0".repeat(64)),
    )
    .unwrap();
    let out = Command::new(krew())
        .arg("install")
        .arg(format!("--manifest={}", manifest.display()))
        .arg(format!("--archive={}", archive.display()))
        .env("KREW_ROOT", dir.path().join("other-root"))
        .env("HOME", dir.path())
        .env("KREW_NO_UPGRADE_CHECK", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a wrong sha256 was accepted");
}
