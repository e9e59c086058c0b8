//! The Go tools the tests judge with (helm, promtool, krew, kstatus and gopher-lua), each
//! built once from its pinned upstream module by `tools/build.sh` and cached outside the
//! clone.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The path of tool `name` (tools/NAME), built now if it is not cached yet. Other binaries
/// of the same tool directory sit beside it.
pub fn tool(name: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/build.sh");
    let out = Command::new(script)
        .arg(name)
        .output()
        .expect("tools/build.sh runs");
    assert!(
        out.status.success(),
        "building the {name} tool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().into()
}
