//! The OCI image archive made by scripts/image: its config runs the binary as a
//! non-root user, its digests hold, and the binary inside is static and runs.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;

fn archive() -> HashMap<String, Vec<u8>> {
    let path = std::env::var("FLOWSTOP_IMAGE_ARCHIVE")
        .expect("FLOWSTOP_IMAGE_ARCHIVE is not set: run scripts/test, which builds the image");
    let mut files = HashMap::new();
    let mut tar = tar::Archive::new(std::fs::File::open(path).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut data = vec![];
        entry.read_to_end(&mut data).unwrap();
        files.insert(name, data);
    }
    files
}

fn blob<'a>(files: &'a HashMap<String, Vec<u8>>, digest: &str) -> &'a [u8] {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let data = files
        .get(&format!("blobs/sha256/{hex}"))
        .unwrap_or_else(|| panic!("missing blob {digest}"));
    assert_eq!(
        format!("{:x}", Sha256::digest(data)),
        hex,
        "blob content matches its digest"
    );
    data
}

/// True when the ELF file has no PT_INTERP program header (no dynamic loader needed).
fn is_static_elf(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).all(|i| {
        u32::from_le_bytes(
            elf[phoff + i * size..phoff + i * size + 4]
                .try_into()
                .unwrap(),
        ) != 3
    })
}

#[test]
fn image_archive_is_a_runnable_non_root_oci_image() {
    let files = archive();
    assert!(files["oci-layout"].starts_with(br#"{"imageLayoutVersion":"1.0.0"}"#));
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let m = &index["manifests"][0];
    assert_eq!(
        m["annotations"]["io.containerd.image.name"],
        format!("docker.io/library/flowstop:{}", env!("CARGO_PKG_VERSION"))
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(blob(&files, m["digest"].as_str().unwrap())).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(blob(&files, manifest["config"]["digest"].as_str().unwrap()))
            .unwrap();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/flowstop"])
    );
    let user = config["config"]["User"].as_str().unwrap();
    assert!(
        !user.is_empty() && !user.starts_with("0") && !user.starts_with("root"),
        "non-root user: {user}"
    );

    let layer_gz = blob(&files, manifest["layers"][0]["digest"].as_str().unwrap());
    let mut layer = vec![];
    flate2::read::GzDecoder::new(layer_gz)
        .read_to_end(&mut layer)
        .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{:x}", Sha256::digest(&layer))
    );
    let mut binary = None;
    for entry in tar::Archive::new(&layer[..]).entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("flowstop") {
            assert_eq!(entry.header().mode().unwrap() & 0o111, 0o111, "executable");
            let mut data = vec![];
            entry.read_to_end(&mut data).unwrap();
            binary = Some(data);
        }
    }
    let binary = binary.expect("/flowstop in the layer");
    assert!(
        is_static_elf(&binary),
        "the binary must not need a loader in a scratch image"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flowstop");
    std::fs::write(&path, &binary).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let version = std::process::Command::new(&path)
        .arg("--version")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("flowstop {}", env!("CARGO_PKG_VERSION"))
    );
    let crd = std::process::Command::new(&path)
        .arg("crd")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(crd.stdout).unwrap(),
        format!(
            "{}---\n{}---\n{}",
            include_str!("../crds/executionstop.yaml"),
            include_str!("../crds/executionstopset.yaml"),
            include_str!("../crds/executionstoppolicy.yaml")
        )
    );
}
