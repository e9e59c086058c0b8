//! The operator as users run it: two Pods from the OCI image (scripts/image) on a real
//! node (kubelet, containerd, runc, CNI bridge, kube-proxy; testkit::node), installed with
//! `kubectl apply -f crds/` and `kubectl apply -k tests/node` (deploy/ with the endpoint
//! and RRSA a user would set, see that file), driven only with kubectl. The emulator
//! listens inside the node's network namespace.
//!
//! One test, in order, because the scenarios share one node and one Deployment and some
//! of them kill its Pods.
#![forbid(unsafe_code)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::cloud::{AK, Cloud, SK};
use testkit::fixtures::{self, ExecutionStop};
use testkit::node::{NODE_IP, Node};

const SYSTEM: &str = "flowstop-system";
const FLOW: &str = "nightly";
/// The Deployment's lease (the operator's default).
const LEASE_SECONDS: u64 = 15;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Polls `f` every 100 ms until it returns Some, for at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn json(node: &Node, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    serde_json::from_str(&node.kubectl_ok(&args, None)).expect("kubectl prints JSON")
}

/// The operator's Pods: (name, ready, containerd container id, uid), not being deleted.
fn operator_pods(node: &Node) -> Vec<(String, bool, String, String)> {
    let list = json(
        node,
        &[
            "get",
            "pods",
            "-n",
            SYSTEM,
            "-l",
            "app.kubernetes.io/name=flowstop",
        ],
    );
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let status = &p["status"]["containerStatuses"][0];
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                status["ready"] == true,
                status["containerID"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("containerd://")
                    .to_string(),
                p["metadata"]["uid"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn lease_holder(node: &Node) -> Option<String> {
    let out = node.kubectl(
        &[
            "get",
            "lease",
            "flowstop",
            "-n",
            SYSTEM,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        None,
    );
    let holder = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !holder.is_empty()).then_some(holder)
}

/// Phase of every ExecutionStop in `ns`.
fn phases(node: &Node, ns: &str) -> Vec<String> {
    json(node, &["get", "executionstops", "-n", ns])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"]["phase"].as_str().unwrap_or("").to_string())
        .collect()
}

fn wait_all_stopped(node: &Node, ns: &str, n: usize, limit: Duration) {
    wait_for(
        &format!("{n} ExecutionStops Stopped in {ns}"),
        limit,
        || {
            let p = phases(node, ns);
            (p.len() == n && p.iter().all(|p| p == "Stopped")).then_some(())
        },
    );
}

/// The executions of `prefix` each stopped by exactly one StopExecution.
async fn assert_stopped_once(cloud: &Cloud, prefix: &str, n: usize) {
    let mine: Vec<Value> = cloud
        .executions()
        .await
        .into_iter()
        .filter(|e| e["name"].as_str().is_some_and(|x| x.starts_with(prefix)))
        .collect();
    assert_eq!(mine.len(), n);
    for e in mine {
        assert_eq!(e["status"], "Stopped", "{e}");
        assert_eq!(e["stopCalls"], 1, "exactly one StopExecution: {e}");
    }
}

/// A namespace with `keys` credential Secrets (k1..) and `n` ExecutionStops spread over
/// them, for executions `<prefix>0..` already running; applied in one `kubectl apply`.
async fn burst(node: &Node, cloud: &Cloud, ns: &str, prefix: &str, n: usize, keys: usize) {
    node.kubectl_ok(&["create", "namespace", ns], None);
    let mut items = vec![];
    for k in 1..=keys {
        items.push(fixtures::secret(ns, &format!("k{k}"), &format!("k{k}"), SK));
    }
    for i in 0..n {
        let exec = format!("{prefix}{i}");
        cloud.start(FLOW, &exec, None).await;
        let key = format!("k{}", i % keys + 1);
        items.push(
            ExecutionStop::new(ns, &exec, FLOW, &exec)
                .secret(&key)
                .yaml(),
        );
    }
    node.kubectl_ok(&["apply", "-f", "-"], Some(&fixtures::list(items)));
}

fn stop_calls(cloud: &Cloud) -> u64 {
    cloud.calls("StopExecution")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_as_pods_on_a_real_node() {
    let image = PathBuf::from(
        std::env::var("FLOWSTOP_IMAGE_ARCHIVE")
            .expect("FLOWSTOP_IMAGE_ARCHIVE is not set: run scripts/test, which builds the image"),
    );
    let scratch = tempfile::tempdir().unwrap();
    let busybox = scratch.path().join("busybox.oci.tar");
    testkit::node::image(
        Path::new("/bin/busybox"),
        &busybox,
        "flowstop.test/busybox:1",
        "busybox",
    )
    .expect("busybox (Debian's busybox-static, scripts/node-deps) makes an image");
    // Where the time goes (scripts/test runs this beside other work).
    let t0 = Instant::now();
    let done = |what: &str| eprintln!("[{:6.1} s] {what}", t0.elapsed().as_secs_f64());
    let node = Node::start(&[&image, &busybox]).expect("the node starts");
    done("node ready");

    // The emulator, inside the node's namespace: 100 accounts, no service quota (the
    // operator's own limiter still paces each key at the service's rate).
    let api = node
        .listen(format!("{NODE_IP}:9000").parse().unwrap())
        .unwrap();
    let admin = node
        .listen(format!("{NODE_IP}:9001").parse().unwrap())
        .unwrap();
    let mut config = fnf_emulator::Config {
        no_quota: true,
        ..Default::default()
    };
    config.access_keys.push((AK.into(), SK.into()));
    for k in 1..=100 {
        config.access_keys.push((format!("k{k}"), SK.into()));
    }
    let emu = fnf_emulator::serve(
        config,
        tokio::net::TcpListener::from_std(api).unwrap(),
        tokio::net::TcpListener::from_std(admin).unwrap(),
    )
    .unwrap();
    let cloud = Cloud::on(emu);
    cloud.flow(FLOW).await;

    install(&node);
    let leader = replicas_ready_one_leader(&node, &cloud).await;
    done("installed, replicas ready");
    runs_locked_down(&node, &leader);
    rrsa(&node, &cloud).await;
    metrics_through_the_service(&node);
    done("locked down, RRSA, metrics");
    forced_leader_deletion(&node, &cloud).await;
    done("forced deletion");
    rolling_restart(&node, &cloud).await;
    done("rollout restart");
    memory_at_rest(&node, &cloud).await;
    done("memory at rest");
    chart_on_the_node(&node, &cloud).await;
    done("chart");

    // Closing the launcher's stdin takes everything down: nothing of the node remains.
    let (netns, dir) = (node.netns.clone(), node.dir.clone());
    drop(node);
    assert!(!netns.exists(), "{} removed", netns.display());
    assert!(!dir.exists(), "{} removed", dir.display());
    for controller in ["memory", "cpu", "pids"] {
        let kubepods = PathBuf::from(format!("/sys/fs/cgroup/{controller}/kubepods"));
        assert!(!kubepods.exists(), "{} removed", kubepods.display());
    }
}

fn install(node: &Node) {
    node.kubectl_ok(&["apply", "-f", repo("crds").to_str().unwrap()], None);
    node.kubectl_ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ],
        None,
    );
    node.kubectl_ok(&["apply", "-k", repo("tests/node").to_str().unwrap()], None);
}

/// Waits until the Deployment's rollout is complete.
fn rolled_out(node: &Node) {
    node.kubectl_ok(
        &[
            "rollout",
            "status",
            "deployment/flowstop",
            "-n",
            SYSTEM,
            "--timeout=180s",
        ],
        None,
    );
}

/// Scenario 1: Both replicas Ready, exactly one holds the Lease, an ExecutionStop is Stopped.
/// Returns the leader's Pod name.
async fn replicas_ready_one_leader(node: &Node, cloud: &Cloud) -> String {
    rolled_out(node);
    let pods = wait_for("two Ready operator Pods", Duration::from_secs(60), || {
        let pods = operator_pods(node);
        (pods.len() == 2 && pods.iter().all(|p| p.1)).then_some(pods)
    });
    let holder = wait_for("a Lease holder", Duration::from_secs(30), || {
        lease_holder(node)
    });
    let names: BTreeSet<&str> = pods.iter().map(|p| p.0.as_str()).collect();
    assert!(
        names.contains(holder.as_str()),
        "{holder} is one of {names:?}"
    );

    node.kubectl_ok(&["create", "namespace", "one"], None);
    cloud.start(FLOW, "one-0", None).await;
    let stop = ExecutionStop::new("one", "one-0", FLOW, "one-0").secret("k1");
    node.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&fixtures::list([
            fixtures::secret("one", "k1", "k1", SK),
            stop.yaml(),
        ])),
    );
    wait_all_stopped(node, "one", 1, Duration::from_secs(60));
    assert_stopped_once(cloud, "one-", 1).await;
    holder
}

