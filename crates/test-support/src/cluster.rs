//! A private cluster of `nats-server` processes with JetStream and user+password authentication,
//! for tests of what survives the loss of a node.
//!
//! Each node listens on loopback ports the kernel picked for the test: a clustered JetStream needs
//! its routes configured before it starts, so every port is reserved first (a listener the test
//! holds) and released just before its node binds it. A node stopped with
//! [`NatsCluster::stop_node`] is killed, as a crash would stop it, and its store stays. Dropping
//! the cluster kills every node and removes the stores. Finding the binary is
//! [`crate::nats_server_binary`]'s job; the single-server fixture is [`crate::NatsServer`].

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a node may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the cluster may take to elect the leaders that replicated streams need.
const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// One node: its ports, its store, and its process while it runs.
struct Node {
    name: String,
    client_port: u16,
    cluster_port: u16,
    /// Listeners holding both ports until the node starts.
    reserved: Option<(TcpListener, TcpListener)>,
    store: PathBuf,
    child: Option<Child>,
}

/// A private NATS cluster; every client must log in as [`NatsCluster::user`].
pub struct NatsCluster {
    nodes: Vec<Node>,
    user: String,
    password: String,
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` nodes that accept the one user `user` with `password`.
    ///
    /// Panics with installation advice when no `nats-server` can be found, and with the node's
    /// log line when a node fails to start.
    pub fn start(size: usize, user: &str, password: &str) -> NatsCluster {
        assert!(size >= 1, "a cluster has at least one node");
        let dir = tempfile::Builder::new()
            .prefix("nats-cluster-")
            .tempdir()
            .expect("create a temporary directory for the cluster");
        let mut cluster = NatsCluster {
            nodes: Vec::new(),
            user: user.to_owned(),
            password: password.to_owned(),
            dir,
        };
        for index in 0..size {
            let name = format!("node-{}", index + 1);
            let (client, cluster_listener) = (reserve_port(), reserve_port());
            cluster.nodes.push(Node {
                store: cluster.dir.path().join(&name),
                name,
                client_port: local_port(&client),
                cluster_port: local_port(&cluster_listener),
                reserved: Some((client, cluster_listener)),
                child: None,
            });
        }
        for index in 0..size {
            cluster.spawn(index);
        }
        cluster
    }

    /// The user every client logs in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// That user's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Every node's client URL, separated by commas, as `NATS_URL` takes them.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = (0..self.nodes.len()).map(|i| self.url(i)).collect();
        urls.join(",")
    }

    /// The client URL of node `index` (from 0).
    pub fn url(&self, index: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[index].client_port)
    }

    /// The `server_name` of node `index`, as stream and consumer infos name their leader.
    pub fn node_name(&self, index: usize) -> &str {
        &self.nodes[index].name
    }

    /// The index of the node called `name`.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// Whether node `index` is running.
    pub fn is_running(&self, index: usize) -> bool {
        self.nodes[index].child.is_some()
    }

    /// Connects to the cluster as its user, through any node that answers.
    pub async fn connect(&self) -> async_nats::Client {
        async_nats::ConnectOptions::with_user_and_password(self.user.clone(), self.password.clone())
            .max_reconnects(None)
            .connect(
                (0..self.nodes.len())
                    .map(|i| self.url(i))
                    .collect::<Vec<_>>(),
            )
            .await
            .expect("connect to the test cluster")
    }

    /// Waits until the cluster can create (and delete) a stream with one replica per node, which
    /// needs its JetStream leaders elected.
    pub async fn wait_for_jetstream(&self) {
        let js = async_nats::jetstream::new(self.connect().await);
        let config = async_nats::jetstream::stream::Config {
            name: "CLUSTER_READY_PROBE".into(),
            subjects: vec!["cluster.ready.probe".into()],
            num_replicas: self.nodes.len(),
            ..Default::default()
        };
        let deadline = Instant::now() + JETSTREAM_TIMEOUT;
        loop {
            if js.create_stream(config.clone()).await.is_ok() {
                let _ = js.delete_stream(&config.name).await;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster could not create a stream with {} replicas within \
                 {JETSTREAM_TIMEOUT:?}",
                self.nodes.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills node `index`, as a crash or a power loss would stop it; its store stays.
    pub fn stop_node(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn(&mut self, index: usize) {
        let config_path = self
            .dir
            .path()
            .join(format!("{}.conf", self.nodes[index].name));
        std::fs::write(&config_path, self.config_text(index)).expect("write a node's config");

        let binary = crate::nats_server_binary();
        // Released as late as possible: the node binds both ports a moment later.
        drop(self.nodes[index].reserved.take());
        let mut child = Command::new(&binary)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", binary.display()));
        let stderr = child.stderr.take().expect("stderr of nats-server is piped");
        let node = &mut self.nodes[index];
        node.child = Some(child);
        wait_until_ready(stderr, &node.name);
    }

    /// Node `index`'s configuration: its ports, the one user, and routes to every other node (a
    /// single node has no cluster block, which JetStream would refuse without routes).
    fn config_text(&self, index: usize) -> String {
        let node = &self.nodes[index];
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .map(|(_, peer)| format!("    nats-route://127.0.0.1:{}", peer.cluster_port))
            .collect();
        let cluster = if routes.is_empty() {
            String::new()
        } else {
            format!(
                "cluster {{\n  name: test-cluster\n  listen: 127.0.0.1:{}\n  routes: [\n{}\n  ]\n}}\n",
                node.cluster_port,
                routes.join("\n")
            )
        };
        format!(
            "server_name: {name}\n\
             listen: 127.0.0.1:{client}\n\
             authorization {{\n  users: [ {{ user: {user:?}, password: {password:?} }} ]\n}}\n\
             jetstream {{\n  store_dir: {store:?}\n}}\n\
             {cluster}",
            name = node.name,
            client = node.client_port,
            user = self.user,
            password = self.password,
            store = node.store.display().to_string(),
        )
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.stop_node(index);
        }
    }
}

/// A free loopback port, held by the returned listener until it is dropped.
fn reserve_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("reserve a loopback port")
}

fn local_port(listener: &TcpListener) -> u16 {
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// Reads a node's log until it says it is ready, then keeps draining it.
fn wait_until_ready(stderr: ChildStderr, name: &str) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("Server is ready") {
                let _ = tx.send(Ok(()));
            }
            if line.contains("[FTL]") {
                let _ = tx.send(Err(line.clone()));
            }
        }
        let _ = tx.send(Err("nats-server exited before it was ready".to_owned()));
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(Ok(())) => {}
        Ok(Err(line)) => panic!("cluster {name} failed to start: {line}"),
        Err(_) => panic!("cluster {name} was not ready within {READY_TIMEOUT:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_replicated_stream_keeps_its_messages_when_a_node_dies() {
        let mut cluster = NatsCluster::start(3, "tester", "s3cret");
        cluster.wait_for_jetstream().await;
        let js = async_nats::jetstream::new(cluster.connect().await);
        let mut stream = js
            .create_stream(async_nats::jetstream::stream::Config {
                name: "PROBE".into(),
                subjects: vec!["probe".into()],
                num_replicas: 3,
                ..Default::default()
            })
            .await
            .expect("create a stream with 3 replicas");
        js.publish("probe", "one".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        let leader = stream.info().await.expect("info").cluster.clone();
        let leader = leader
            .and_then(|c| c.leader)
            .expect("the stream has a leader");

        cluster.stop_node(cluster.node_index(&leader).expect("the leader is a node"));

        let deadline = Instant::now() + JETSTREAM_TIMEOUT;
        loop {
            let published = js.publish("probe", "two".into()).await;
            if let Ok(ack) = published {
                if ack.await.is_ok() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "no new leader took the stream");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let info = stream.info().await.expect("info after the failover");
        assert_eq!(info.state.messages, 2);
    }

    #[tokio::test]
    async fn a_client_without_the_password_is_refused() {
        let cluster = NatsCluster::start(1, "tester", "s3cret");
        let refused =
            async_nats::ConnectOptions::with_user_and_password("tester".into(), "wrong".into())
                .connect(cluster.url(0))
                .await;
        assert!(refused.is_err(), "a wrong password must not connect");
        assert!(cluster.is_running(0));
        assert_eq!(cluster.node_name(0), "node-1");
    }
}
