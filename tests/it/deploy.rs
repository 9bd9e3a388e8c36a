//! `deploy/` checked offline by the tools that own each format: `hadolint` for the Dockerfile,
//! `docker-compose config` for the compose file, `kubernetes-validate --strict` (the Kubernetes
//! API's JSON schemas, bundled) for the manifests, `promtool` for Prometheus's configuration and
//! every query of the Grafana dashboard. `scripts/test` installs the tools. Beyond the formats:
//! every `fdp` flag a deployment passes is one the binary takes, the probes ask the paths fdp
//! serves, the pipeline in the ConfigMap validates, and every metric a panel reads is one fdp
//! exports.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::repo;

fn tool(program: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let o = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (scripts/test installs it): {e}"));
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// The YAML documents of a file, as JSON (through PyYAML, which kubernetes-validate brings).
fn yaml_docs(path: &Path) -> Vec<Value> {
    let (ok, out) = tool(
        "python3",
        &[
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
            &path.display().to_string(),
        ],
        &repo(""),
    );
    assert!(ok, "{out}");
    serde_json::from_str::<Vec<Value>>(out.trim()).expect("JSON of the YAML")
}

/// Asserts every `--flag` in `args` (a command line of `fdp`, starting with its subcommand) is
/// one `fdp <subcommand> --help` lists.
fn assert_fdp_takes(args: &[String], whence: &str) {
    let sub = args.first().expect("a subcommand");
    let out = Command::new(env!("CARGO_BIN_EXE_fdp"))
        .args([sub.as_str(), "--help"])
        .output()
        .expect("fdp --help");
    assert!(
        out.status.success(),
        "{whence}: fdp has no subcommand {sub}"
    );
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        let flag = flag.split('=').next().unwrap_or(flag);
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "{whence}: fdp {sub} takes no {flag}"
        );
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_dockerfile_passes_hadolint_builds_in_stages_and_runs_as_a_user() {
    let (ok, out) = tool("hadolint", &["Dockerfile"], &repo(""));
    assert!(ok, "hadolint:\n{out}");
    let text = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    let stages: Vec<&str> = text.split("\nFROM ").skip(1).collect();
    assert!(stages.len() >= 2, "multi-stage");
    let runtime = stages.last().expect("a final stage");
    assert!(
        runtime.contains("AS runtime"),
        "the runtime image is the default target"
    );
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the runtime stage");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "{user}"
    );
    // The binary and the migrations, nothing else of the build.
    let copies: Vec<&str> = runtime.lines().filter(|l| l.starts_with("COPY")).collect();
    assert_eq!(copies.len(), 2, "{copies:?}");
    assert!(copies[0].contains("--from=build") && copies[0].ends_with("/usr/local/bin/fdp"));
    assert!(copies[1].starts_with("COPY migrations "));
}

#[test]
fn the_compose_file_is_valid_and_runs_fdp_with_flags_it_takes() {
    let dir = repo("deploy");
    let (ok, out) = tool(
        "docker-compose",
        &["-f", "compose.yml", "--env-file", "env.example", "config"],
        &dir,
    );
    assert!(ok, "docker-compose config:\n{out}");
    // Without the passwords it refuses rather than starting with empty ones.
    let empty = tempfile::NamedTempFile::new().expect("tempfile");
    let (ok, out) = tool(
        "docker-compose",
        &[
            "-f",
            "compose.yml",
            "--env-file",
            &empty.path().display().to_string(),
            "config",
            "-q",
        ],
        &dir,
    );
    assert!(!ok && out.contains("POSTGRES_PASSWORD"), "{out}");
    let resolved = tempfile::NamedTempFile::new().expect("tempfile");
    let (ok, text) = tool(
        "docker-compose",
        &["-f", "compose.yml", "--env-file", "env.example", "config"],
        &dir,
    );
    assert!(ok);
    std::fs::write(resolved.path(), text).expect("written");
    let doc = yaml_docs(resolved.path()).remove(0);
    let services = doc["services"].as_object().expect("services");
    for s in [
        "redis",
        "postgres",
        "run",
        "orchestrate",
        "serve",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(s), "service {s}");
    }
    for s in ["run", "serve"] {
        assert_fdp_takes(&strings(&services[s]["command"]), s);
    }
    let cycle = strings(&services["orchestrate"]["command"]).join(" ");
    assert!(
        cycle.contains("fdp orchestrate /etc/fdp/pipelines/sample.toml"),
        "{cycle}"
    );
    // Published ports only on the host's loopback.
    for (name, s) in services {
        for p in strings(&s["ports"]) {
            assert!(p.starts_with("127.0.0.1:"), "{name} publishes {p}");
        }
    }
}

