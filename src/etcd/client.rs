//! A small etcd v3 client over etcd's own gRPC-gateway JSON API (`/v3/...`
//! on the client port; keys and values base64, 64-bit numbers as strings),
//! on the reqwest stack the project already has for Redfish: no protoc, no
//! gRPC code generation at build time.
//!
//! Owns the wire format and the choice of endpoint (the first that
//! answers; the next on a connection error, a timeout or an answer
//! without a leader, and later requests start past the one that failed). It knows nothing of runs,
//! leaders or journals: that is [`super::run`]'s.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// Where the cluster is and how to reach it.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `http(s)://host:port`, at least one.
    pub endpoints: Vec<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// Why a request did not get an answer it could use.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    /// A flag or file is wrong; nothing was sent.
    #[error("{0}")]
    Config(String),
    /// No endpoint could be reached (or none answered in time).
    #[error("etcd unreachable: {0}")]
    Unreachable(String),
    /// The cluster answered with an error (no quorum, too large, ...).
    #[error("etcd refused the request: {0}")]
    Server(String),
    /// What etcd holds does not read back as rekindle wrote it.
    #[error("{0}")]
    Corrupt(String),
}

impl EtcdError {
    /// Worth retrying: the cluster may come back (quorum, a member restarting).
    pub fn transient(&self) -> bool {
        !matches!(self, EtcdError::Config(_) | EtcdError::Corrupt(_))
    }
}

/// One key-value pair as etcd returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// A comparison in a transaction.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key's create revision equals this (0: the key does not exist).
    Created(Vec<u8>, i64),
    /// The key's mod revision equals this (0: the key does not exist).
    Modified(Vec<u8>, i64),
}

/// An operation in a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    /// Every key with this prefix.
    Range {
        prefix: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
}

/// A transaction's outcome: whether the comparisons held, the store's
/// revision after it, and the key-values of its range operations.
#[derive(Debug, Clone)]
pub struct TxnResult {
    pub succeeded: bool,
    pub revision: i64,
    pub ranges: Vec<Vec<Kv>>,
}

/// The etcd client: endpoints tried in turn, the last good one first.
pub struct Client {
    http: reqwest::Client,
    endpoints: Vec<String>,
    current: AtomicUsize,
}

fn read_file(flag: &str, path: &PathBuf) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|e| EtcdError::Config(format!("{flag} {}: {e}", path.display())))
}

/// Checks `--etcd`'s list: comma-separated `http(s)://host:port`.
pub fn parse_endpoints(list: &str) -> Result<Vec<String>, EtcdError> {
    let endpoints: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('/').to_owned())
        .collect();
    if endpoints.is_empty() {
        return Err(EtcdError::Config(
            "--etcd: no endpoint given (e.g. http://10.0.0.1:2379,http://10.0.0.2:2379)".into(),
        ));
    }
    for e in &endpoints {
        if let Some((scheme_user, host)) = e.split_once('@') {
            let scheme = scheme_user.split("://").next().unwrap_or("http");
            return Err(EtcdError::Config(format!(
                "--etcd: `{scheme}://…@{host}` carries credentials; they do not belong on a command line or in the journal. rekindle authenticates to etcd by TLS client certificate (--etcd-cert, --etcd-key)"
            )));
        }
        let rest = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"));
        let ok = rest.is_some_and(|r| {
            r.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        });
        if !ok {
            return Err(EtcdError::Config(format!(
                "--etcd: `{e}` is not http(s)://host:port"
            )));
        }
    }
    Ok(endpoints)
}

fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn b64(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| B64.decode(s).ok())
        .unwrap_or_default()
}