/// Scenario 5: The leader's container, as the runtime runs it: uid 65532, no capabilities, no
/// privilege escalation, a read-only root filesystem; and it has just worked.
fn runs_locked_down(node: &Node, leader: &str) {
    let pods = operator_pods(node);
    let (_, _, container, _) = pods.iter().find(|p| p.0 == leader).unwrap();
    let tasks = node.ctr(&["tasks", "ls"]);
    let pid: u32 = tasks
        .lines()
        .find(|l| l.starts_with(container.as_str()))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("{container} in ctr tasks ls:\n{tasks}"))
        .parse()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(field("Uid"), "65532 65532 65532 65532");
    assert_eq!(field("Gid"), "65532 65532 65532 65532");
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(field(caps), "0000000000000000", "{caps}");
    }
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2", "RuntimeDefault seccomp filter");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .expect("a root mount");
    let options = root.split(' ').nth(5).unwrap();
    assert!(
        options.split(',').any(|o| o == "ro"),
        "root filesystem read-only: {root}"
    );
    // Nothing else is writable by it either: every other mount is read-only, or (the
    // kubelet's /etc/hosts, /etc/hostname, /etc/resolv.conf) a file of root's that others
    // may not write, or the termination log, which stays empty.
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (point, opts) = (fields[4], fields[5]);
        let fs = fields[fields.iter().position(|f| *f == "-").unwrap() + 1];
        if matches!(
            fs,
            "proc" | "sysfs" | "cgroup" | "cgroup2" | "mqueue" | "devpts"
        ) || (point.starts_with("/dev") && point != "/dev/termination-log")
            || point.starts_with("/proc")
            || point.starts_with("/sys")
        {
            continue;
        }
        if opts.split(',').any(|o| o == "ro") {
            continue;
        }
        let meta = std::fs::metadata(format!("/proc/{pid}/root{point}")).unwrap();
        if point == "/dev/termination-log" {
            // Kubernetes' one writable file for a container's last words: still empty.
            assert_eq!(meta.len(), 0, "nothing written to {point}");
            continue;
        }
        assert!(
            meta.uid() == 0 && meta.mode() & 0o002 == 0 && !meta.is_dir(),
            "{point} ({fs}) is writable by uid 65532: {line}"
        );
    }
    eprintln!("locked down: pid {pid} uid 65532, CapEff 0, NoNewPrivs, seccomp, / ro");
}