#[test]
fn the_kubernetes_manifests_pass_the_api_schemas_and_fit_fdp() {
    let dir = repo("deploy/k8s");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("deploy/k8s")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yaml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let mut args = vec!["--strict", "--quiet", "-k", "1.30.0"];
    args.extend(names.iter().map(String::as_str));
    let (ok, out) = tool("kubernetes-validate", &args, &dir);
    assert!(ok, "kubernetes-validate:\n{out}");
    // The validator refuses what is wrong (a misspelt field), so a pass means something.
    let bad = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(
        bad.path(),
        std::fs::read_to_string(dir.join("run.yaml"))
            .expect("run.yaml")
            .replace("serviceName: fdp-run", "serviceName: fdp-run\n  replica: 3"),
    )
    .expect("written");
    let (ok, out) = tool(
        "kubernetes-validate",
        &["--strict", "--quiet", &bad.path().display().to_string()],
        &dir,
    );
    assert!(!ok && out.contains("replica"), "{out}");

    let docs: Vec<Value> = files.iter().flat_map(|f| yaml_docs(f)).collect();
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for k in [
        "StatefulSet",
        "PodDisruptionBudget",
        "CronJob",
        "NetworkPolicy",
        "Deployment",
        "ConfigMap",
    ] {
        assert!(kinds.contains(k), "a {k}: {kinds:?}");
    }
    assert!(
        !kinds.contains("Secret"),
        "secrets are referenced, never committed"
    );
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name}"))
    };
    let run = find("StatefulSet", "fdp-run");
    assert_eq!(run["spec"]["replicas"], 2);
    let c = &run["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["limits"]["memory"].is_string());
    let args = strings(&c["args"]);
    assert_fdp_takes(&args, "fdp-run");
    let n = args.iter().position(|a| a == "-n").expect("-n");
    assert_eq!(args[n + 1], "2", "one timely process per replica");
    // Every secret by reference.
    let env = c["env"].as_array().expect("env");
    for var in ["DATABASE_URL", "REDIS_URL"] {
        let e = env.iter().find(|e| e["name"] == var).expect(var);
        assert!(e["valueFrom"]["secretKeyRef"]["name"].is_string(), "{var}");
    }
    let cron = find("CronJob", "fdp-orchestrate");
    let job = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_fdp_takes(&strings(&job["args"]), "fdp-orchestrate");
    let serve = find("Deployment", "fdp-serve");
    assert_fdp_takes(
        &strings(&serve["spec"]["template"]["spec"]["containers"][0]["args"]),
        "fdp-serve",
    );
    let deny = find("NetworkPolicy", "default-deny");
    assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}));
    // The pipeline the run is given validates, and the host file names one peer per replica.
    let config = find("ConfigMap", "fdp-config");
    let pipeline = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("tempfile");
    std::fs::write(
        pipeline.path(),
        config["data"]["live.toml"].as_str().expect("live.toml"),
    )
    .expect("written");
    // The file only: its source would ask the providers, and a test reaches nothing but loopback.
    crate::common::fdp_ok(&[
        "validate",
        "--file-only",
        &pipeline.path().display().to_string(),
    ]);
    let hosts = config["data"]["hostfile"].as_str().expect("hostfile");
    assert_eq!(hosts.lines().count(), 2);
}

#[test]
fn prometheus_config_and_every_grafana_query_pass_promtool_and_read_only_fdp_metrics() {
    let dir = repo("deploy");
    let (ok, out) = tool(
        "promtool",
        &["check", "config", "prometheus/prometheus.yml"],
        &dir,
    );
    assert!(ok, "promtool check config:\n{out}");

    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("grafana/dashboards/fdp.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    let ds = yaml_docs(&dir.join("grafana/provisioning/datasources/prometheus.yml")).remove(0);
    let uid = ds["datasources"][0]["uid"]
        .as_str()
        .expect("datasource uid");
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], uid, "{}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(exprs.len() >= 15, "{}", exprs.len());
    // Each query as a recording rule: promtool parses every one of them.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e.replace("$__rate_interval", "5m");
        rules.push_str(&format!(
            "      - record: dashboard:panel_{i}\n        expr: {}\n",
            serde_json::to_string(&e).expect("quoted")
        ));
    }
    let file = tempfile::Builder::new()
        .suffix(".yml")
        .tempfile()
        .expect("tempfile");
    std::fs::write(file.path(), &rules).expect("written");
    let (ok, out) = tool(
        "promtool",
        &["check", "rules", &file.path().display().to_string()],
        &dir,
    );
    assert!(
        ok,
        "promtool check rules (the dashboard's queries):\n{out}\n{rules}"
    );
    crate::health::assert_exported(&exprs.join("\n"), "a dashboard panel");
    // A recording rule a panel reads is one the rules file records.
    let recorded = std::fs::read_to_string(dir.join("prometheus/alerts.yml")).expect("rules");
    for e in &exprs {
        for name in e
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|w| w.contains(':') && w.contains("fdp_"))
        {
            assert!(
                recorded.contains(&format!("record: {name}")),
                "{name} is read by a panel and recorded by no rule"
            );
        }
    }
}