fn kvs(v: &Value) -> Vec<Kv> {
    v.get("kvs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|kv| Kv {
                    key: b64(&kv["key"]),
                    value: b64(&kv["value"]),
                    create_revision: num(&kv["create_revision"]),
                    mod_revision: num(&kv["mod_revision"]),
                    lease: num(&kv["lease"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The smallest key after every key that starts with `prefix`.
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Client {
    /// Builds the client; reads the TLS files (a bad one is an error
    /// naming its flag). Sends nothing.
    pub fn new(opts: &ClientOptions) -> Result<Client, EtcdError> {
        if opts.endpoints.is_empty() {
            return Err(EtcdError::Config("--etcd: no endpoint given".into()));
        }
        let mut builder = crate::transport::resolve::http(reqwest::Client::builder())
            .no_proxy()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout);
        if let Some(ca) = &opts.ca {
            let pem = read_file("--etcd-ca", ca)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| EtcdError::Config(format!("--etcd-ca {}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(EtcdError::Config(format!(
                    "--etcd-ca {}: no PEM certificate in it",
                    ca.display()
                )));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        match (&opts.cert, &opts.key) {
            (Some(cert), Some(key)) => {
                let mut pem = read_file("--etcd-cert", cert)?;
                pem.push(b'\n');
                pem.extend(read_file("--etcd-key", key)?);
                let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    EtcdError::Config(format!(
                        "--etcd-cert {} / --etcd-key {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?;
                builder = builder.identity(id);
            }
            (None, None) => {}
            _ => {
                return Err(EtcdError::Config(
                    "--etcd-cert and --etcd-key go together: give both or neither".into(),
                ));
            }
        }
        let http = builder
            .build()
            .map_err(|e| EtcdError::Config(format!("cannot build the etcd HTTP client: {e}")))?;
        Ok(Client {
            http,
            endpoints: opts.endpoints.clone(),
            current: AtomicUsize::new(0),
        })
    }

    /// Gives up on endpoint `at` for now: later requests start at the next
    /// one (unless another request moved on meanwhile). A member that hangs
    /// (stopped, swapping) accepts connections and never answers; starting
    /// every request there would spend each one's time on it.
    fn pass_over(&self, at: usize) {
        let next = (at + 1) % self.endpoints.len();
        let _ = self
            .current
            .compare_exchange(at, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// POSTs `body` to `path` on the current endpoint, then on each other
    /// one in turn while they cannot be reached, hang past the request
    /// timeout or answer without a leader. The one that answered becomes
    /// the current one; one that failed is passed over by later requests.
    async fn post(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for i in 0..n {
            let at = (start + i) % n;
            let url = format!("{}{path}", self.endpoints[at]);
            let response = match self.http.post(&url).json(body).send().await {
                Ok(r) => r,
                Err(e) => {
                    let chain = error_chain(&e);
                    last = format!("{}: {chain}{}", self.endpoints[at], tls_hint(&chain));
                    self.pass_over(at);
                    continue;
                }
            };
            let status = response.status();
            let value: Value = match response.json().await {
                Ok(v) => v,
                Err(e) => {
                    last = format!("{}: bad answer: {}", self.endpoints[at], error_chain(&e));
                    self.pass_over(at);
                    continue;
                }
            };
            if !status.is_success() || value.get("error").is_some() {
                let message = value
                    .get("message")
                    .or_else(|| value.get("error"))
                    .and_then(Value::as_str)
                    .unwrap_or("no message")
                    .to_owned();
                // A member without a leader may be the one cut off: another may have quorum.
                last = format!("{}: {message} (HTTP {status})", self.endpoints[at]);
                if i + 1 < n {
                    self.pass_over(at);
                    continue;
                }
                return Err(EtcdError::Server(last));
            }
            self.current.store(at, Ordering::Relaxed);
            return Ok(value);
        }
        Err(EtcdError::Unreachable(last))
    }

    /// Every key-value starting with `prefix` (or the one key, unless `prefix`).
    pub async fn range(&self, key: &[u8], prefix: bool) -> Result<Vec<Kv>, EtcdError> {
        let mut body = json!({ "key": B64.encode(key) });
        if prefix {
            body["range_end"] = json!(B64.encode(range_end(key)));
        }
        Ok(kvs(&self.post("/v3/kv/range", &body).await?))
    }

    /// The keys (no values) starting with `prefix`.
    pub async fn keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, EtcdError> {
        let body = json!({
            "key": B64.encode(prefix),
            "range_end": B64.encode(range_end(prefix)),
            "keys_only": true,
        });
        Ok(kvs(&self.post("/v3/kv/range", &body).await?)
            .into_iter()
            .map(|kv| kv.key)
            .collect())
    }

    /// One key's value, if it exists.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Kv>, EtcdError> {
        Ok(self.range(key, false).await?.into_iter().next())
    }

    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        let body = json!({ "key": B64.encode(key), "value": B64.encode(value) });
        self.post("/v3/kv/put", &body).await.map(drop)
    }

    /// If every comparison holds, the `success` operations, else `failure`'s.
    pub async fn txn(
        &self,
        compare: &[Compare],
        success: &[Op],
        failure: &[Op],
    ) -> Result<TxnResult, EtcdError> {
        let cmp: Vec<Value> = compare
            .iter()
            .map(|c| match c {
                Compare::Created(k, r) => json!({
                    "key": B64.encode(k), "target": "CREATE", "result": "EQUAL",
                    "create_revision": r.to_string(),
                }),
                Compare::Modified(k, r) => json!({
                    "key": B64.encode(k), "target": "MOD", "result": "EQUAL",
                    "mod_revision": r.to_string(),
                }),
            })
            .collect();
        let ops = |ops: &[Op]| -> Vec<Value> {
            ops.iter()
                .map(|o| match o {
                    Op::Put { key, value, lease } => json!({ "request_put": {
                        "key": B64.encode(key), "value": B64.encode(value),
                        "lease": lease.to_string(),
                    }}),
                    Op::Range { prefix } => json!({ "request_range": {
                        "key": B64.encode(prefix), "range_end": B64.encode(range_end(prefix)),
                    }}),
                    Op::Delete { key } => json!({ "request_delete_range": {
                        "key": B64.encode(key),
                    }}),
                })
                .collect()
        };
        let body = json!({ "compare": cmp, "success": ops(success), "failure": ops(failure) });
        let v = self.post("/v3/kv/txn", &body).await?;
        let ranges = v
            .get("responses")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.get("response_range"))
                    .map(kvs)
                    .collect()
            })
            .unwrap_or_default();
        Ok(TxnResult {
            succeeded: v.get("succeeded").and_then(Value::as_bool).unwrap_or(false),
            revision: num(&v["header"]["revision"]),
            ranges,
        })
    }

    /// A new lease of `ttl` seconds; its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let body = json!({ "TTL": ttl.as_secs().max(1).to_string() });
        let v = self.post("/v3/lease/grant", &body).await?;
        match num(&v["ID"]) {
            0 => Err(EtcdError::Server("lease grant returned no id".into())),
            id => Ok(id),
        }
    }

    /// Renews a lease; `false` when it had already expired.
    pub async fn keepalive(&self, id: i64) -> Result<bool, EtcdError> {
        let v = self
            .post("/v3/lease/keepalive", &json!({ "ID": id.to_string() }))
            .await?;
        Ok(num(&v["result"]["TTL"]) > 0)
    }

    /// Ends a lease now: the keys attached to it go with it.
    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        self.post("/v3/lease/revoke", &json!({ "ID": id.to_string() }))
            .await
            .map(drop)
    }
}