/// Scenario 6: RRSA as on ACK: the stop uses the operator's own credentials, which come from
/// exchanging the projected token for STS keys; the STS stand-in received that very
/// token, and the API server says it is the operator's, for audience sts.aliyuncs.com.
async fn rrsa(node: &Node, cloud: &Cloud) {
    node.kubectl_ok(&["create", "namespace", "rrsa"], None);
    cloud.start(FLOW, "rrsa-0", None).await;
    let stop = ExecutionStop::new("rrsa", "rrsa-0", FLOW, "rrsa-0");
    node.kubectl_ok(&["apply", "-f", "-"], Some(&stop.yaml()));
    wait_all_stopped(node, "rrsa", 1, Duration::from_secs(60));
    assert_stopped_once(cloud, "rrsa-", 1).await;
    let tokens = cloud.emu.emulator.lock().seen_oidc_tokens.clone();
    let token = tokens.last().expect("the STS stand-in received a token");
    let review = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": ["sts.aliyuncs.com"]},
    });
    let out: Value = serde_json::from_str(&node.kubectl_ok(
        &["create", "-f", "-", "-o", "json"],
        Some(&review.to_string()),
    ))
    .unwrap();
    let status = &out["status"];
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["user"]["username"],
        "system:serviceaccount:flowstop-system:flowstop"
    );
    assert_eq!(status["audiences"], serde_json::json!(["sts.aliyuncs.com"]));
    let pod = status["user"]["extra"]["authentication.kubernetes.io/pod-name"][0]
        .as_str()
        .expect("a token bound to a Pod");
    assert!(
        operator_pods(node).iter().any(|p| p.0 == pod),
        "bound to an operator Pod: {pod}"
    );
}

