//! Private Postgres and NATS servers for the tests that stop and restart them (outages): each
//! on a free port with its data in a temporary directory, never the machine's own servers.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use agentyard_cli::dev::{pg_binary, pg_command};
use anyhow::{Context, bail};
use tokio::process::{Child, Command};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// `n` distinct free ports (all bound at once, so none is handed out twice).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).filter_map(|_| std::net::TcpListener::bind("127.0.0.1:0").ok()).collect();
    listeners.iter().filter_map(|l| l.local_addr().ok()).map(|a| a.port()).collect()
}

fn temp_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ay-{kind}-{}", uuid::Uuid::now_v7().simple()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A private Postgres.
pub struct PrivatePostgres {
    data: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// Initializes and starts one.
    ///
    /// # Errors
    /// When `initdb` or `pg_ctl` fails.
    pub async fn start() -> anyhow::Result<Self> {
        let data = temp_dir("pg");
        if is_root() {
            let _ =
                std::process::Command::new("chown").args(["-R", "postgres"]).arg(&data).status();
        }
        let status = pg_command(&pg_binary("initdb"))
            .args(["-U", "postgres", "--auth=trust", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .context("cannot run initdb")?;
        if !status.success() {
            bail!("initdb failed in {}", data.display());
        }
        let pg = Self { data, port: free_port() };
        pg.up().await?;
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts it (again, on the same port and data).
    ///
    /// # Errors
    /// When `pg_ctl start` fails.
    pub async fn up(&self) -> anyhow::Result<()> {
        let options = format!("-p {} -h 127.0.0.1 -k {}", self.port, self.data.display());
        let status = pg_command(&pg_binary("pg_ctl"))
            .args(["start", "-w", "-t", "60", "-o", &options, "-l"])
            .arg(self.data.join("server.log"))
            .arg("-D")
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .context("cannot run pg_ctl")?;
        if !status.success() {
            bail!(
                "the private postgres did not start; see {}",
                self.data.join("server.log").display()
            );
        }
        Ok(())
    }

    /// Stops it at once (`immediate`: like a crash).
    pub async fn down(&self) {
        let _ = pg_command(&pg_binary("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new(if is_root() { "runuser" } else { "true" })
            .args(if is_root() { vec!["-u", "postgres", "--"] } else { vec![] })
            .arg(pg_binary("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// A private nats-server with JetStream.
pub struct PrivateNats {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateNats {
    /// Starts one.
    ///
    /// # Errors
    /// When `nats-server` cannot be started.
    pub async fn start() -> anyhow::Result<Self> {
        let mut nats = Self { dir: temp_dir("nats"), port: free_port(), child: None };
        nats.up().await?;
        Ok(nats)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port and store directory).
    ///
    /// # Errors
    /// When `nats-server` cannot be started or does not answer.
    pub async fn up(&mut self) -> anyhow::Result<()> {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start nats-server")?;
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the private nats-server did not listen on {}", self.port)
    }

    /// Kills it (`kill -9`).
    pub async fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One node of a [`PrivateNatsCluster`].
struct Node {
    name: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// Three nats-server processes with JetStream clustered on loopback (`--cluster`, `--routes`),
/// each with a store directory of its own: what `docs/nats-cluster.md` describes.
pub struct PrivateNatsCluster {
    nodes: Vec<Node>,
    cluster_ports: Vec<u16>,
    cluster_name: String,
}

impl PrivateNatsCluster {
    /// Starts three nodes and waits until JetStream answers (its meta leader is elected).
    ///
    /// # Errors
    /// When a node cannot be started or JetStream does not come up within 60 s.
    pub async fn start() -> anyhow::Result<Self> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let ports = free_ports(6);
        let mut cluster = Self {
            nodes: (0..3)
                .map(|i| Node {
                    name: format!("n{i}-{}", &id[24..]),
                    port: ports[i],
                    dir: temp_dir(&format!("nats-n{i}")),
                    child: None,
                })
                .collect(),
            cluster_ports: ports[3..].to_vec(),
            cluster_name: format!("ay-{}", &id[24..]),
        };
        for i in 0..3 {
            cluster.up(i).await?;
        }
        cluster.wait_jetstream().await?;
        Ok(cluster)
    }

    /// Every node's URL, comma-separated (a `NATS_URL`).
    pub fn url(&self) -> String {
        let urls: Vec<String> =
            self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.port)).collect();
        urls.join(",")
    }

    /// Starts node `i` (again, on the same ports and store).
    ///
    /// # Errors
    /// When nats-server cannot be started or does not listen.
    pub async fn up(&mut self, i: usize) -> anyhow::Result<()> {
        let routes: Vec<String> =
            self.cluster_ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
        let node = &mut self.nodes[i];
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &node.port.to_string(), "-n", &node.name])
            .args(["--cluster_name", &self.cluster_name, "--cluster"])
            .arg(format!("nats://127.0.0.1:{}", self.cluster_ports[i]))
            .args(["--routes", &routes.join(",")])
            .arg("-sd")
            .arg(&node.dir)
            .arg("-l")
            .arg(node.dir.join("server.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start nats-server")?;
        node.child = Some(child);
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", node.port)).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("node {} did not listen on {}", node.name, node.port)
    }

    /// The index of the node with this server name (as stream infos name their leader).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Kills node `i` (`kill -9`).
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill().await;
        }
    }

    async fn wait_jetstream(&self) -> anyhow::Result<()> {
        let client = async_nats::connect(crate::nats_addrs(&self.url())).await?;
        let js = async_nats::jetstream::new(client);
        // Ready when a replicated stream can be created (a meta leader, three peers).
        let probe = async_nats::jetstream::stream::Config {
            name: format!("PROBE_{}", self.cluster_name.replace('-', "_")),
            subjects: vec![format!("probe.{}", self.cluster_name)],
            num_replicas: 3,
            ..Default::default()
        };
        for _ in 0..600 {
            if js.create_stream(probe.clone()).await.is_ok() {
                let _ = js.delete_stream(&probe.name).await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(self.nodes[0].dir.join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        bail!("JetStream of the cluster never answered; node 0's log ends:\n{}", tail.join("\n"))
    }
}

impl Drop for PrivateNatsCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(c) = n.child.as_mut() {
                let _ = c.start_kill();
            }
            let _ = std::fs::remove_dir_all(&n.dir);
        }
    }
}
