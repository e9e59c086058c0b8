//! `kubectl flowstop` end to end: found by kubectl's plugin discovery, against the real
//! control plane with the operator running as its ServiceAccount and the emulator behind
//! it. Each exit code comes from a real outcome.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use testkit::cloud::{AK, SK};
use testkit::fixtures::secret;
use testkit::operator::{eventually, installed, setup, uid};

fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_kubectl-flowstop"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `kubectl flowstop ARGS --kubeconfig ADMIN -n NS`, through kubectl, stdin not a terminal.
async fn kubectl_flowstop(ns: &str, args: &[&str]) -> Output {
    flowstop_command(ns, args).output().await.unwrap()
}

/// The command `kubectl_flowstop` runs, to start it and act while it runs.
fn flowstop_command(ns: &str, args: &[&str]) -> tokio::process::Command {
    let c = installed();
    let mut command = tokio::process::Command::new(c.bin_dir.join("kubectl"));
    command
        .arg("flowstop")
        .args(args)
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["-n", ns])
        .env(
            "PATH",
            format!(
                "{}:{}",
                plugin_dir().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_outcome_has_its_exit_code_and_the_output_matches_the_golden_file() {
    let (ns, cloud, op) = setup("plugin-codes", |_| {}, &["--max-attempts", "2"]).await;
    for e in ["e1", "e2", "e3"] {
        cloud.start("f", e, None).await;
    }
    cloud.stop_out_of_band("f", "e2").await;

    // Stopped: 0, and the plain output is exactly the golden file (uid normalised).
    let out = kubectl_flowstop(
        &ns,
        &[
            "stop", "f", "e1", "--name", "golden", "--secret", "creds", "--wait",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let golden = include_str!("golden/stop-wait.txt");
    assert_eq!(stdout.replace(&uid(&ns, "golden"), "<uid>"), golden);
    // What it creates goes a week after it is final (--ttl's default).
    let ttl = testkit::operator::installed().must(
        &[
            "get",
            "estop",
            "-n",
            &ns,
            "golden",
            "-o",
            "jsonpath={.spec.ttlSecondsAfterFinished}",
        ],
        None,
    );
    assert_eq!(ttl.trim(), "604800");

    // Already finished: 3, or 0 with --already-finished-ok.
    let out = kubectl_flowstop(&ns, &["stop", "f", "e2", "--secret", "creds", "--wait"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stdout.contains("already ended (Stopped)"), "{stdout}");
    let out = kubectl_flowstop(
        &ns,
        &[
            "stop",
            "f",
            "e2",
            "--secret",
            "creds",
            "--wait",
            "--already-finished-ok",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    // Not found: 4, with the service's code.
    let out = kubectl_flowstop(&ns, &["stop", "nope", "x", "--secret", "creds", "--wait"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(stdout.contains("FlowNotExists"), "{stdout}");

    // Retries exhausted: 4 (every StopExecution answers 500; --max-attempts 2).
    cloud.fault("StopExecution=500,500,500");
    let out = kubectl_flowstop(&ns, &["stop", "f", "e3", "--secret", "creds", "--wait"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stdout.contains("Retrying  attempt 1  InternalServerError (500)  next attempt at"),
        "{stdout}"
    );
    assert!(stdout.contains("Failed"), "{stdout}");

    // Timeout: 6, saying what it waited for and the last condition. The Secret does not
    // exist, so the object stays Pending.
    let out = kubectl_flowstop(
        &ns,
        &[
            "stop",
            "f",
            "e3",
            "--secret",
            "missing",
            "--wait",
            "--timeout",
            "3s",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "{stdout}{stderr}");
    assert!(
        stderr.contains("timed out after 3s waiting for executionstop/")
            && stderr.contains("CredentialsNotFound"),
        "{stderr}"
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_is_previewed_then_stopped_with_yes_and_refused_without_it_off_a_terminal() {
    let (ns, cloud, op) = setup("plugin-set", |_| {}, &[]).await;
    for n in 1..=4 {
        cloud.start("f", &format!("nightly-{n}"), None).await;
    }
    cloud.start("f", "daily-1", None).await;
    // Off a terminal and without --yes: nothing is stopped, exit 2.
    let out = kubectl_flowstop(
        &ns,
        &[
            "stop",
            "f",
            "--prefix",
            "nightly-",
            "--max-count",
            "10",
            "--secret",
            "creds",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("4 executions match"), "{stdout}");
    assert!(stderr.contains("--yes"), "{stderr}");
    // --dry-run: the preview only.
    let out = kubectl_flowstop(
        &ns,
        &[
            "stop",
            "f",
            "--prefix",
            "nightly-",
            "--max-count",
            "10",
            "--secret",
            "creds",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(cloud.calls("StopExecution"), 0);
    // --yes: stopped, progress as plain lines, exit 0.
    let out = kubectl_flowstop(
        &ns,
        &[
            "stop",
            "f",
            "--prefix",
            "nightly-",
            "--max-count",
            "10",
            "--secret",
            "creds",
            "--yes",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("4/4 final: 4 stopped, 0 already finished, 0 failed"),
        "{stdout}"
    );
    assert!(
        !stdout.contains('\r'),
        "no terminal control off a terminal: {stdout:?}"
    );
    assert_eq!(cloud.count("StopExecution", "OK"), 4);
    // --max-count 0 is refused at admission: a usage error, 2.
    let out = kubectl_flowstop(
        &ns,
        &[
            "stop",
            "f",
            "--max-count",
            "0",
            "--secret",
            "creds",
            "--yes",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    // More than --max-count match: nothing stopped, the preview deleted, 4.
    cloud.start("f", "nightly-5", None).await;
    cloud.start("f", "nightly-6", None).await;
    let out = kubectl_flowstop(
        &ns,
        &[
            "stop",
            "f",
            "--prefix",
            "nightly-",
            "--max-count",
            "1",
            "--secret",
            "creds",
            "--yes",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(stdout.contains("more than --max-count (1)"), "{stdout}");
    assert_eq!(
        cloud.count("StopExecution", "OK"),
        4,
        "nothing more stopped"
    );
    let left = installed().must(&["get", "estopset", "-n", &ns, "-o", "name"], None);
    assert_eq!(
        left.lines().count(),
        1,
        "only the completed set is left: {left}"
    );
    op.stop().await;
}

/// Runs `kubectl flowstop ARGS` on a pseudo-terminal, answers the prompt with `answer`, and
/// returns the exit code and everything the terminal showed.
async fn on_terminal(ns: &str, args: &[&str], answer: &'static str) -> (Option<i32>, String) {
    let c = installed();
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    let mut child = tokio::process::Command::new(c.bin_dir.join("kubectl"))
        .arg("flowstop")
        .args(args)
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["-n", ns])
        .env(
            "PATH",
            format!(
                "{}:{}",
                plugin_dir().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let master = std::fs::File::from(pty.master);
    let mut writer = master.try_clone().unwrap();
    // Read the terminal until the child is gone (EIO once no one holds the other end).
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        let mut master = master;
        let mut answered = false;
        loop {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    if !answered && String::from_utf8_lossy(&all).contains("[y/N]") {
                        use std::io::Write;
                        writer.write_all(answer.as_bytes()).unwrap();
                        answered = true;
                    }
                }
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let status = tokio::time::timeout(std::time::Duration::from_secs(90), child.wait())
        .await
        .expect("the plugin finishes")
        .unwrap();
    drop(child);
    (status.code(), reader.join().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_it_asks_and_draws_a_progress_bar() {
    let (ns, cloud, op) = setup("plugin-tty", |_| {}, &[]).await;
    for n in 1..=3 {
        cloud.start("f", &format!("t-{n}"), None).await;
    }
    let args = [
        "stop",
        "f",
        "--prefix",
        "t-",
        "--max-count",
        "5",
        "--secret",
        "creds",
    ];
    // Declined: 7, nothing stopped, the preview deleted.
    let (code, screen) = on_terminal(&ns, &args, "n\n").await;
    assert_eq!(code, Some(7), "{screen}");
    assert!(screen.contains("declined: nothing was stopped"), "{screen}");
    assert_eq!(cloud.calls("StopExecution"), 0);
    // Confirmed: the bar, then the summary.
    let (code, screen) = on_terminal(&ns, &args, "y\n").await;
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("Stop these 3 executions? [y/N]"),
        "{screen}"
    );
    assert!(
        screen.contains("\r[##############################] 3/3 final"),
        "{screen:?}"
    );
    // The bar's last drawing ends with a newline, and the summary follows on its own line.
    let tail = &screen[screen.rfind("3/3 final").unwrap()..];
    assert!(
        tail.contains('\n') && tail.contains("Completed"),
        "{tail:?}"
    );
    assert_eq!(cloud.count("StopExecution", "OK"), 3);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_to_do() {
    let c = installed();
    let (ns, _cloud, op) = setup("plugin-errors", |_| {}, &[]).await;
    c.apply(&secret(&ns, "other", AK, SK));
    // A user who may only read: RBAC names the verb and the resource.
    c.must(
        &[
            "create",
            "rolebinding",
            "viewer",
            "-n",
            &ns,
            "--clusterrole=view",
            "--user=viewer",
        ],
        None,
    );
    let out = kubectl_flowstop(&ns, &["stop", "f", "e1", "--as", "viewer"]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("RBAC refused: viewer may not create executionstops.flowstop.dev"),
        "{stderr}"
    );
    // An object that exists.
    let args = ["stop", "f", "e1", "--name", "twice", "--secret", "creds"];
    assert_eq!(kubectl_flowstop(&ns, &args).await.status.code(), Some(0));
    let out = kubectl_flowstop(&ns, &args).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("executionstops/twice already exists"),
        "{stderr}"
    );
    // describe and get show it.
    let out = kubectl_flowstop(&ns, &["describe", "twice"]).await;
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("ExecutionStop  ") && stdout.contains("Conditions:"),
        "{stdout}"
    );
    let out = kubectl_flowstop(&ns, &["get", "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["items"][0]["metadata"]["name"], "twice");
    // No cluster: a kubeconfig pointing nowhere.
    let dir = tempfile_dir();
    let nowhere = dir.join("kubeconfig");
    std::fs::write(
        &nowhere,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: x\n  cluster: {server: 'https://127.0.0.1:9'}\nusers:\n- name: x\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: x, user: x}\ncurrent-context: x\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-flowstop"))
        .args(["get", "--kubeconfig"])
        .arg(&nowhere)
        .output()
        .await
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("cannot reach the cluster at https://127.0.0.1:9"),
        "{stderr}"
    );
    // Usage: 2.
    let out = kubectl_flowstop(&ns, &["stop", "f"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "no execution and no --max-count"
    );
    op.stop().await;
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kubectl-flowstop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn completion_scripts_come_from_the_same_definition() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef"),
        ("fish", "complete -c"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-flowstop"))
            .args(["completion", shell])
            .output()
            .unwrap();
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(script.contains(marker), "{shell}: {script}");
        for sub in ["stop", "describe", "already-finished-ok", "max-count"] {
            assert!(script.contains(sub), "{shell} lacks {sub}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_no_policy_allows_exits_5() {
    // Enforced tenancy, and no ExecutionStopPolicy selects this namespace.
    let (ns, cloud, op) = setup("plugin-policy", |_| {}, &["--policy-mode", "enforce"]).await;
    cloud.start("f", "e1", None).await;
    let out = kubectl_flowstop(&ns, &["stop", "f", "e1", "--secret", "creds", "--wait"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(5), "{stdout}{stderr}");
    assert!(
        stdout.contains("Forbidden: no ExecutionStopPolicy selects namespace"),
        "{stdout}"
    );
    assert_eq!(cloud.calls("StopExecution"), 0);
    // It would wait for a policy; the plugin does not leave it to go ahead later.
    assert!(stderr.contains("deleted"), "{stderr}");
    let left = installed().must(&["get", "estop", "-n", &ns, "-o", "name"], None);
    assert!(left.trim().is_empty(), "{left}");
    op.stop().await;
}

/// A cluster without flowstop's CRDs: a second, bare control plane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_the_crds_says_to_install_them() {
    let (mut plane, stdin, info) = testkit::cluster::launch(&[]);
    let kubeconfig = testkit::cluster::get(&info, "kubeconfig").to_string();
    for args in [vec!["get"], vec!["stop", "f", "e1", "--wait"]] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-flowstop"))
            .args(&args)
            .args(["--kubeconfig", &kubeconfig, "-n", "default"])
            .output()
            .await
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("does not serve executionstops.flowstop.dev: is flowstop installed?"),
            "{args:?}: {stderr}"
        );
    }
    // Closing its stdin takes the plane down.
    drop(stdin);
    plane.wait().unwrap();
}

/// Whether an ExecutionStop (`estop`) or ExecutionStopSet (`estopset`) of this name exists.
fn exists(ns: &str, kind: &str, name: &str) -> bool {
    let out = installed().kubectl(&["get", kind, name, "-n", ns, "-o", "name"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("NotFound"),
        "kubectl get {kind} {name}: {stderr}"
    );
    out.status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_fails_takes_back_what_it_created_unless_keep() {
    let c = installed();
    let (ns, cloud, op) = setup("plugin-cleanup", |_| {}, &[]).await;
    // The right key id with the wrong secret: 403 SignatureNotMatch, and an object left
    // Failed would call StopExecution again when this Secret changes, or an hour later.
    c.apply(&secret(&ns, "wrong", AK, "not-the-secret"));
    for e in ["e1", "e2", "e3", "s-1", "s-2"] {
        cloud.start("f", e, None).await;
    }

    // Failed (403): exit 4, and the object is gone; stderr says so.
    let args = ["stop", "f", "e1", "--secret", "wrong", "--wait"];
    let out = kubectl_flowstop(&ns, &[&args[..], &["--name", "refused"]].concat()).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(stdout.contains("SignatureNotMatch"), "{stdout}");
    assert!(
        stderr.contains("executionstop/refused deleted (the stop failed)"),
        "{stderr}"
    );
    assert!(!exists(&ns, "estop", "refused"), "{stdout}{stderr}");

    // With --keep: the same exit code, the object stays, and stderr says how to delete it.
    let keep = [&args[..], &["--name", "kept", "--keep"]].concat();
    let out = kubectl_flowstop(&ns, &keep).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr.contains("executionstop/kept kept (--keep)")
            && stderr.contains(&format!("kubectl delete executionstop kept -n {ns}")),
        "{stderr}"
    );
    assert!(exists(&ns, "estop", "kept"));

    // Timed out (the Secret does not exist, so it stays Pending): 6, and deleted too. An
    // unfinished stop would go on after the command reported failure.
    let out = kubectl_flowstop(
        &ns,
        &[
            "stop",
            "f",
            "e2",
            "--secret",
            "missing",
            "--wait",
            "--timeout",
            "3s",
            "--name",
            "late",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "{stdout}{stderr}");
    assert!(
        stderr.contains("executionstop/late deleted (--timeout passed before it was final)"),
        "{stderr}"
    );
    // The problem comes first, then what was done about it.
    assert!(
        stderr.find("timed out after 3s") < stderr.find("executionstop/late deleted"),
        "{stderr}"
    );
    assert!(!exists(&ns, "estop", "late"));

    // Interrupted (Ctrl-C) while waiting: 130, and deleted.
    let child = flowstop_command(
        &ns,
        &[
            "stop",
            "f",
            "e3",
            "--secret",
            "missing",
            "--wait",
            "--name",
            "impatient",
        ],
    )
    .spawn()
    .unwrap();
    eventually("the plugin created its object", || async {
        exists(&ns, "estop", "impatient")
    })
    .await;
    // kubectl runs the plugin in its own process (exec): the signal reaches it.
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the plugin ends after Ctrl-C")
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(130), "{stdout}{stderr}");
    assert!(
        stderr.contains("interrupted (SIGINT)")
            && stderr.contains("executionstop/impatient deleted"),
        "{stderr}"
    );
    assert!(!exists(&ns, "estop", "impatient"));

    // A set whose stops fail (403): exit 4, the failed ones named on stdout, then the set
    // deleted; its ExecutionStops are the garbage collector's (none runs here).
    cloud.fault("StopExecution=403@1");
    let out = kubectl_flowstop(
        &ns,
        &[
            "stop",
            "f",
            "--prefix",
            "s-",
            "--max-count",
            "5",
            "--secret",
            "creds",
            "--yes",
            "--name",
            "bulk",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stdout.contains("failed: executionstop/bulk-") && stdout.contains("(execution s-1)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("executionstopset/bulk deleted (the stop failed): its ExecutionStops make no further calls"),
        "{stderr}"
    );
    assert!(!exists(&ns, "estopset", "bulk"));
    // What is left: the object kept with --keep, and the set's two children, owned by the
    // deleted set (the garbage collector's to delete).
    let left = c.must(&["get", "estop,estopset", "-n", &ns, "-o", "json"], None);
    let left: serde_json::Value = serde_json::from_str(&left).unwrap();
    let mut names = vec![];
    for o in left["items"].as_array().unwrap() {
        let name = o["metadata"]["name"].as_str().unwrap();
        names.push(name.to_string());
        if name.starts_with("bulk-") {
            let owner = &o["metadata"]["ownerReferences"][0];
            assert_eq!(
                (owner["kind"].as_str(), owner["name"].as_str()),
                (Some("ExecutionStopSet"), Some("bulk")),
                "{o}"
            );
        }
    }
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[2], "kept", "{names:?}");
    op.stop().await;
}

/// No raw control character: C0 but the newlines between lines, DEL, and C1 (in UTF-8,
/// 0xC2 then 0x80–0x9F).
fn assert_no_raw_controls(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let raw: Vec<char> = text
        .chars()
        .filter(|c| *c != '\n' && (c.is_control() && (*c as u32) < 0xa0))
        .collect();
    assert!(raw.is_empty(), "{what}: raw {raw:?} in {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_cloud_wrote_reaches_the_terminal_escaped() {
    // No operator: the status is written as an operator that copied an endpoint's answer
    // verbatim would have written it.
    let c = installed();
    let ns = c.namespace("plugin-escape");
    let clear = "\u{1b}[2J\u{1b}[H";
    c.apply(&testkit::fixtures::ExecutionStop::new(&ns, "hostile", "f", "e1").yaml());
    let status = serde_json::json!({"status": {
        "phase": "Failed",
        "attempts": 1,
        "execution": {"status": "Running\u{1b}[K"},
        "requestId": "req\u{9b}31m",
        "lastError": {
            "code": "X\u{1b}[31m",
            "message": format!("{clear}all is well\nnothing\tto see\u{7f}\u{85}"),
            "httpStatus": 403,
            "requestId": "r\u{1b}]0;title\u{7}",
            "retryable": false,
        },
        "conditions": [{
            "type": "Ready",
            "status": "False",
            "reason": "CredentialsRejected",
            "message": format!("{clear}conditions"),
            "lastTransitionTime": "2024-01-01T00:00:00Z",
        }],
    }});
    let patch = |kind: &str, name: &str, status: &serde_json::Value| {
        c.must(
            &[
                "patch",
                kind,
                name,
                "-n",
                &ns,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ],
            None,
        );
    };
    patch("estop", "hostile", &status);
    let set = serde_json::json!({
        "apiVersion": "flowstop.dev/v1alpha1",
        "kind": "ExecutionStopSet",
        "metadata": {"name": "hostile-set", "namespace": ns},
        "spec": {"flowName": "f", "maxCount": 5, "dryRun": true, "selector": {}},
    });
    c.apply(&set.to_string());
    patch(
        "estopset",
        "hostile-set",
        &serde_json::json!({"status": {
            "phase": "Previewing",
            "matched": 2,
            "firstMatches": ["fine", format!("bad{clear}")],
            "lastError": {"code": "Y\u{1b}[1m", "message": clear, "retryable": true},
        }}),
    );
    let event = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "hostile.1", "namespace": ns},
        "involvedObject": {
            "apiVersion": "flowstop.dev/v1alpha1",
            "kind": "ExecutionStop",
            "name": "hostile",
            "namespace": ns,
        },
        "type": "Warning",
        "reason": "StopFailed",
        "message": format!("{clear}event note"),
        "lastTimestamp": "2024-01-01T00:00:00Z",
    });
    c.apply(&event.to_string());

    // People's views: every control character shown as an escape, never sent.
    for args in [
        &["get"][..],
        &["describe", "hostile"],
        &["describe", "hostile-set"],
    ] {
        let out = kubectl_flowstop(&ns, args).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}{stderr}");
        assert_no_raw_controls(&format!("{args:?}"), &out.stdout);
        assert_no_raw_controls(&format!("{args:?} stderr"), &out.stderr);
        assert!(stdout.contains("\\u{1b}["), "{args:?}: {stdout}");
    }
    let out = kubectl_flowstop(&ns, &["describe", "hostile"]).await;
    let (stdout, _) = text(&out);
    for shown in [
        "Last error     X\\u{1b}[31m HTTP 403 request r\\u{1b}]0;title\\u{7}: \\u{1b}[2J\\u{1b}[Hall is well\\nnothing\\tto see\\u{7f}\\u{85}",
        "Execution now  Running\\u{1b}[K",
        "Stopped by     request req\\u{9b}31m",
        "\\u{1b}[2J\\u{1b}[Hconditions",
        "\\u{1b}[2J\\u{1b}[Hevent note",
    ] {
        assert!(stdout.contains(shown), "{shown}\n{stdout}");
    }
    let out = kubectl_flowstop(&ns, &["describe", "hostile-set"]).await;
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("First matches     fine, bad\\u{1b}[2J\\u{1b}[H"),
        "{stdout}"
    );

    // For programs: JSON and YAML keep the values exactly (escaped the formats' own way).
    let out = kubectl_flowstop(&ns, &["get", "hostile", "-o", "json"]).await;
    assert_no_raw_controls("-o json", &out.stdout);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["items"][0]["status"]["lastError"],
        status["status"]["lastError"]
    );
    let out = kubectl_flowstop(&ns, &["get", "hostile", "-o", "yaml"]).await;
    assert_no_raw_controls("-o yaml", &out.stdout);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\\e[2J"),
        "{:?}",
        text(&out)
    );

    // stop --wait prints the transitions and the outcome as they come.
    let child = flowstop_command(&ns, &["stop", "f", "e2", "--name", "waited", "--wait"])
        .spawn()
        .unwrap();
    eventually("the plugin created its object", || async {
        exists(&ns, "estop", "waited")
    })
    .await;
    patch("estop", "waited", &status);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the plugin sees the final status")
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert_no_raw_controls("stop --wait", &out.stdout);
    assert_no_raw_controls("stop --wait stderr", &out.stderr);
    assert!(
        stdout.contains("Failed  attempt 1  X\\u{1b}[31m (403)")
            && stdout.contains("executionstop/waited: Failed: X\\u{1b}[31m: \\u{1b}[2J"),
        "{stdout}"
    );
}
