//! Load probe for a running `rekindle sim` fleet (not a product feature):
//! connects to every host in DIR/status.json with russh at a given
//! concurrency, reads the boot id, optionally reboots, and reports throughput.
//!
//! cargo run --example sim_load -- DIR [CONCURRENCY] [--reboot]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate, load_secret_key};
use russh::{ChannelMsg, client};

struct Client {
    host_key: PublicKey,
}

impl client::Handler for Client {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // The fleet has one host key; anything else is refused.
        Ok(
            matches!(key, PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.host_key.key_data()),
        )
    }
}

async fn exec(handle: &client::Handle<Client>, cmd: &str) -> anyhow::Result<(u32, String)> {
    let mut ch = handle.channel_open_session().await?;
    ch.exec(true, cmd).await?;
    let (mut code, mut out) = (None, Vec::new());
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::Data { data } => out.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            _ => {}
        }
    }
    Ok((
        code.context("no exit status")?,
        String::from_utf8_lossy(&out).into_owned(),
    ))
}

async fn one(
    addr: String,
    port: u16,
    config: Arc<client::Config>,
    key: Arc<russh::keys::PrivateKey>,
    host_key: PublicKey,
    reboot: bool,
) -> anyhow::Result<()> {
    let connect = client::connect(config, (addr.as_str(), port), Client { host_key });
    let mut handle = tokio::time::timeout(Duration::from_secs(30), connect)
        .await
        .context("connect timeout")??;
    let auth = handle
        .authenticate_publickey("root", PrivateKeyWithHashAlg::new(key, None))
        .await?;
    if !auth.success() {
        bail!("auth refused");
    }
    let (code, id) = exec(&handle, "cat /proc/sys/kernel/random/boot_id").await?;
    if code != 0 || id.trim().len() != 36 {
        bail!("bad boot id {id:?}");
    }
    if reboot {
        exec(&handle, "systemctl reboot").await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::path::PathBuf::from(
        args.first()
            .context("usage: sim_load DIR [CONCURRENCY] [--reboot]")?,
    );
    let concurrency: usize = args.get(1).and_then(|c| c.parse().ok()).unwrap_or(500);
    let reboot = args.iter().any(|a| a == "--reboot");
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("status.json"))?)?;
    let port = u16::try_from(status["ssh_port"].as_u64().context("ssh_port")?)?;
    let addrs: Vec<String> = status["hosts"]
        .as_object()
        .context("hosts")?
        .values()
        .filter_map(|h| h["address"].as_str().map(str::to_owned))
        .collect();
    let kh = std::fs::read_to_string(dir.join("known_hosts"))?;
    let host_key = PublicKey::from_openssh(
        kh.lines()
            .next()
            .and_then(|l| l.split_once(' '))
            .context("known_hosts")?
            .1,
    )?;
    let key = Arc::new(load_secret_key(dir.join("id_ed25519"), None)?);
    let config = Arc::new(client::Config::default());
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let failed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let n = addrs.len();
    let mut tasks = Vec::with_capacity(n);
    for addr in addrs {
        let (sem, config, key, hk, failed) = (
            sem.clone(),
            config.clone(),
            key.clone(),
            host_key.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            if let Err(e) = one(addr.clone(), port, config, key, hk, reboot).await
                && failed.fetch_add(1, Ordering::Relaxed) < 5
            {
                eprintln!("{addr}: {e:#}");
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    println!(
        "{n} hosts, concurrency {concurrency}: {} ok, {failed} failed in {secs:.2}s ({:.0} hosts/s)",
        n - failed,
        n as f64 / secs
    );
    Ok(())
}
