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
    let service = yaml_docs("deploy/k8s/base/service.yaml").remove(0);
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
    hardened(&deployment, c);
    two_listeners(c, &env, &service);
}

/// Read-only root filesystem with no writable volume (state is in Redis), every capability
/// dropped, no privilege escalation, seccomp RuntimeDefault, one replica per zone, and the
/// ServiceAccount the IAM role is bound to.
fn hardened(deployment: &Value, c: &Value) {
    let pod = s(deployment, &["spec", "template", "spec"]);
    let sc = s(c, &["securityContext"]);
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(s(sc, &["capabilities", "drop", "0"]).as_str(), Some("ALL"));
    assert!(s(sc, &["capabilities", "add"]).is_null());
    for seccomp in [
        s(sc, &["seccompProfile", "type"]),
        s(pod, &["securityContext", "seccompProfile", "type"]),
    ] {
        assert_eq!(seccomp.as_str(), Some("RuntimeDefault"));
    }
    for v in s(pod, &["volumes"]).as_sequence().unwrap() {
        assert!(
            v["configMap"].is_mapping() || v["secret"].is_mapping(),
            "no writable volume: {v:?}"
        );
    }
    let spread = s(pod, &["topologySpreadConstraints"])
        .as_sequence()
        .unwrap();
    assert!(
        spread.iter().any(|t| {
            t["topologyKey"].as_str() == Some("topology.kubernetes.io/zone")
                && t["whenUnsatisfiable"].as_str() == Some("DoNotSchedule")
        }),
        "spread across zones"
    );
    let sa = yaml("deploy/k8s/base/serviceaccount.yaml");
    assert_eq!(
        s(pod, &["serviceAccountName"]),
        s(&sa, &["metadata", "name"])
    );
    let role = s(
        &sa,
        &["metadata", "annotations", "eks.amazonaws.com/role-arn"],
    );
    assert!(
        role.as_str().unwrap().starts_with("arn:aws:iam::"),
        "{role:?}"
    );
}

