"""Writes an OCI image archive (an OCI image layout in a tar) around one static binary,
without a container engine. Deterministic: fixed times and owners, sorted entries.

Usage: oci.py BINARY OUT.tar NAME:TAG [ENTRY [CMD...]]
  ENTRY  the binary's name in the image, /ENTRY (default flowstop, with CMD `run`)

NAME is recorded as containerd and Kubernetes normalize it (`flowstop` becomes
`docker.io/library/flowstop`), so `ctr -n k8s.io images import` makes the image a Pod's
`image: flowstop:TAG` finds without a registry.
"""
import gzip
import hashlib
import io
import json
import sys
import tarfile

binary, out, ref = sys.argv[1:4]
entry = sys.argv[4] if len(sys.argv) > 4 else "flowstop"
cmd = sys.argv[5:] if len(sys.argv) > 4 else ["run"]
name, tag = ref.rsplit(":", 1)
first = name.split("/")[0]
if "/" not in name:
    name = "docker.io/library/" + name
elif "." not in first and ":" not in first and first != "localhost":
    name = "docker.io/" + name
UID = 65532


def add(tar, path, data, mode):
    info = tarfile.TarInfo(path)
    info.size, info.mode, info.mtime = len(data), mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar, path):
    info = tarfile.TarInfo(path)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(info)


layer_tar = io.BytesIO()
with tarfile.open(fileobj=layer_tar, mode="w", format=tarfile.PAX_FORMAT) as t:
    add_dir(t, "etc")
    add(t, "etc/group", b"root:x:0:\nnonroot:x:%d:\n" % UID, 0o644)
    add(t, "etc/passwd", b"root:x:0:0:root:/:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/:/sbin/nologin\n" % (UID, UID), 0o644)
    with open(binary, "rb") as f:
        add(t, entry, f.read(), 0o755)
layer = layer_tar.getvalue()
diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
gz = io.BytesIO()
with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
    g.write(layer)
layer_gz = gz.getvalue()


def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


config = json.dumps({
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "Entrypoint": ["/" + entry],
        "Cmd": cmd,
        "User": "%d:%d" % (UID, UID),
        "WorkingDir": "/",
        "Labels": {"org.opencontainers.image.title": entry,
                   "org.opencontainers.image.version": tag},
    },
    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    "history": [{"created_by": "deploy/image/oci.py"}],
}, sort_keys=True).encode()
config_digest, _ = blob(config)
layer_digest, _ = blob(layer_gz)
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": len(layer_gz)}],
}, sort_keys=True).encode()
manifest_digest, _ = blob(manifest)
index = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest,
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag, "io.containerd.image.name": "%s:%s" % (name, tag)},
    }],
}, sort_keys=True).encode()

with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as t:
    add(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644)
    add(t, "index.json", index, 0o644)
    add_dir(t, "blobs")
    add_dir(t, "blobs/sha256")
    for digest, data in sorted([(config_digest, config), (layer_digest, layer_gz), (manifest_digest, manifest)]):
        add(t, "blobs/sha256/" + digest.split(":")[1], data, 0o644)
print(out)