/// Scenario 4: /metrics through the flowstop-metrics Service, from a Pod in the namespace.
fn metrics_through_the_service(node: &Node) {
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "scrape", "namespace": SYSTEM},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532},
            "containers": [{
                "name": "scrape",
                "image": "flowstop.test/busybox:1",
                "imagePullPolicy": "Never",
                // The Service's address from the variables the kubelet sets (no DNS here).
                "command": ["/busybox", "sh", "-c",
                    "/busybox wget -qO- http://$FLOWSTOP_METRICS_SERVICE_HOST:$FLOWSTOP_METRICS_SERVICE_PORT/metrics"],
            }],
        },
    });
    node.kubectl_ok(&["apply", "-f", "-"], Some(&pod.to_string()));
    node.kubectl_ok(
        &[
            "wait",
            "-n",
            SYSTEM,
            "pod/scrape",
            "--for=jsonpath={.status.phase}=Succeeded",
            "--timeout=60s",
        ],
        None,
    );
    let body = node.kubectl_ok(&["logs", "-n", SYSTEM, "scrape"], None);
    assert!(
        body.contains("# TYPE flowstop_status_writes counter"),
        "the operator's metrics:\n{body}"
    );
    node.kubectl_ok(&["delete", "-n", SYSTEM, "pod/scrape"], None);
}

/// Waits for a new holder other than `old`; the time it took from `since`.
fn handover(node: &Node, old: &str, since: Instant, limit: Duration) -> (String, Duration) {
    let new = wait_for("a new Lease holder", limit, || {
        lease_holder(node).filter(|h| h != old)
    });
    (new, since.elapsed())
}

/// Scenario 2: The leader Pod force-deleted during a burst of 100: the standby takes over within
/// the lease; every execution stopped by exactly one call; every object final.
async fn forced_leader_deletion(node: &Node, cloud: &Cloud) {
    let before = stop_calls(cloud);
    let leader = lease_holder(node).expect("a leader");
    // 2 keys: 20 stops at once (burst 10 each), then 4/s: the other 75 after the 25th take
    // about 19 s, so the kill lands mid-burst even on a loaded machine.
    burst(node, cloud, "kill", "kill-", 100, 2).await;
    wait_for("25 stops of the burst", Duration::from_secs(60), || {
        (stop_calls(cloud) >= before + 25).then_some(())
    });
    node.kubectl_ok(
        &[
            "delete",
            "pod",
            "-n",
            SYSTEM,
            &leader,
            "--grace-period=0",
            "--force",
        ],
        None,
    );
    let killed = Instant::now();
    let in_flight = stop_calls(cloud) - before;
    assert!(in_flight < 100, "the kill landed mid-burst ({in_flight})");
    let (new, took) = handover(node, &leader, killed, Duration::from_secs(60));
    eprintln!(
        "forced deletion of {leader}: {new} leads after {took:?} ({in_flight}/100 stopped then)"
    );
    // The standby polls every lease/3 and may take the lease once it expired.
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS + LEASE_SECONDS / 3 + 2),
        "takeover within the lease: {took:?}"
    );
    wait_all_stopped(node, "kill", 100, Duration::from_secs(120));
    assert_stopped_once(cloud, "kill-", 100).await;
    wait_for("two Ready replicas again", Duration::from_secs(120), || {
        let pods = operator_pods(node);
        (pods.len() == 2 && pods.iter().all(|p| p.1)).then_some(())
    });
}

/// Scenario 3: `kubectl rollout restart` during a burst: the same guarantees, and the leader
/// releases the Lease on SIGTERM, so the next one leads well before it would expire.
async fn rolling_restart(node: &Node, cloud: &Cloud) {
    let before = stop_calls(cloud);
    let leader = lease_holder(node).expect("a leader");
    burst(node, cloud, "roll", "roll-", 100, 2).await;
    wait_for("25 stops of the burst", Duration::from_secs(60), || {
        (stop_calls(cloud) >= before + 25).then_some(())
    });
    node.kubectl_ok(
        &["rollout", "restart", "deployment/flowstop", "-n", SYSTEM],
        None,
    );
    // The handover starts when the leader is told to stop: its Pod is being deleted.
    wait_for(
        "the leader's Pod terminating",
        Duration::from_secs(120),
        || {
            let pod = json(node, &["get", "pod", "-n", SYSTEM, &leader]);
            (!pod["metadata"]["deletionTimestamp"].is_null()).then_some(())
        },
    );
    let terminating = Instant::now();
    let in_flight = stop_calls(cloud) - before;
    assert!(
        in_flight < 100,
        "the restart landed mid-burst ({in_flight})"
    );
    let (new, took) = handover(node, &leader, terminating, Duration::from_secs(60));
    eprintln!(
        "rollout restart: {leader} released, {new} leads after {took:?} ({in_flight}/100 stopped then)"
    );
    // Had it not been released, the lease would run out at the earliest a lease minus
    // one renewal period (10 s) after SIGTERM, when the leader stops renewing.
    assert!(
        took < Duration::from_secs(LEASE_SECONDS - LEASE_SECONDS / 3),
        "released on SIGTERM, not left to expire: {took:?}"
    );
    rolled_out(node);
    wait_all_stopped(node, "roll", 100, Duration::from_secs(120));
    assert_stopped_once(cloud, "roll-", 100).await;
}

