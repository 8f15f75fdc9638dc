//! There is no container engine or cluster here, so the deployment files are checked against the
//! binary instead: every manifest parses; the image, ports, probes, args, environment variables
//! and config names match what `vigil serve` really accepts and serves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use yaml_serde::Value;

use crate::helpers::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn yaml(rel: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{rel} does not parse: {e}"))
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[*k],
    })
}

/// Every variable name `vigil serve --help` documents (flags' `[env: …]` and the secrets list).
fn documented_env() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let re = regex::Regex::new(r"\b(VIGIL_[A-Z_]+|AWS_[A-Z_]+)").unwrap();
    re.find_iter(&help)
        .map(|m| m.as_str().trim_end_matches('_').to_string())
        .collect()
}

/// The env var names routing/ channels refer to.
fn routing_secret_names() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("routing/channels.yaml")).unwrap();
    let re = regex::Regex::new(r"_env:\s*([A-Z_][A-Z0-9_]*)").unwrap();
    re.captures_iter(&text).map(|c| c[1].to_string()).collect()
}

#[tokio::test]
async fn kubernetes_manifests_match_the_binary() {
    let kustomization = yaml("deploy/k8s/base/kustomization.yaml");
    let deployment = yaml("deploy/k8s/base/deployment.yaml");
    let service = yaml("deploy/k8s/base/service.yaml");
    let pdb = yaml("deploy/k8s/base/pdb.yaml");
    for r in s(&kustomization, &["resources"]).as_sequence().unwrap() {
        assert!(
            repo()
                .join("deploy/k8s/base")
                .join(r.as_str().unwrap())
                .is_file(),
            "{r:?}"
        );
    }
    assert_eq!(s(&deployment, &["kind"]).as_str(), Some("Deployment"));
    assert_eq!(s(&deployment, &["spec", "replicas"]).as_u64(), Some(3));
    let c = s(
        &deployment,
        &["spec", "template", "spec", "containers", "0"],
    );
    assert_eq!(
        s(c, &["image"]).as_str(),
        Some("vigil:latest"),
        "the name the overlays rewrite"
    );
    assert_eq!(s(c, &["args", "0"]).as_str(), Some("serve"));
    let port = s(c, &["ports", "0", "containerPort"]).as_u64().unwrap();
    let port_name = s(c, &["ports", "0", "name"]).as_str().unwrap();
    // Environment: every variable is one vigil reads.
    let documented = documented_env();
    let secrets = routing_secret_names();
    let mut env = std::collections::BTreeMap::new();
    for e in s(c, &["env"]).as_sequence().unwrap() {
        let name = s(e, &["name"]).as_str().unwrap().to_string();
        assert!(
            documented.contains(&name) || secrets.contains(&name),
            "{name} is not read by vigil serve (documented: {documented:?})"
        );
        env.insert(name, s(e, &["value"]).as_str().map(str::to_string));
    }
    for secret in &secrets {
        assert!(
            env.contains_key(secret),
            "routing/ names {secret}, the Deployment must provide it"
        );
    }
    let listen = env["VIGIL_LISTEN"].clone().unwrap();
    assert!(
        listen.ends_with(&format!(":{port}")),
        "VIGIL_LISTEN {listen} vs containerPort {port}"
    );
    assert!(env.contains_key("VIGIL_REDIS_URL"), "replicas share Redis");
    // Probes hit real endpoints on the named port. Readiness for traffic is /healthz: /readyz
    // fails on conditions all replicas share (a critical incident that reached no one), which
    // must never take every replica out of the Service at once.
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/healthz"),
    ] {
        assert_eq!(s(c, &[probe, "httpGet", "path"]).as_str(), Some(path));
        assert_eq!(s(c, &[probe, "httpGet", "port"]).as_str(), Some(port_name));
    }
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    // Resources are set.
    assert!(
        s(c, &["resources", "requests", "memory"])
            .as_str()
            .is_some()
    );
    assert!(s(c, &["resources", "limits", "memory"]).as_str().is_some());
    // The routing ConfigMap: generated from the real files, mounted where VIGIL_CONFIG points.
    let generator = s(&kustomization, &["configMapGenerator", "0"]);
    let cm_name = s(generator, &["name"]).as_str().unwrap();
    let files: Vec<&str> = s(generator, &["files"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let shipped: BTreeSet<String> = std::fs::read_dir(repo().join("routing"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    let listed: BTreeSet<String> = files
        .iter()
        .map(|f| {
            Path::new(f)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(listed, shipped, "the ConfigMap carries every routing/ file");
    for f in &files {
        assert!(repo().join("deploy/k8s/base").join(f).is_file(), "{f}");
    }
    let volumes = s(&deployment, &["spec", "template", "spec", "volumes"])
        .as_sequence()
        .unwrap();
    let vol = volumes
        .iter()
        .find(|v| s(v, &["configMap", "name"]).as_str() == Some(cm_name))
        .expect("the routing ConfigMap is mounted");
    let vol_name = s(vol, &["name"]).as_str().unwrap();
    let mount = s(c, &["volumeMounts"])
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| s(m, &["name"]).as_str() == Some(vol_name))
        .unwrap();
    assert_eq!(
        s(mount, &["mountPath"]).as_str(),
        env["VIGIL_CONFIG"].as_deref()
    );
    // Service and PDB.
    assert_eq!(
        s(&service, &["spec", "ports", "0", "targetPort"]).as_str(),
        Some(port_name)
    );
    assert!(s(&pdb, &["spec", "minAvailable"]).as_u64().unwrap() < 3);
    // Non-root, as the Dockerfile's user.
    assert_eq!(
        s(
            &deployment,
            &["spec", "template", "spec", "securityContext", "runAsUser"]
        )
        .as_u64(),
        Some(10001)
    );
}

/// The variables an overlay adds to the container (its JSON patches' `…/env/-` values).
fn overlay_env(k: &Value) -> std::collections::BTreeMap<String, String> {
    let mut env = std::collections::BTreeMap::new();
    for p in s(k, &["patches"]).as_sequence().unwrap() {
        let ops: Value = yaml_serde::from_str(s(p, &["patch"]).as_str().unwrap()).unwrap();
        for op in ops.as_sequence().unwrap() {
            if s(op, &["path"]).as_str().unwrap().ends_with("/env/-") {
                env.insert(
                    s(op, &["value", "name"]).as_str().unwrap().to_string(),
                    s(op, &["value", "value"]).as_str().unwrap().to_string(),
                );
            }
        }
    }
    env
}

/// Both regions run vigil: the primary, and in DR its warm standby (as many replicas, following
/// the primary's public HTTPS URL); the primary points at the standby; both read the peer secret.
#[test]
fn overlays_target_the_two_regions() {
    let documented = documented_env();
    let mut envs = std::collections::BTreeMap::new();
    for (overlay, region) in [("primary", "ap-southeast-1"), ("dr", "ap-southeast-2")] {
        let k = yaml(&format!("deploy/k8s/overlays/{overlay}/kustomization.yaml"));
        assert_eq!(s(&k, &["resources", "0"]).as_str(), Some("../../base"));
        assert_eq!(s(&k, &["images", "0", "name"]).as_str(), Some("vigil"));
        assert!(
            s(&k, &["images", "0", "newName"])
                .as_str()
                .unwrap()
                .contains(region)
        );
        assert!(
            s(&k, &["replicas"]).is_null(),
            "{overlay}: both regions run the base's replicas (the standby is warm, not scaled to 0)"
        );
        let env = overlay_env(&k);
        assert_eq!(
            env.get("AWS_REGION").map(String::as_str),
            Some(region),
            "{overlay} sets AWS_REGION"
        );
        for name in env.keys() {
            assert!(
                documented.contains(name),
                "{overlay}: {name} is not read by vigil serve (documented: {documented:?})"
            );
        }
        envs.insert(overlay, env);
    }
    let (primary, dr) = (&envs["primary"], &envs["dr"]);
    assert!(primary["VIGIL_PUBLIC_URL"].starts_with("https://"));
    assert!(dr["VIGIL_PUBLIC_URL"].starts_with("https://"));
    assert_eq!(
        dr.get("VIGIL_STANDBY_OF"),
        Some(&primary["VIGIL_PUBLIC_URL"]),
        "DR is the standby of the primary, over HTTPS"
    );
    assert!(
        !primary.contains_key("VIGIL_STANDBY_OF"),
        "the primary is no one's standby"
    );
    assert_eq!(
        primary.get("VIGIL_PEER_URL"),
        Some(&dr["VIGIL_PUBLIC_URL"]),
        "the primary follows its standby (for the hand-back)"
    );
    let takeover = humantime::parse_duration(&dr["VIGIL_TAKEOVER_AFTER"]).unwrap();
    assert!(
        takeover <= std::time::Duration::from_secs(60),
        "the next page within about a minute of the region going dark"
    );
    // The peer secret comes from the Secret in both regions (the base's env).
    let deployment = yaml("deploy/k8s/base/deployment.yaml");
    let c = s(
        &deployment,
        &["spec", "template", "spec", "containers", "0"],
    );
    let peer = s(c, &["env"])
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| s(e, &["name"]).as_str() == Some("VIGIL_PEER_TOKENS"))
        .expect("both regions read VIGIL_PEER_TOKENS");
    assert_eq!(
        s(peer, &["valueFrom", "secretKeyRef", "name"]).as_str(),
        Some("vigil-secrets")
    );
}

#[test]
fn dockerfile_redis_and_systemd_match_the_binary() {
    let docker = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    assert!(docker.matches("FROM ").count() >= 2, "multi-stage");
    assert!(
        docker.contains("USER vigil") && docker.contains("--uid 10001"),
        "non-root, uid 10001"
    );
    assert!(docker.contains("EXPOSE 8080") && docker.contains("VIGIL_LISTEN=0.0.0.0:8080"));
    assert!(
        docker.contains("COPY routing /etc/vigil/routing")
            && docker.contains("VIGIL_CONFIG=/etc/vigil/routing")
    );
    assert!(
        docker.contains("COPY templates /etc/vigil/templates")
            && docker.contains("VIGIL_TEMPLATES=/etc/vigil/templates")
    );
    assert!(docker.contains(r#"CMD ["serve"]"#));
    let redis = std::fs::read_to_string(repo().join("deploy/redis/redis.conf")).unwrap();
    for line in [
        "appendonly yes",
        "appendfsync everysec",
        "maxmemory-policy noeviction",
    ] {
        assert!(redis.lines().any(|l| l.trim() == line), "{line}");
    }
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/vigil.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/vigil serve"));
    assert!(
        unit.contains("ExecReload=/bin/kill -HUP $MAINPID"),
        "SIGHUP reloads the policy"
    );
    let documented = documented_env();
    for line in unit.lines().filter_map(|l| l.strip_prefix("Environment=")) {
        let name = line.split('=').next().unwrap();
        assert!(documented.contains(name), "{name}");
    }
    assert!(repo().join("deploy/RUNBOOK.md").is_file());
}

/// `routing/sources.yaml` with its commented-out watchdog block turned on, as an operator turns
/// it on in production: the lines from `  # cloudwatch:` on that are commented at block depth.
fn shipped_sources_with_watchdog_on() -> String {
    let text = std::fs::read_to_string(repo().join("routing/sources.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == "  # cloudwatch:")
        .expect("routing/sources.yaml ships the watchdog block, commented out");
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    out[start] = "  cloudwatch:".into();
    for line in out.iter_mut().skip(start + 1) {
        match line.strip_prefix("  #   ") {
            Some(rest) => *line = format!("    {rest}"),
            None => break,
        }
    }
    out.join("\n") + "\n"
}

/// The "vigil is down" alarm of `deploy/aws/watchdog.yaml` (CloudFormation) watches exactly the
/// metric vigil publishes (the defaults, the shipped routing's watchdog if it sets one, and the
/// shipped block once turned on), treats missing data as breaching, and notifies a topic whose
/// only subscribers are phones by SMS: a path that does not pass through vigil.
#[test]
fn the_watchdog_alarm_watches_the_metric_vigil_publishes() {
    use vigil::config::WatchdogSpec;

    let text = std::fs::read_to_string(repo().join("deploy/aws/watchdog.yaml")).unwrap();
    let short_tag = regex::Regex::new(r"!(Ref|Sub|GetAtt|If|Equals|Not|And|Or|Select|Join|Split|Condition|FindInMap|Base64|ImportValue|GetAZs)\b").unwrap();
    assert!(
        !short_tag.is_match(&text),
        "long-form intrinsics only, so the template is plain YAML"
    );
    let t = yaml("deploy/aws/watchdog.yaml");
    assert_eq!(t["AWSTemplateFormatVersion"].as_str(), Some("2010-09-09"));
    let resources = t["Resources"].as_mapping().expect("Resources");
    let of_type = |ty: &str| -> Vec<(String, &Value)> {
        resources
            .iter()
            .filter(|(_, r)| r["Type"].as_str() == Some(ty))
            .map(|(k, r)| (k.as_str().unwrap().to_string(), r))
            .collect()
    };
    let alarms = of_type("AWS::CloudWatch::Alarm");
    assert_eq!(alarms.len(), 1, "one alarm");
    let alarm = &alarms[0].1["Properties"];

    // What vigil publishes.
    let shipped = vigil::config::load_dir(&shipped_routing())
        .unwrap_or_else(|e| panic!("{}", vigil::config::format_errors(&e)));
    let on = tempfile::tempdir().unwrap();
    copy_routing(on.path());
    std::fs::write(
        on.path().join("sources.yaml"),
        shipped_sources_with_watchdog_on(),
    )
    .unwrap();
    let turned_on = vigil::config::load_dir(on.path())
        .unwrap_or_else(|e| panic!("{}", vigil::config::format_errors(&e)))
        .watchdog
        .expect("the shipped block, turned on, configures the watchdog");
    let mut published = vec![WatchdogSpec::default(), turned_on.clone()];
    published.extend(shipped.watchdog.clone());

    let dimensions: std::collections::BTreeMap<String, String> = alarm["Dimensions"]
        .as_sequence()
        .expect("Dimensions")
        .iter()
        .map(|d| {
            (
                d["Name"].as_str().unwrap().to_string(),
                d["Value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let period = alarm["Period"].as_u64().expect("Period");
    for spec in &published {
        assert_eq!(alarm["Namespace"].as_str(), Some(spec.namespace.as_str()));
        assert_eq!(alarm["MetricName"].as_str(), Some(spec.metric.as_str()));
        assert_eq!(dimensions, spec.dimensions);
        assert!(
            spec.interval.as_secs() <= period,
            "a heartbeat in every period: interval {:?} vs Period {period}",
            spec.interval
        );
    }
    // Fires only when no vigil anywhere publishes for 3 minutes.
    assert_eq!(alarm["Statistic"].as_str(), Some("Sum"));
    assert_eq!(period, 60);
    assert_eq!(alarm["EvaluationPeriods"].as_u64(), Some(3));
    assert_eq!(alarm["DatapointsToAlarm"].as_u64(), Some(3));
    assert_eq!(alarm["Threshold"].as_f64(), Some(1.0));
    assert_eq!(
        alarm["ComparisonOperator"].as_str(),
        Some("LessThanThreshold")
    );
    assert_eq!(alarm["TreatMissingData"].as_str(), Some("breaching"));

    // Notifies (and says "OK" on) a topic of this stack whose subscribers are SMS phones.
    let topics = of_type("AWS::SNS::Topic");
    assert_eq!(topics.len(), 1, "one topic");
    let topic = topics[0].0.as_str();
    for actions in ["AlarmActions", "OKActions"] {
        let list = alarm[actions].as_sequence().expect(actions);
        assert_eq!(list.len(), 1, "{actions}");
        assert_eq!(list[0]["Ref"].as_str(), Some(topic), "{actions}");
    }
    let subscriptions = of_type("AWS::SNS::Subscription");
    assert!(!subscriptions.is_empty(), "phones subscribe to the topic");
    assert!(
        subscriptions.iter().any(|(_, s)| s["Condition"].is_null()),
        "at least one phone always subscribes"
    );
    for (name, sub) in &subscriptions {
        let p = &sub["Properties"];
        assert_eq!(p["Protocol"].as_str(), Some("sms"), "{name}");
        assert_eq!(p["TopicArn"]["Ref"].as_str(), Some(topic), "{name}");
        let param = p["Endpoint"]["Ref"].as_str().expect("a phone parameter");
        let pattern = t["Parameters"][param]["AllowedPattern"]
            .as_str()
            .unwrap_or_else(|| panic!("parameter {param} checks its number"));
        let re = regex::Regex::new(pattern).unwrap();
        assert!(re.is_match("+6591234567"), "{param}: {pattern}");
        assert!(!re.is_match("91234567"), "{param}: E.164 only");
    }
    // The runbook deploys it where vigil publishes.
    let runbook = std::fs::read_to_string(repo().join("deploy/RUNBOOK.md")).unwrap();
    assert!(runbook.contains("--template-file deploy/aws/watchdog.yaml"));
    assert!(runbook.contains(&format!("--region {}", turned_on.region)));
}
