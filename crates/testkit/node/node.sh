#!/usr/bin/env bash
# A single-node Kubernetes cluster from upstream parts, in a network namespace of its own:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy (iptables) and
# kubelet built from Go modules (control-plane/build.sh), Debian's containerd, runc and CNI
# bridge plugin. Usage: node.sh IMAGE.oci.tar...  (imported into the node; the sandbox
# image is built here).
#
# Prints `kubeconfig PATH`, `netns PATH`, `dir PATH`, then `ready`; tears everything
# down when its standard input closes, or on SIGTERM/SIGINT. After a SIGKILL, the next
# run sweeps what the dead one left (namespace, processes, mounts, cgroups).
#
# Addresses: the node is 198.51.100.10 (documentation range) on a veth whose other end,
# 198.51.100.1, is on the host so tests reach the API server; there is no route out. Pods get
# 10.244.0.0/24 from the bridge plugin; Services 10.96.0.0/24.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
NODE_IP=198.51.100.10
HOST_IP=198.51.100.1
NODE=node0
SANDBOX_IMAGE=registry.k8s.io/pause:3.10
state=/run/flowstop-node

log() { echo "node: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (network namespace, containerd, kubelet)"
for b in containerd containerd-shim-runc-v2 runc ctr iptables ip nsenter openssl; do
  command -v "$b" >/dev/null || die "$b is missing: run scripts/node-deps (apt: containerd runc containernetworking-plugins iptables)"
done
[ -x /usr/lib/cni/bridge ] || die "/usr/lib/cni/bridge is missing: apt-get install containernetworking-plugins"
cp_bin=${FLOWSTOP_CONTROL_PLANE_BIN:-$("$here/../control-plane/build.sh")}
node_bin=${FLOWSTOP_NODE_BIN:-$("$here/../control-plane/build.sh" node)}

# Everything one node made, given its namespace name and directory. Safe to run twice.
teardown() {
  local name=$1 dir=$2 pid
  # kubelet first, so it does not restart what is killed next.
  for pid in $(cat "$dir"/pids 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
  # Containers and their shims (the shims re-parent to init, so find them by socket).
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $dir/run/containerd.sock" 2>/dev/null || true
  for cg in /sys/fs/cgroup/*/kubepods; do
    [ -d "$cg" ] || continue
    find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  done
  # Up to 10 s for the daemons to exit on SIGTERM, then SIGKILL.
  local left deadline=$((SECONDS + 10))
  while :; do
    left=""
    for pid in $(cat "$dir"/pids 2>/dev/null); do kill -0 "$pid" 2>/dev/null && left="$left $pid"; done
    [ -n "$left" ] && [ $SECONDS -lt $deadline ] || break
    sleep 0.1
  done
  for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
  # Mounts under the node's directory (container rootfs, Pod volumes), deepest first.
  awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  # Pod network namespaces that containerd made (only this node runs a CRI here).
  for ns in /run/netns/cni-*; do
    [ -e "$ns" ] || continue
    umount -l "$ns" 2>/dev/null || true; rm -f "$ns"
  done
  for cg in /sys/fs/cgroup/*/kubepods; do
    [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # The host's end of the veth: with it goes the node's end, even if some dying process
  # still keeps the namespace alive.
  ip link del "fsn${name##*-}" 2>/dev/null || true
  ip netns del "$name" 2>/dev/null || true
  if [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ]; then
    umount /run/netns 2>/dev/null || true; rmdir /run/netns 2>/dev/null || true
  fi
  rm -rf "$dir" "$state/$name"
  rmdir /run/containerd/s /run/containerd 2>/dev/null || true # containerd 1.6 always makes these
}

mkdir -p "$state"
exec 9>"$state/lock"
flock 9 # one node at a time: kubelet's cgroups and the CNI netns are machine-wide
# Sweep what a node killed with SIGKILL left behind.
for f in "$state"/flowstop-node-*; do
  [ -e "$f" ] || continue
  old=$(basename "$f"); oldpid=${old##*-}
  if ! kill -0 "$oldpid" 2>/dev/null; then
    log "removing what $old left"; teardown "$old" "$(cat "$f")"
  fi
done

name=flowstop-node-$$
dir=$(mktemp -d /tmp/flowstop-node.XXXXXX)
echo "$dir" >"$state/$name"
trap 'teardown "$name" "$dir"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
: >"$dir/pids"
ns=/run/netns/$name
in_ns() { nsenter --net="$ns" "$@"; }
# Starts a daemon in the node's namespace, own session, log in $dir/NAME.log.
start() {
  local label=$1; shift
  # 9>&-: the daemons must not hold the lock, or a SIGKILLed launcher keeps it held.
  setsid nsenter --net="$ns" "$@" </dev/null >"$dir/$label.log" 2>&1 9>&- &
  echo $! >>"$dir/pids"
  disown $!
}
wait_for() { # what, seconds, command...
  local what=$1 limit=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { log "$what not ready after ${limit}s"; tail -n 30 "$dir"/*.log >&2; exit 1; }
    sleep 0.2
  done
}

# --- network ---------------------------------------------------------------------------
# Not 192.0.2.0/24: machines like this one use it for their own uplink.
if ip -4 route show | grep -q "^198\.51\.100\."; then
  die "the host already routes 198.51.100.0/24; the node needs that range to itself"
fi
ip netns add "$name"
host_if=fsn$$
ip link add "$host_if" type veth peer name node0 netns "$name"
ip addr add "$HOST_IP/24" dev "$host_if"
ip link set "$host_if" up
in_ns ip link set lo up
in_ns ip addr add "$NODE_IP/24" dev node0
in_ns ip link set node0 up
in_ns sysctl -qw net.ipv4.ip_forward=1
in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true

# --- certificates ----------------------------------------------------------------------
pki=$dir/pki; mkdir -p "$pki"
(
  cd "$pki"
  ssl() { openssl "$@" 2>/dev/null; }
  ssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
    -days 7 -subj /CN=flowstop-node-ca
  leaf() { # name subject extensions
    ssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"
    ssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    printf '%s\n' "$3" >"$1.ext"
    ssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 -sha256 \
      -extfile "$1.ext" -out "$1.crt"
  }
  leaf apiserver /CN=kube-apiserver "subjectAltName=IP:$NODE_IP,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
  leaf admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth"
  leaf kubelet "/O=system:nodes/CN=system:node:$NODE" "extendedKeyUsage=clientAuth"
  ssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
  ssl pkey -in sa.key -pubout -out sa.pub
)
kubeconfig() { # user cert name, server, out
  cat >"$3" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: node
  cluster: {server: "$2", certificate-authority-data: $(base64 -w0 "$pki/ca.crt")}
users:
- name: $1
  user: {client-certificate-data: $(base64 -w0 "$pki/$1.crt"), client-key-data: $(base64 -w0 "$pki/$1.key")}
contexts:
- name: node
  context: {cluster: node, user: $1}
current-context: node
EOF
}
kubeconfig admin "https://$NODE_IP:6443" "$dir/admin.kubeconfig"
kubeconfig kubelet "https://$NODE_IP:6443" "$dir/kubelet.kubeconfig"

# --- control plane ---------------------------------------------------------------------
start etcd "$cp_bin/etcd" --name default --data-dir "$dir/etcd" \
  --listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
  --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
  --initial-cluster=default=http://127.0.0.1:2380 --unsafe-no-fsync --log-level warn
start apiserver "$cp_bin/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=0.0.0.0 --advertise-address=$NODE_IP --secure-port=6443 \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" --authorization-mode=Node,RBAC \
  --kubelet-client-certificate="$pki/admin.crt" --kubelet-client-key="$pki/admin.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range=10.96.0.0/24 --allow-privileged=true --profiling=false \
  --kubelet-preferred-address-types=InternalIP \
  --cert-dir="$dir/apiserver-certs" --v=1
kc() { "$cp_bin/kubectl" --kubeconfig "$dir/admin.kubeconfig" "$@"; }
wait_for kube-apiserver 90 kc get --raw /readyz
start controller-manager "$cp_bin/kube-controller-manager" --kubeconfig="$dir/admin.kubeconfig" \
  --leader-elect=false --secure-port=0 --root-ca-file="$pki/ca.crt" \
  --service-account-private-key-file="$pki/sa.key" --use-service-account-credentials=false \
  --cluster-cidr=10.244.0.0/16 --allocate-node-cidrs=false --v=1
start scheduler "$node_bin/kube-scheduler" --kubeconfig="$dir/admin.kubeconfig" \
  --leader-elect=false --secure-port=0 --v=1

# --- containerd and images -------------------------------------------------------------
mkdir -p "$dir/cni-conf" "$dir/run"
cat >"$dir/cni-conf/10-bridge.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "flowstop-node", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$dir/cni-ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
cat >"$dir/containerd.toml" <<EOF
version = 2
root = "$dir/containerd"
state = "$dir/containerd-state"
[grpc]
  address = "$dir/run/containerd.sock"
[ttrpc]
  address = "$dir/run/containerd.sock.ttrpc"
[debug]
  address = "$dir/run/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  # The sandbox lacks CAP_SYS_RESOURCE: a negative oom_score_adj is refused (runc says
  # "can't get final child's PID from pipe: EOF"). Clamp to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$dir/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni-conf"
EOF
# nsenter --net, never `ip netns exec`: that remounts /sys and hides the cgroup mounts
# ("no cgroup mount found in mountinfo").
start containerd containerd --config "$dir/containerd.toml"
ctr() { command ctr --address "$dir/run/containerd.sock" -n k8s.io "$@"; }
wait_for containerd 30 ctr version
python3 "$here/../../../deploy/image/oci.py" "$node_bin/pause" "$dir/pause.oci.tar" "$SANDBOX_IMAGE" pause >/dev/null
for archive in "$dir/pause.oci.tar" "$@"; do
  ctr images import --all-platforms "$archive" >&2
done

# --- kubelet and kube-proxy ------------------------------------------------------------
: >"$dir/resolv.conf"
cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 (hybrid) and no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$dir/run/containerd.sock
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
# No CAP_SYS_RESOURCE here: nothing may ask for a negative oom_score_adj.
oomScoreAdj: 0
failSwapOn: false
resolvConf: $dir/resolv.conf
clusterDomain: cluster.local
podLogsDir: $dir/pod-logs
# A test node on a shared disk: never evict for the disk other work fills.
evictionHard: {memory.available: "100Mi", nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
start kubelet "$node_bin/kubelet" --config="$dir/kubelet.yaml" --kubeconfig="$dir/kubelet.kubeconfig" \
  --root-dir="$dir/kubelet" --cert-dir="$dir/kubelet-pki" --node-ip=$NODE_IP \
  --hostname-override=$NODE --v=1
cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $dir/admin.kubeconfig}
hostnameOverride: $NODE
clusterCIDR: 10.244.0.0/16
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Leave the conntrack sysctls alone (per-namespace values are fine as they are).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
start kube-proxy "$node_bin/kube-proxy" --config="$dir/kube-proxy.yaml" --v=1

wait_for "node $NODE Ready" 120 kc wait --for=condition=Ready "node/$NODE" --timeout=2s
wait_for "the default ServiceAccount" 60 kc get serviceaccount default -n default
echo "kubeconfig $dir/admin.kubeconfig"
echo "netns $ns"
echo "dir $dir"
echo "ready"
# Follow standard input; `wait` lets the TERM/INT traps run at once.
cat <&0 >/dev/null &
wait $! || true