/// Scenario 7: The leader Pod's memory cgroup at rest, with 1,000 finished objects: ≤ 64 MiB.
async fn memory_at_rest(node: &Node, cloud: &Cloud) {
    // 100 keys of burst 10: the operator's limiter lets all 1,000 go at once.
    burst(node, cloud, "many", "many-", 1000, 100).await;
    wait_all_stopped(node, "many", 1000, Duration::from_secs(300));
    let leader = wait_for("a leader", Duration::from_secs(30), || lease_holder(node));
    let (_, _, _, uid) = operator_pods(node)
        .into_iter()
        .find(|p| p.0 == leader)
        .expect("the leader's Pod");
    // cgroup v1, cgroupfs driver: kubepods/<qos>/pod<uid>.
    let cgroup = ["burstable", "besteffort", ""]
        .iter()
        .map(|q| PathBuf::from(format!("/sys/fs/cgroup/memory/kubepods/{q}/pod{uid}")))
        .find(|p| p.exists())
        .expect("the leader Pod's memory cgroup");
    let usage: u64 = std::fs::read_to_string(cgroup.join("memory.usage_in_bytes"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(cgroup.join("memory.stat")).unwrap();
    let rss: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("total_rss "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    eprintln!(
        "leader {leader} at rest with 1,000 + 204 final objects: cgroup memory {:.1} MiB (rss {:.1} MiB)",
        usage as f64 / 1048576.0,
        rss as f64 / 1048576.0
    );
    assert!(usage <= 64 << 20, "{usage} bytes > 64 MiB");
    assert_stopped_once(cloud, "many-", 1000).await;
}

/// The Helm chart on the same node (what deploy/ was, through values): its Pods become
/// Ready and stop an execution with RRSA. deploy/'s install is removed first.
async fn chart_on_the_node(node: &Node, cloud: &Cloud) {
    node.kubectl_ok(
        &[
            "delete",
            "-k",
            repo("tests/node").to_str().unwrap(),
            "--wait",
            "--timeout=180s",
        ],
        None,
    );
    let out = std::process::Command::new(testkit::tools::tool("helm"))
        .args(["install", "flowstop"])
        .arg(repo("charts/flowstop"))
        .arg("--kubeconfig")
        .arg(&node.kubeconfig)
        .args(["-n", "flowstop-helm", "--create-namespace"])
        // The CRDs stay from `kubectl apply -f crds/`; the same endpoint and RRSA as
        // tests/node, as values.
        .args(["--set", "crds.enabled=false", "--set", "fnf.regionId="])
        .args(["--set", &format!("fnf.endpoint=http://{NODE_IP}:9000")])
        .args([
            "--set-json",
            r#"extraEnv=[{"name":"FLOWSTOP_ALLOW_INSECURE_HTTP","value":"true"}]"#,
        ])
        .args(["--set", "credentials.rrsa.enabled=true"])
        .args([
            "--set",
            "credentials.rrsa.roleArn=acs:ram::123:role/flowstop",
        ])
        .args([
            "--set",
            "credentials.rrsa.oidcProviderArn=acs:ram::123:oidc-provider/ack-rrsa-c1",
        ])
        .args([
            "--set",
            &format!("credentials.rrsa.stsEndpoint=http://{NODE_IP}:9000"),
        ])
        .args(["--wait", "--timeout=180s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pods = json(
        node,
        &[
            "get",
            "pods",
            "-n",
            "flowstop-helm",
            "-l",
            "app.kubernetes.io/name=flowstop",
        ],
    );
    let ready = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"]["containerStatuses"][0]["ready"] == true)
        .count();
    assert_eq!(ready, 2, "both replicas of the chart Ready");
    let tokens_before = cloud.emu.emulator.lock().seen_oidc_tokens.len();
    node.kubectl_ok(&["create", "namespace", "helm"], None);
    cloud.start(FLOW, "helm-0", None).await;
    let stop = ExecutionStop::new("helm", "helm-0", FLOW, "helm-0");
    node.kubectl_ok(&["apply", "-f", "-"], Some(&stop.yaml()));
    wait_all_stopped(node, "helm", 1, Duration::from_secs(60));
    assert_stopped_once(cloud, "helm-", 1).await;
    assert!(
        cloud.emu.emulator.lock().seen_oidc_tokens.len() > tokens_before,
        "the chart's operator exchanged its own projected token"
    );
}
