//! Signing certificates: which URLs are trusted (`https://sns.<region>.amazonaws.com/….pem`, the
//! topic's own region), the fetcher (bounded size, timeout, no redirects) and the cache of keys
//! and of recent failures, with its concurrency bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rsa::PublicKey;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use url::{Host, Url};
use x509_cert::Certificate;
use x509_cert::der::{DecodePem as _, Encode as _};

use super::topic_region;
use crate::ingest::IngestError;

/// Fetches a signing certificate (PEM bytes). Injectable so tests map URLs to local files.
#[async_trait::async_trait] // stored as Arc<dyn CertFetcher>; native async-fn traits are not dyn-compatible
pub trait CertFetcher: Send + Sync {
    /// Errors: `Unauthenticated` when the server refuses (4xx); `CertUnavailable` when it may work
    /// later (network error, timeout, 5xx).
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, IngestError>;
}

/// Largest certificate body accepted (real SNS certificates are about 2 KiB).
pub const CERT_MAX_BYTES: usize = 16 * 1024;
/// Timeout for one certificate fetch.
pub const CERT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches certificates over HTTP(S) with reqwest: 5 s timeout, no redirects (a trusted URL must
/// not be able to bounce us elsewhere), bodies over 16 KiB refused.
#[derive(Debug, Clone)]
pub struct HttpCertFetcher {
    client: reqwest::Client,
}

impl HttpCertFetcher {
    /// Builds its own client (5 s timeout, redirects off).
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(CERT_FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { client })
    }

    /// Reuses an existing client. The 5 s timeout is still applied per request, but the client's
    /// redirect policy is the caller's: build it with `redirect::Policy::none()`.
    pub fn with_client(client: reqwest::Client) -> Self {
        Self { client }
    }
}