/// What to check when a TLS handshake failed, from rustls's words in `chain`.
fn tls_hint(chain: &str) -> &'static str {
    if chain.contains("invalid peer certificate") {
        " (is --etcd-ca the CA that signed the etcd members' certificates?)"
    } else if chain.contains("BadCertificate") || chain.contains("CertificateRequired") {
        " (does the cluster want a client certificate (--etcd-cert, --etcd-key)? is it signed by a CA the cluster trusts?)"
    } else {
        ""
    }
}

/// `e` and its sources, `: `-joined (reqwest's own text hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked() {
        assert_eq!(
            parse_endpoints("http://127.0.0.1:2379, https://e2:2379/").unwrap(),
            ["http://127.0.0.1:2379", "https://e2:2379"]
        );
        for bad in [
            "",
            "127.0.0.1:2379",
            "http://host",
            "ftp://h:1",
            "http://:1",
        ] {
            assert!(parse_endpoints(bad).is_err(), "{bad}");
        }
        let Err(EtcdError::Config(e)) = parse_endpoints("https://root:s3cret@e1:2379") else {
            panic!("credentials in an endpoint are refused");
        };
        assert!(
            e.contains("https://…@e1:2379") && !e.contains("s3cret"),
            "{e}"
        );
    }

    #[test]
    fn a_prefix_range_ends_after_every_key_with_it() {
        assert_eq!(range_end(b"/a/"), b"/a0");
        assert_eq!(range_end(b"a\xff"), b"b");
        assert_eq!(range_end(b"\xff"), [0]);
    }

    fn opts() -> ClientOptions {
        ClientOptions {
            endpoints: vec!["http://127.0.0.1:1".into()],
            ca: None,
            cert: None,
            key: None,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn tls_files_are_read_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = Client::new(&ClientOptions {
            ca: Some(missing.clone()),
            ..opts()
        })
        .err()
        .expect("missing CA");
        assert!(e.to_string().starts_with("--etcd-ca "), "{e}");
        assert!(e.to_string().contains("nope.pem"), "{e}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let e = Client::new(&ClientOptions {
            ca: Some(garbage.clone()),
            ..opts()
        })
        .err()
        .expect("no certificate");
        assert!(e.to_string().contains("garbage.pem"), "{e}");
        let e = Client::new(&ClientOptions {
            cert: Some(garbage.clone()),
            ..opts()
        })
        .err()
        .expect("cert without key");
        assert!(e.to_string().contains("go together"), "{e}");
        let e = Client::new(&ClientOptions {
            cert: Some(garbage.clone()),
            key: Some(garbage),
            ..opts()
        })
        .err()
        .expect("bad identity");
        assert!(e.to_string().starts_with("--etcd-cert "), "{e}");
        assert!(Client::new(&opts()).is_ok());
    }
}
