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

#[test]
fn overlays_target_the_two_regions() {
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
        let text = std::fs::read_to_string(
            repo().join(format!("deploy/k8s/overlays/{overlay}/kustomization.yaml")),
        )
        .unwrap();
        assert!(
            text.contains(&format!("value: {region}")),
            "{overlay} sets AWS_REGION"
        );
    }
    let dr = yaml("deploy/k8s/overlays/dr/kustomization.yaml");
    assert_eq!(
        s(&dr, &["replicas", "0", "count"]).as_u64(),
        Some(0),
        "DR is standby"
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