#[async_trait::async_trait]
impl CertFetcher for HttpCertFetcher {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, IngestError> {
        let unavailable = |e: reqwest::Error| {
            IngestError::CertUnavailable(format!(
                "fetching signing certificate {url}: {}",
                e.without_url()
            ))
        };
        let mut response = self
            .client
            .get(url)
            .timeout(CERT_FETCH_TIMEOUT)
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        if status.is_client_error() || status.is_redirection() {
            return Err(IngestError::Unauthenticated(format!(
                "signing certificate {url} answered HTTP {status}"
            )));
        }
        if !status.is_success() {
            return Err(IngestError::CertUnavailable(format!(
                "signing certificate {url} answered HTTP {status}"
            )));
        }
        let too_big = || {
            IngestError::Unauthenticated(format!(
                "signing certificate {url} is larger than {CERT_MAX_BYTES} bytes"
            ))
        };
        if response
            .content_length()
            .is_some_and(|n| n > CERT_MAX_BYTES as u64)
        {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            if body.len() + chunk.len() > CERT_MAX_BYTES {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Default number of certificates kept (SNS uses a handful per region).
pub const CERT_CACHE_CAPACITY: usize = 64;
/// Default time a fetched certificate is trusted before it is fetched again.
pub const CERT_CACHE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a certificate URL that was refused (4xx, not a certificate, a weak key) is answered
/// from memory instead of being fetched again: junk with made-up URLs costs one fetch a minute.
pub const CERT_REFUSED_TTL: Duration = Duration::from_secs(60);
/// How long a fetch that failed for a reason that may pass (network, timeout, 5xx) is answered
/// from memory: short, as SNS retries a delivery within about 20 s.
pub const CERT_UNAVAILABLE_TTL: Duration = Duration::from_secs(5);
/// Most failed URLs remembered (the oldest are forgotten first).
pub const CERT_FAILURE_CAPACITY: usize = 1024;
/// Most certificate fetches in flight at once; others wait up to [`CERT_FETCH_TIMEOUT`] for a
/// turn, then answer `CertUnavailable` (503, SNS retries).
pub const CERT_FETCH_CONCURRENCY: usize = 4;

/// Signing-certificate public keys by URL: bounded, with a TTL, behind trusted-URL rules.
///
/// Ages are measured with `std::time::Instant` (monotonic) rather than an injected clock: expiry
/// only decides when to re-fetch a certificate, never what an alert means, and tests use
/// [`CertCache::public_key_at`] to move time. A std `Mutex` is enough because it is never held
/// across an `.await`. Failures are remembered briefly ([`CERT_REFUSED_TTL`],
/// [`CERT_UNAVAILABLE_TTL`]) and at most [`CERT_FETCH_CONCURRENCY`] fetches run at once; a miss
/// looks at the cache again once it has its turn, so misses queued behind a fetch of the same
/// URL take its result.
pub struct CertCache {
    fetcher: Arc<dyn CertFetcher>,
    /// Test-only trusted URL prefixes, normalized by `url` (so `http://127.0.0.1:4567` becomes
    /// `http://127.0.0.1:4567/` and cannot match `http://127.0.0.1:45678/`).
    extra_trusted_prefixes: Vec<String>,
    entries: Mutex<HashMap<String, CachedKey>>,
    failures: Mutex<HashMap<String, CachedFailure>>,
    fetches: tokio::sync::Semaphore,
    capacity: usize,
    ttl: Duration,
}

struct CachedFailure {
    error: IngestError,
    until: Instant,
}

struct CachedKey {
    key: PublicKey,
    fetched_at: Instant,
}

impl std::fmt::Debug for CertCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertCache")
            .field("extra_trusted_prefixes", &self.extra_trusted_prefixes)
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl CertCache {
    /// A cache of [`CERT_CACHE_CAPACITY`] keys kept for [`CERT_CACHE_TTL`]. `extra_trusted_prefixes`
    /// must be empty in production; tests may trust e.g. `http://127.0.0.1:4567/`. A prefix that
    /// is not a valid absolute URL is ignored (it could never match a parsed URL safely).
    pub fn new(fetcher: Arc<dyn CertFetcher>, extra_trusted_prefixes: Vec<String>) -> Self {
        Self::with_limits(
            fetcher,
            extra_trusted_prefixes,
            CERT_CACHE_CAPACITY,
            CERT_CACHE_TTL,
        )
    }

    pub fn with_limits(
        fetcher: Arc<dyn CertFetcher>,
        extra_trusted_prefixes: Vec<String>,
        capacity: usize,
        ttl: Duration,
    ) -> Self {
        let extra_trusted_prefixes = extra_trusted_prefixes
            .iter()
            .filter_map(|p| Url::parse(p).ok())
            .filter(|u| u.username().is_empty() && u.password().is_none() && u.has_host())
            .map(String::from)
            .collect();
        Self {
            fetcher,
            extra_trusted_prefixes,
            entries: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            fetches: tokio::sync::Semaphore::new(CERT_FETCH_CONCURRENCY),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// [`CertCache::trusted_cert_url`] for a message from `topic_arn`: when the ARN names a
    /// region, the certificate host must be in that same region (SNS signs with its own region's
    /// certificate), so a certificate of another region cannot vouch for the topic.
    pub fn trusted_cert_url_for(&self, raw: &str, topic_arn: &str) -> Result<String, IngestError> {
        let url = self.trusted_cert_url(raw)?;
        let host_region = Url::parse(&url)
            .ok()
            .and_then(|u| u.host_str().and_then(sns_host_region).map(str::to_string));
        if let (Some(cert), Some(topic)) = (host_region, topic_region(topic_arn))
            && cert != topic
        {
            return Err(IngestError::Unauthenticated(format!(
                "untrusted SigningCertURL {raw:?}: the certificate is in {cert}, the TopicArn in {topic}"
            )));
        }
        Ok(url)
    }

    /// Checks a SigningCertURL against the trust rules (reference §1.5) and returns its normalized
    /// form, the one to fetch and cache by. Trusted: `https`, no userinfo, default port, no query
    /// or fragment, path ending in `.pem`, host `sns.<region>.amazonaws.com` (`.com.cn` for a
    /// `cn-` region) with a real region label; or starting with a configured extra prefix.
    pub fn trusted_cert_url(&self, raw: &str) -> Result<String, IngestError> {
        let untrusted = |why: &str| {
            IngestError::Unauthenticated(format!("untrusted SigningCertURL {raw:?}: {why}"))
        };
        let url = Url::parse(raw).map_err(|e| untrusted(&e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(untrusted("user info is not allowed"));
        }
        let normalized = String::from(url.clone());
        if self
            .extra_trusted_prefixes
            .iter()
            .any(|p| normalized.starts_with(p.as_str()))
        {
            return Ok(normalized);
        }
        if url.scheme() != "https" {
            return Err(untrusted("scheme must be https"));
        }
        if url.port().is_some() {
            return Err(untrusted("no explicit port allowed"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(untrusted("no query or fragment allowed"));
        }
        if !url.path().ends_with(".pem") {
            return Err(untrusted("path must end in .pem"));
        }
        match url.host() {
            Some(Host::Domain(host)) if sns_host_region(host).is_some() => Ok(normalized),
            _ => Err(untrusted(
                "host must be sns.<region>.amazonaws.com (or .amazonaws.com.cn for a cn- region)",
            )),
        }
    }

    /// The public key of the certificate at `url` (which must already have passed
    /// [`CertCache::trusted_cert_url`]), from the cache or freshly fetched.
    pub async fn public_key(&self, url: &str) -> Result<PublicKey, IngestError> {
        self.public_key_at(url, Instant::now()).await
    }

    /// [`CertCache::public_key`] with the current instant given, so tests can age entries.
    pub async fn public_key_at(&self, url: &str, now: Instant) -> Result<PublicKey, IngestError> {
        if let Some(known) = self.known(url, now) {
            return known;
        }
        let _turn = match self.fetches.try_acquire() {
            Ok(turn) => turn,
            Err(_) => tokio::time::timeout(CERT_FETCH_TIMEOUT, self.fetches.acquire())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| {
                    IngestError::CertUnavailable(format!(
                        "too many signing-certificate fetches in progress; not fetching {url} now"
                    ))
                })?,
        };
        // Another task may have fetched (or failed to fetch) it while this one waited.
        if let Some(known) = self.known(url, now) {
            return known;
        }
        let fetched = self.fetcher.fetch(url).await.and_then(|pem| {
            public_key_from_pem(&pem).map_err(|why| {
                IngestError::Unauthenticated(format!("signing certificate {url}: {why}"))
            })
        });
        match fetched {
            Ok(key) => {
                self.insert(url, key.clone(), now);
                Ok(key)
            }
            Err(error) => {
                self.remember_failure(url, &error, now);
                Err(error)
            }
        }
    }

    /// A cached key, or a failure remembered for `url`.
    fn known(&self, url: &str, now: Instant) -> Option<Result<PublicKey, IngestError>> {
        if let Some(key) = self.cached(url, now) {
            return Some(Ok(key));
        }
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures
            .get(url)
            .filter(|f| now < f.until)
            .map(|f| Err(f.error.clone()))
    }

    fn remember_failure(&self, url: &str, error: &IngestError, now: Instant) {
        let ttl = match error {
            IngestError::CertUnavailable(_) => CERT_UNAVAILABLE_TTL,
            _ => CERT_REFUSED_TTL,
        };
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.retain(|_, f| now < f.until);
        while failures.len() >= CERT_FAILURE_CAPACITY && !failures.contains_key(url) {
            let Some(oldest) = failures
                .iter()
                .min_by_key(|(_, f)| f.until)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            failures.remove(&oldest);
        }
        failures.insert(
            url.to_string(),
            CachedFailure {
                error: error.clone(),
                until: now + ttl,
            },
        );
    }

    /// Number of keys currently cached (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedKey>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cached(&self, url: &str, now: Instant) -> Option<PublicKey> {
        let entries = self.lock();
        let entry = entries.get(url)?;
        (now.saturating_duration_since(entry.fetched_at) < self.ttl).then(|| entry.key.clone())
    }

    fn insert(&self, url: &str, key: PublicKey, now: Instant) {
        let mut entries = self.lock();
        let ttl = self.ttl;
        entries.retain(|_, e| now.saturating_duration_since(e.fetched_at) < ttl);
        while entries.len() >= self.capacity && !entries.contains_key(url) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.fetched_at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => entries.remove(&k),
                None => break,
            };
        }
        entries.insert(
            url.to_string(),
            CachedKey {
                key,
                fetched_at: now,
            },
        );
    }
}

/// The region of an SNS certificate host: `sns.<region>.amazonaws.com`, or
/// `sns.<region>.amazonaws.com.cn` for a `cn-` region, where the region is a real region label
/// (`[a-z]{2}(-gov)?-[a-z]+-<1 or 2 digits>`: `ap-southeast-1`, `us-gov-west-1`, `cn-north-1`).
/// Stricter than the AWS validator libraries' `[a-zA-Z0-9-]{3,}`, which also lets through other
/// AWS services' hosts such as `sns.s3-accelerate.amazonaws.com`. The host is already lower-case
/// (`url` normalizes it).
fn sns_host_region(host: &str) -> Option<&str> {
    let rest = host.strip_prefix("sns.")?;
    let (region, china) = match rest.strip_suffix(".amazonaws.com") {
        Some(r) => (r, false),
        None => (rest.strip_suffix(".amazonaws.com.cn")?, true),
    };
    (is_region(region) && region.starts_with("cn-") == china).then_some(region)
}

/// `[a-z]{2}(-gov)?-[a-z]+-[0-9]{1,2}`.
fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let (geo, middle, number) = match parts.as_slice() {
        [geo, "gov", middle, number] | [geo, middle, number] => (*geo, *middle, *number),
        _ => return false,
    };
    let lower = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    geo.len() == 2
        && lower(geo)
        && lower(middle)
        && (1..=2).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// Smallest RSA modulus accepted for a signing key (AWS uses 2048 bits).
const MIN_KEY_BITS: usize = 2048;

/// Extracts the RSA public key of a PEM X.509 certificate.
fn public_key_from_pem(pem: &[u8]) -> Result<PublicKey, String> {
    let cert =
        Certificate::from_pem(pem).map_err(|e| format!("not a PEM X.509 certificate: {e}"))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| format!("unreadable public key: {e}"))?;
    let key =
        PublicKey::from_public_key_der(&spki).map_err(|e| format!("not an RSA public key: {e}"))?;
    if key.size() * 8 < MIN_KEY_BITS {
        return Err(format!("RSA key shorter than {MIN_KEY_BITS} bits"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::ingest::sns::testkit::*;
    use crate::ingest::sns::{SnsEnvelope, verify};
    use crate::ingest::testkit::fixture;

    #[tokio::test]
    async fn untrusted_cert_urls_are_refused_without_fetching() {
        let (fetcher, certs) = cache();
        let base =
            SnsEnvelope::parse(&fixture("cloudwatch-alarm-sns-notification.json")).expect("parses");
        for url in [
            "https://evil.example.com/SimpleNotificationService-x.pem",
            "http://sns.ap-southeast-1.amazonaws.com/SimpleNotificationService-x.pem",
            "https://sns.ap-southeast-1.amazonaws.com/SimpleNotificationService-x.txt",
            "https://sns.ap-southeast-1.amazonaws.com/",
            "https://sns.ap-southeast-1.amazonaws.com.evil.example/SimpleNotificationService-x.pem",
            "https://sns.ap-southeast-1.amazonaws.com@evil.example/SimpleNotificationService-x.pem",
            "https://sns.x.amazonaws.com@evil/x.pem",
            "https://user:pw@sns.ap-southeast-1.amazonaws.com/x.pem",
            "https://sns.ap-southeast-1.amazonaws.com:8443/x.pem",
            "https://sns.ap-southeast-1.amazonaws.com/x.pem?a=b",
            "https://sns.ap-southeast-1.amazonaws.com/x.pem#frag",
            "https://sns.ab.amazonaws.com/x.pem",
            "https://sns.a.b.amazonaws.com/x.pem",
            "https://s3.amazonaws.com/x.pem",
            "https://sns-ap-southeast-1.amazonaws.com/x.pem",
            "https://xsns.ap-southeast-1.amazonaws.com/x.pem",
            "https://sns.ap-southeast-1.amazonaws.co/x.pem",
            "https://127.0.0.1/x.pem",
            "http://127.0.0.1:4567/test-signing-cert.pem",
            "file:///etc/ssl/x.pem",
            "not a url",
            "",
        ] {
            let mut env = base.clone();
            env.signing_cert_url = url.into();
            let result = verify(&env, &certs).await;
            assert!(
                matches!(result, Err(IngestError::Unauthenticated(_))),
                "{url}: {result:?}"
            );
        }
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn aws_cert_hosts_in_every_partition_are_trusted() {
        let (_, certs) = cache();
        for url in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-7e2f.pem",
            "https://SNS.AP-SOUTHEAST-1.AMAZONAWS.COM/SimpleNotificationService-7e2f.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-7e2f.pem",
            "https://sns.us-gov-west-1.amazonaws.com:443/SimpleNotificationService-7e2f.pem",
        ] {
            assert!(certs.trusted_cert_url(url).is_ok(), "{url}");
        }
    }

    #[tokio::test]
    async fn cert_hosts_need_a_real_region_and_the_topics_region() {
        let (fetcher, certs) = cache();
        // Hosts the libraries' `[a-zA-Z0-9-]{3,}` rule lets through, but no SNS region serves.
        for url in [
            "https://sns.s3-accelerate.amazonaws.com/SimpleNotificationService-x.pem",
            "https://sns.s3-website-us-east-1.amazonaws.com/x.pem",
            "https://sns.dualstack.amazonaws.com/x.pem",
            "https://sns.us-east.amazonaws.com/x.pem",
            "https://sns.usa-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-123.amazonaws.com/x.pem",
            "https://sns.us-gov-west-1-x.amazonaws.com/x.pem",
            "https://sns.us-east-1a.amazonaws.com/x.pem",
            "https://sns.ap-southeast-1.amazonaws.com.cn/x.pem",
            "https://sns.cn-north-1.amazonaws.com/x.pem",
        ] {
            let result = certs.trusted_cert_url(url);
            assert!(
                matches!(&result, Err(IngestError::Unauthenticated(m)) if m.contains("host must be")),
                "{url}: {result:?}"
            );
        }
        // A real region, but not the topic's: refused before anything is fetched.
        let mut env =
            SnsEnvelope::parse(&fixture("cloudwatch-alarm-sns-notification.json")).expect("parses");
        assert_eq!(
            topic_region(env.message.topic_arn()),
            Some("ap-southeast-1")
        );
        env.signing_cert_url =
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-7e2f.pem".into();
        let result = verify(&env, &certs).await;
        assert!(
            matches!(&result, Err(IngestError::Unauthenticated(m))
                if m.contains("the certificate is in us-east-1, the TopicArn in ap-southeast-1")),
            "{result:?}"
        );
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 0);
        // The topic's own region verifies.
        env.signing_cert_url =
            "https://sns.ap-southeast-1.amazonaws.com/SimpleNotificationService-7e2f.pem".into();
        assert_eq!(verify(&env, &certs).await, Ok(()));
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1);
    }

    /// Fails every fetch with the given error, counting the calls.
    struct CountingFailures {
        calls: AtomicUsize,
        error: IngestError,
    }

    #[async_trait::async_trait]
    impl CertFetcher for CountingFailures {
        async fn fetch(&self, _url: &str) -> Result<Vec<u8>, IngestError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Err(self.error.clone())
        }
    }

    #[tokio::test]
    async fn failed_cert_urls_are_not_fetched_again_for_a_while() {
        let url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-junk.pem";
        let t0 = Instant::now();
        let secs = |s: u64| t0 + Duration::from_secs(s);
        // Refused (404 and the like): one fetch a minute, however much junk names the URL.
        let refused = Arc::new(CountingFailures {
            calls: AtomicUsize::new(0),
            error: IngestError::Unauthenticated("HTTP 404".into()),
        });
        let certs = CertCache::new(refused.clone(), vec![]);
        for s in 0..CERT_REFUSED_TTL.as_secs() {
            assert_eq!(
                certs.public_key_at(url, secs(s)).await.unwrap_err(),
                IngestError::Unauthenticated("HTTP 404".into())
            );
        }
        assert_eq!(refused.calls.load(Ordering::SeqCst), 1);
        assert!(certs.public_key_at(url, secs(60)).await.is_err());
        assert_eq!(refused.calls.load(Ordering::SeqCst), 2);
        // Unavailable (network, 5xx): remembered only a few seconds, as SNS retries soon.
        let down = Arc::new(CountingFailures {
            calls: AtomicUsize::new(0),
            error: IngestError::CertUnavailable("HTTP 503".into()),
        });
        let certs = CertCache::new(down.clone(), vec![]);
        for s in 0..CERT_UNAVAILABLE_TTL.as_secs() {
            assert!(matches!(
                certs.public_key_at(url, secs(s)).await,
                Err(IngestError::CertUnavailable(_))
            ));
        }
        assert_eq!(down.calls.load(Ordering::SeqCst), 1);
        assert!(certs.public_key_at(url, secs(5)).await.is_err());
        assert_eq!(down.calls.load(Ordering::SeqCst), 2);
        // Distinct URLs are each fetched (the cap below is what bounds those), and the memory of
        // failures is bounded.
        for i in 0..(CERT_FAILURE_CAPACITY + 10) {
            let _ = certs
                .public_key_at(
                    &format!("https://sns.us-east-1.amazonaws.com/{i}.pem"),
                    secs(6),
                )
                .await;
        }
        assert_eq!(
            down.calls.load(Ordering::SeqCst),
            2 + CERT_FAILURE_CAPACITY + 10
        );
        assert!(certs.failures.lock().unwrap().len() <= CERT_FAILURE_CAPACITY);
    }

    #[tokio::test]
    async fn concurrent_cert_fetches_are_capped() {
        /// Holds every fetch until the gate opens, recording how many run at once.
        struct Gated {
            in_flight: AtomicUsize,
            most: AtomicUsize,
            calls: AtomicUsize,
            gate: tokio::sync::Semaphore,
        }
        #[async_trait::async_trait]
        impl CertFetcher for Gated {
            async fn fetch(&self, _url: &str) -> Result<Vec<u8>, IngestError> {
                self.calls.fetch_add(1, Ordering::SeqCst);
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.most.fetch_max(now, Ordering::SeqCst);
                let _open = self.gate.acquire().await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(fixture("test-signing-cert.pem"))
            }
        }
        let fetcher = Arc::new(Gated {
            in_flight: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
        });
        let certs = Arc::new(CertCache::new(fetcher.clone(), vec![]));
        // Twenty unsigned junk messages, each naming its own certificate URL.
        let lookups: Vec<_> = (0..20)
            .map(|i| {
                let certs = certs.clone();
                tokio::spawn(async move {
                    certs
                        .public_key(&format!("https://sns.us-east-1.amazonaws.com/junk-{i}.pem"))
                        .await
                })
            })
            .collect();
        for _ in 0..1000 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            fetcher.in_flight.load(Ordering::SeqCst),
            CERT_FETCH_CONCURRENCY
        );
        fetcher.gate.add_permits(1000);
        for lookup in lookups {
            lookup.await.expect("joins").expect("key");
        }
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 20);
        assert_eq!(fetcher.most.load(Ordering::SeqCst), CERT_FETCH_CONCURRENCY);
    }

    #[tokio::test]
    async fn an_extra_trusted_prefix_works_only_when_configured() {
        let local = "http://127.0.0.1:4567/certs/test-signing-cert.pem";
        let mut env =
            SnsEnvelope::parse(&fixture("cloudwatch-alarm-sns-notification.json")).expect("parses");
        env.signing_cert_url = local.into();

        let (fetcher, certs) = cache();
        assert!(matches!(
            verify(&env, &certs).await,
            Err(IngestError::Unauthenticated(_))
        ));
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 0);

        let fetcher = Arc::new(FixtureFetcher::default());
        let certs = CertCache::new(fetcher.clone(), vec!["http://127.0.0.1:4567".into()]);
        assert_eq!(verify(&env, &certs).await, Ok(()));
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1);
        // The prefix is normalized to end in '/', so a neighbouring port or a userinfo trick
        // does not match it.
        for url in [
            "http://127.0.0.1:45678/test-signing-cert.pem",
            "http://127.0.0.1:4567@evil.example/test-signing-cert.pem",
        ] {
            env.signing_cert_url = url.into();
            assert!(
                matches!(
                    verify(&env, &certs).await,
                    Err(IngestError::Unauthenticated(_))
                ),
                "{url}"
            );
        }
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn fetch_failures_keep_their_meaning() {
        let env =
            SnsEnvelope::parse(&fixture("cloudwatch-alarm-sns-notification.json")).expect("parses");
        let transient = CertCache::new(
            Arc::new(FailingFetcher(IngestError::CertUnavailable("503".into()))),
            vec![],
        );
        assert!(matches!(
            verify(&env, &transient).await,
            Err(IngestError::CertUnavailable(_))
        ));
        let refused = CertCache::new(
            Arc::new(FailingFetcher(IngestError::Unauthenticated("404".into()))),
            vec![],
        );
        assert!(matches!(
            verify(&env, &refused).await,
            Err(IngestError::Unauthenticated(_))
        ));
        assert!(
            transient.is_empty() && refused.is_empty(),
            "failures are not cached as keys"
        );
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_entries_expire() {
        let fetcher = Arc::new(FixtureFetcher::default());
        let certs = CertCache::with_limits(fetcher.clone(), vec![], 2, Duration::from_secs(60));
        let t0 = Instant::now();
        let url = |i: u32| format!("https://sns.region-{i}.amazonaws.com/c.pem");
        for i in 0..3 {
            certs
                .public_key_at(&url(i), t0 + Duration::from_secs(i.into()))
                .await
                .expect("key");
        }
        assert_eq!(certs.len(), 2, "capacity bounds the cache");
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 3);
        // Oldest (region-0) was evicted; region-2 is still cached.
        certs
            .public_key_at(&url(2), t0 + Duration::from_secs(10))
            .await
            .expect("key");
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 3);
        certs
            .public_key_at(&url(0), t0 + Duration::from_secs(10))
            .await
            .expect("key");
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 4);
        // After the TTL everything is fetched again.
        certs
            .public_key_at(&url(0), t0 + Duration::from_secs(100))
            .await
            .expect("key");
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 5);
    }

    /// Serves one canned HTTP response on 127.0.0.1 and returns the base URL
    /// (`http://127.0.0.1:<port>/`).
    async fn serve_once(response: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = socket.write_all(&response).await;
            let _ = socket.shutdown().await;
        });
        format!("http://{addr}/")
    }

    fn http_response(status: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[tokio::test]
    async fn the_http_fetcher_classifies_answers() {
        let fetcher = HttpCertFetcher::new().expect("client builds");
        let pem = fixture("test-signing-cert.pem");

        let url = serve_once(http_response("200 OK", "", &pem)).await;
        assert_eq!(fetcher.fetch(&format!("{url}c.pem")).await, Ok(pem.clone()));

        for (status, headers, body, unauthenticated) in [
            ("404 Not Found", "", b"no".to_vec(), true),
            ("403 Forbidden", "", Vec::new(), true),
            (
                "302 Found",
                "location: https://evil.example/c.pem\r\n",
                Vec::new(),
                true,
            ),
            ("200 OK", "", vec![b'x'; CERT_MAX_BYTES + 1], true),
            ("503 Service Unavailable", "", Vec::new(), false),
            ("500 Internal Server Error", "", Vec::new(), false),
        ] {
            let url = serve_once(http_response(status, headers, &body)).await;
            let result = fetcher.fetch(&format!("{url}c.pem")).await;
            if unauthenticated {
                assert!(
                    matches!(result, Err(IngestError::Unauthenticated(_))),
                    "{status}: {result:?}"
                );
            } else {
                assert!(
                    matches!(result, Err(IngestError::CertUnavailable(_))),
                    "{status}: {result:?}"
                );
            }
        }

        // A body over the cap without a Content-Length (read until close) is refused too.
        let mut unsized_body = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
        unsized_body.extend(std::iter::repeat_n(b'x', CERT_MAX_BYTES * 2));
        let url = serve_once(unsized_body).await;
        let result = fetcher.fetch(&format!("{url}c.pem")).await;
        assert!(
            matches!(result, Err(IngestError::Unauthenticated(_))),
            "{result:?}"
        );

        // Nothing listening: transient.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let result = fetcher
            .fetch(&format!("http://127.0.0.1:{port}/c.pem"))
            .await;
        assert!(
            matches!(result, Err(IngestError::CertUnavailable(_))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn garbage_certificates_and_signatures_are_unauthenticated() {
        struct Garbage;
        #[async_trait::async_trait]
        impl CertFetcher for Garbage {
            async fn fetch(&self, _url: &str) -> Result<Vec<u8>, IngestError> {
                Ok(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec())
            }
        }
        let env =
            SnsEnvelope::parse(&fixture("cloudwatch-alarm-sns-notification.json")).expect("parses");
        let certs = CertCache::new(Arc::new(Garbage), vec![]);
        assert!(matches!(
            verify(&env, &certs).await,
            Err(IngestError::Unauthenticated(_))
        ));
        // The private key is not a certificate either.
        assert!(public_key_from_pem(&fixture("test-signing-key.pem")).is_err());

        let (_, certs) = cache();
        for sig in ["", "!!!", "AAAA", "c8xtk2LY"] {
            let mut env = env.clone();
            env.signature = sig.into();
            assert!(
                matches!(
                    verify(&env, &certs).await,
                    Err(IngestError::Unauthenticated(_))
                ),
                "{sig:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_fixture_verifies_end_to_end_through_a_trusted_local_prefix() {
        let url = serve_once(http_response(
            "200 OK",
            "",
            &fixture("test-signing-cert.pem"),
        ))
        .await;
        let fetcher = Arc::new(HttpCertFetcher::new().expect("client builds"));
        let certs = CertCache::new(fetcher, vec![url.clone()]);
        let mut env =
            SnsEnvelope::parse(&fixture("route53-healthcheck-alarm-sns-notification.json"))
                .expect("parses");
        env.signing_cert_url = format!("{url}test-signing-cert.pem");
        assert_eq!(verify(&env, &certs).await, Ok(()));
        // Cached: the one-shot server is gone, yet a second verify succeeds.
        assert_eq!(verify(&env, &certs).await, Ok(()));
    }
}