/// The public listener (`VIGIL_PUBLIC_LISTEN`) on its own named port, each Service on one of
/// the two ports.
fn two_listeners(
    c: &Value,
    env: &std::collections::BTreeMap<String, Option<String>>,
    service: &Value,
) {
    let ports: std::collections::BTreeMap<String, u64> = s(c, &["ports"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    let public = env["VIGIL_PUBLIC_LISTEN"].clone().unwrap();
    assert!(
        public.ends_with(&format!(":{}", ports["public"])),
        "VIGIL_PUBLIC_LISTEN {public} vs the `public` containerPort"
    );
    assert_ne!(ports["public"], ports["http"]);
    let by_name: std::collections::BTreeMap<String, String> =
        yaml_docs("deploy/k8s/base/service.yaml")
            .iter()
            .map(|svc| {
                (
                    s(svc, &["metadata", "name"]).as_str().unwrap().to_string(),
                    s(svc, &["spec", "ports", "0", "targetPort"])
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
    assert_eq!(by_name["vigil"], "http");
    assert_eq!(by_name["vigil-public"], "public");
    assert_eq!(s(service, &["metadata", "name"]).as_str(), Some("vigil"));
}

/// Every document of a multi-document YAML file.
fn yaml_docs(rel: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    let text = std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    yaml_serde::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{rel} does not parse: {e}")))
        .collect()
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

/// The value an overlay's JSON patch of the resource named `target` puts at `path`.
fn overlay_patch_value(k: &Value, target: &str, path: &str) -> Option<String> {
    for p in s(k, &["patches"]).as_sequence().unwrap() {
        if s(p, &["target", "name"]).as_str() != Some(target) {
            continue;
        }
        let ops: Value = yaml_serde::from_str(s(p, &["patch"]).as_str().unwrap()).unwrap();
        for op in ops.as_sequence().unwrap() {
            if s(op, &["path"]).as_str() == Some(path) {
                return s(op, &["value"]).as_str().map(str::to_string);
            }
        }
    }
    None
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
    // The peer API is on the private listener only: each side follows the other's internal
    // load balancer (the overlay's host for `vigil-internal`), over HTTPS.
    let internal = |overlay: &str| {
        let k = yaml(&format!("deploy/k8s/overlays/{overlay}/kustomization.yaml"));
        format!(
            "https://{}",
            overlay_patch_value(&k, "vigil-internal", "/spec/rules/0/host")
                .unwrap_or_else(|| panic!("{overlay} sets its internal host"))
        )
    };
    assert_eq!(
        dr.get("VIGIL_STANDBY_OF"),
        Some(&internal("primary")),
        "DR is the standby of the primary, over HTTPS, on its private listener"
    );
    assert!(
        !primary.contains_key("VIGIL_STANDBY_OF"),
        "the primary is no one's standby"
    );
    assert_eq!(
        primary.get("VIGIL_PEER_URL"),
        Some(&internal("dr")),
        "the primary follows its standby (for the hand-back)"
    );
    for (overlay, env) in [("primary", primary), ("dr", dr)] {
        let k = yaml(&format!("deploy/k8s/overlays/{overlay}/kustomization.yaml"));
        assert_eq!(
            Some(env["VIGIL_PUBLIC_URL"].clone()),
            overlay_patch_value(&k, "vigil-public", "/spec/rules/0/host")
                .map(|h| format!("https://{h}")),
            "{overlay}: links in messages use the public host"
        );
    }
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

/// The internet-facing load balancer: HTTPS with an ACM certificate, HTTP redirected, health
/// checked on /healthz, and every path it routes goes to the public port and is served there
/// (and only there) by the binary; every public endpoint of the binary is routed.
#[tokio::test]
async fn the_public_ingress_routes_only_public_paths_to_the_public_port() {
    let ing = yaml("deploy/k8s/base/ingress-public.yaml");
    let a = s(&ing, &["metadata", "annotations"]);
    let annotation = |k: &str| a[k].as_str().unwrap_or_else(|| panic!("annotation {k}"));
    assert_eq!(
        annotation("alb.ingress.kubernetes.io/scheme"),
        "internet-facing"
    );
    assert!(annotation("alb.ingress.kubernetes.io/certificate-arn").starts_with("arn:aws:acm:"));
    assert_eq!(annotation("alb.ingress.kubernetes.io/ssl-redirect"), "443");
    assert!(annotation("alb.ingress.kubernetes.io/listen-ports").contains(r#""HTTPS": 443"#));
    assert_eq!(
        annotation("alb.ingress.kubernetes.io/healthcheck-path"),
        "/healthz"
    );
    let internal = yaml("deploy/k8s/base/ingress-internal.yaml");
    assert_eq!(
        s(
            &internal,
            &[
                "metadata",
                "annotations",
                "alb.ingress.kubernetes.io/scheme"
            ]
        )
        .as_str(),
        Some("internal")
    );

    let app = spawn_app_with(Options {
        public_listen: true,
        ..Default::default()
    })
    .await;
    let paths = s(&ing, &["spec", "rules", "0", "http", "paths"])
        .as_sequence()
        .unwrap();
    let mut routed_paths = Vec::new();
    for p in paths {
        let path = p["path"].as_str().unwrap();
        let kind = p["pathType"].as_str().unwrap();
        assert_eq!(
            s(p, &["backend", "service", "name"]).as_str(),
            Some("vigil-public"),
            "{path}"
        );
        assert_eq!(
            s(p, &["backend", "service", "port", "name"]).as_str(),
            Some("public"),
            "{path}"
        );
        // A Prefix path is probed one segment deeper, as its requests come (`/v1/ack/<token>`).
        let probe = if kind == "Prefix" {
            format!("{path}/x")
        } else {
            path.to_string()
        };
        for m in ["GET", "POST"] {
            if crate::listeners::routed(&app, m, &app.public_url(&probe)).await {
                assert!(
                    !crate::listeners::routed(&app, m, &app.url(&probe)).await,
                    "{m} {probe} is public, so 404 on the private listener"
                );
                routed_paths.push((kind, path));
            }
        }
        assert!(
            routed_paths.iter().any(|(_, p)| *p == path),
            "{path}: the load balancer routes it, but the public listener does not serve it"
        );
    }
    for (_, endpoint) in crate::listeners::PUBLIC {
        assert!(
            routed_paths.iter().any(|(kind, p)| match *kind {
                "Exact" => p == endpoint,
                _ => endpoint.starts_with(&format!("{p}/")),
            }),
            "public endpoint {endpoint} is not routed by the internet-facing load balancer"
        );
    }
}

/// The overlays render with kustomize (`kubectl kustomize`, on every machine of this kind; a
/// developer machine without it skips, CI fails), with every resource and each region's hosts,
/// role and certificates.
#[test]
fn the_overlays_render_with_kustomize() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "kubectl (kustomize) is missing in CI"
        );
        eprintln!("kubectl not found: the overlays were not rendered");
        return;
    }
    for (overlay, region, short) in [
        ("primary", "ap-southeast-1", "apse1"),
        ("dr", "ap-southeast-2", "apse2"),
    ] {
        let out = Command::new("kubectl")
            .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
            .arg(repo().join("deploy/k8s/overlays").join(overlay))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{overlay}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let docs: Vec<Value> = {
            use serde::Deserialize as _;
            yaml_serde::Deserializer::from_str(&text)
                .map(|d| Value::deserialize(d).unwrap())
                .collect()
        };
        let mut kinds: Vec<String> = docs
            .iter()
            .map(|d| {
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap(),
                    s(d, &["metadata", "name"]).as_str().unwrap()
                )
            })
            .collect();
        kinds.sort();
        for want in [
            "Deployment/vigil",
            "Ingress/vigil-internal",
            "Ingress/vigil-public",
            "NetworkPolicy/vigil",
            "PodDisruptionBudget/vigil",
            "PrometheusRule/vigil",
            "Service/vigil",
            "Service/vigil-public",
            "ServiceAccount/vigil",
            "ServiceMonitor/vigil",
        ] {
            assert!(
                kinds.iter().any(|k| k == want),
                "{overlay}: {want} missing from {kinds:?}"
            );
        }
        for d in &docs {
            assert_eq!(
                s(d, &["metadata", "namespace"]).as_str(),
                Some("vigil"),
                "{overlay}: {kinds:?}"
            );
        }
        assert!(
            text.contains(&format!("host: vigil.{short}.example.com")),
            "{overlay}"
        );
        assert!(
            text.contains(&format!("host: vigil-internal.{short}.example.com")),
            "{overlay}"
        );
        assert!(text.contains(&format!("role/vigil-{short}")), "{overlay}");
        assert_eq!(
            text.matches(&format!("arn:aws:acm:{region}:")).count(),
            2,
            "{overlay}: both load balancers use this region's certificates"
        );
    }
}

/// The IAM policy grants exactly the AWS operations vigil's code calls: the operations of each
/// AWS SDK crate vigil depends on (the crate's own `src/operation/` list) that its non-test code
/// calls, as IAM actions, equal the policy's actions.
#[test]
fn the_iam_policy_grants_exactly_what_the_code_calls() {
    // The SDK crates vigil depends on, and their IAM service prefix.
    let sdks = [
        ("aws-sdk-cloudwatch", "cloudwatch"),
        ("aws-sdk-pinpointsmsvoicev2", "sms-voice"),
        ("aws-sdk-sns", "sns"),
        ("aws-sdk-sqs", "sqs"),
    ];
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let deps: BTreeSet<&str> = regex::Regex::new(r"(?m)^(aws-sdk-[a-z0-9]+)\s*=")
        .unwrap()
        .captures_iter(&manifest)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    assert_eq!(
        deps,
        sdks.iter().map(|(c, _)| *c).collect(),
        "a new AWS SDK crate: add it (and its IAM prefix) here"
    );
    let lock = std::fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
    let sources: Vec<PathBuf> = std::fs::read_dir(cargo_home.join("registry/src"))
        .expect("the crates' sources under $CARGO_HOME/registry/src")
        .map(|e| e.unwrap().path())
        .collect();
    let code = non_test_sources();
    let call = regex::Regex::new(r"\.([a-z][a-z0-9_]*)\(\)").unwrap();
    let mut called = BTreeSet::new();
    for (krate, prefix) in sdks {
        let version = regex::Regex::new(&format!(r#"name = "{krate}"\nversion = "([^"]+)""#))
            .unwrap()
            .captures(&lock)
            .unwrap_or_else(|| panic!("{krate} in Cargo.lock"))[1]
            .to_string();
        let dir = sources
            .iter()
            .map(|s| s.join(format!("{krate}-{version}/src/operation")))
            .find(|d| d.is_dir())
            .unwrap_or_else(|| panic!("the sources of {krate} {version}"));
        let ops: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".rs"))
            .collect();
        let module = krate.replace('-', "_");
        for (file, text) in &code {
            if !text.contains(&module) {
                continue;
            }
            for c in call.captures_iter(text) {
                if ops.contains(&c[1]) {
                    let action = c[1]
                        .split('_')
                        .map(|w| w[..1].to_uppercase() + &w[1..])
                        .collect::<String>();
                    called.insert((format!("{prefix}:{action}"), file.clone()));
                }
            }
        }
    }
    let called_actions: BTreeSet<String> = called.iter().map(|(a, _)| a.clone()).collect();
    assert!(
        called_actions.contains("sns:Publish")
            && called_actions.contains("cloudwatch:DescribeAlarms"),
        "the scan finds the calls it must: {called:?}"
    );
    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/aws/iam-policy.json")).unwrap(),
    )
    .unwrap();
    let mut granted = BTreeSet::new();
    for st in policy["Statement"].as_array().unwrap() {
        assert_eq!(st["Effect"], "Allow");
        match &st["Action"] {
            serde_json::Value::String(a) => {
                granted.insert(a.clone());
            }
            serde_json::Value::Array(list) => {
                granted.extend(list.iter().map(|a| a.as_str().unwrap().to_string()));
            }
            other => panic!("Action {other}"),
        }
        assert!(!st["Resource"].is_null(), "{st}");
    }
    assert_eq!(
        granted, called_actions,
        "deploy/aws/iam-policy.json grants exactly what the code calls ({called:?})"
    );
    let runbook = std::fs::read_to_string(repo().join("deploy/RUNBOOK.md")).unwrap();
    for action in &granted {
        assert!(
            runbook.contains(&format!("`{action}`")),
            "RUNBOOK's IAM table names {action}"
        );
    }
}

/// The library's source files outside test code (`#[cfg(test)]` modules and test-only files),
/// by path: what the binary can call.
fn non_test_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let name = path.file_name().unwrap().to_string_lossy();
                if [
                    "testkit.rs",
                    "testing.rs",
                    "contract.rs",
                    "tests_support.rs",
                ]
                .contains(&name.as_ref())
                {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = match text.find("#[cfg(test)]") {
                    Some(i) => text[..i].to_string(),
                    None => text,
                };
                out.push((path.display().to_string(), code));
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("src"), &mut out);
    out
}

/// The alerts about vigil itself watch metrics the binary exports, cover what an operator must
/// hear about the pager, and each points at a RUNBOOK section that exists.
#[test]
fn prometheus_rules_watch_real_metrics_and_point_at_the_runbook() {
    let rules = yaml("deploy/k8s/components/monitoring/prometheusrule.yaml");
    let monitor = yaml("deploy/k8s/components/monitoring/servicemonitor.yaml");
    assert_eq!(
        s(&monitor, &["spec", "endpoints", "0", "port"]).as_str(),
        Some("http")
    );
    assert_eq!(
        s(&monitor, &["spec", "endpoints", "0", "path"]).as_str(),
        Some("/metrics")
    );
    let exported: BTreeSet<String> = {
        let re = regex::Regex::new(r#""(vigil_[a-z_]+)""#).unwrap();
        non_test_sources()
            .iter()
            .flat_map(|(_, t)| {
                re.captures_iter(t)
                    .map(|c| c[1].to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let runbook = std::fs::read_to_string(repo().join("deploy/RUNBOOK.md")).unwrap();
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .collect::<String>()
                .replace(' ', "-")
        })
        .collect();
    let metric = regex::Regex::new(r"\bvigil_[a-z_]+").unwrap();
    let mut watched = BTreeSet::new();
    for r in s(&rules, &["spec", "groups", "0", "rules"])
        .as_sequence()
        .unwrap()
    {
        let name = r["alert"].as_str().unwrap();
        let expr = r["expr"].as_str().unwrap();
        for m in metric.find_iter(expr) {
            assert!(
                exported.contains(m.as_str()),
                "{name}: {} is not a metric vigil exports",
                m.as_str()
            );
            watched.insert(m.as_str().to_string());
        }
        let url = s(r, &["annotations", "runbook_url"]).as_str().unwrap();
        let (file, anchor) = url.split_once('#').unwrap();
        assert!(file.ends_with("deploy/RUNBOOK.md"), "{name}: {url}");
        assert!(
            anchors.contains(anchor),
            "{name}: RUNBOOK.md has no section #{anchor}"
        );
        assert!(["critical", "warning"].contains(&s(r, &["labels", "severity"]).as_str().unwrap()));
    }
    for needed in [
        "vigil_ready",
        "vigil_unreached_incidents",
        "vigil_scheduler_lag_seconds",
        "vigil_reconcile_last_success_timestamp_seconds",
        "vigil_delivery_attempts_total",
        "vigil_peer_lag_seconds",
    ] {
        assert!(watched.contains(needed), "no alert watches {needed}");
    }
}

/// In: the load balancers to both listeners, the bot and Prometheus to the private one. Out: DNS,
/// Redis and HTTPS only.
#[test]
fn the_network_policy_lets_in_the_load_balancers_and_out_dns_redis_and_https() {
    let np = yaml("deploy/k8s/base/networkpolicy.yaml");
    let types: Vec<&str> = s(&np, &["spec", "policyTypes"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(types, ["Ingress", "Egress"]);
    let ports = |rule: &Value| -> BTreeSet<String> {
        rule["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| match &p["port"] {
                Value::Number(n) => n.to_string(),
                v => v.as_str().unwrap().to_string(),
            })
            .collect()
    };
    let ingress = s(&np, &["spec", "ingress"]).as_sequence().unwrap();
    let all_in: BTreeSet<String> = ingress.iter().flat_map(ports).collect();
    assert_eq!(all_in, ["http", "public"].map(String::from).into());
    let egress = s(&np, &["spec", "egress"]).as_sequence().unwrap();
    let all_out: BTreeSet<String> = egress.iter().flat_map(ports).collect();
    assert_eq!(all_out, ["53", "6379", "443"].map(String::from).into());
}
