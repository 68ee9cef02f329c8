//! `bridge probe <url>`: exits 0 when the URL answers HTTP 200, 1 otherwise.
//!
//! It exists for container health checks: the runtime image has no curl or wget, and every worker
//! serves `/readyz` on `METRICS_LISTEN`, so `bridge probe http://127.0.0.1:9090/readyz` is the
//! whole check. It speaks just enough HTTP/1.1 for that: one GET over plain TCP, the status line
//! read back, the rest ignored, all within `--timeout`. TLS and redirects are left out on purpose:
//! a probe asks a process on its own host, and a redirect is not a ready answer.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest status line read; a real one is about 20 bytes.
const MAX_STATUS_LINE: u64 = 1024;

/// Flags of `bridge probe`.
#[derive(Args)]
pub struct ProbeArgs {
    /// The URL to ask, `http://host:port/path`.
    url: String,

    /// How long the whole probe may take.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Where a probe goes: `host:port` to connect to and the path with its query.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    authority: String,
    path: String,
}

impl Target {
    fn parse(text: &str) -> anyhow::Result<Target> {
        let url = url::Url::parse(text).with_context(|| format!("invalid url {text:?}"))?;
        ensure!(
            url.scheme() == "http",
            "probe speaks plain http only, not {text:?}"
        );
        let host = url
            .host_str()
            .with_context(|| format!("url {text:?} names no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let mut path = url.path().to_owned();
        if let Some(query) = url.query() {
            path = format!("{path}?{query}");
        }
        Ok(Target {
            authority: format!("{host}:{port}"),
            path,
        })
    }
}

/// Runs `bridge probe`; an error (exit code 1) means "not ready".
pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let target = Target::parse(&args.url)?;
    let status = tokio::time::timeout(args.timeout, status_of(&target))
        .await
        .with_context(|| format!("{} did not answer within {:?}", args.url, args.timeout))??;
    if status != 200 {
        bail!("{} answered {status}", args.url);
    }
    Ok(())
}

/// Sends one GET and returns the status code of the answer.
async fn status_of(target: &Target) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(&target.authority)
        .await
        .with_context(|| format!("connect {}", target.authority))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: bridge-probe\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream
        .write_all(request.as_bytes())
        .await
        .with_context(|| format!("send to {}", target.authority))?;

    let mut line = String::new();
    BufReader::new(stream.take(MAX_STATUS_LINE))
        .read_line(&mut line)
        .await
        .with_context(|| format!("read from {}", target.authority))?;
    parse_status_line(&line)
}

/// Reads the code from `HTTP/1.1 200 OK`.
fn parse_status_line(line: &str) -> anyhow::Result<u16> {
    let mut words = line.split_whitespace();
    let version = words.next().unwrap_or_default();
    ensure!(
        version.starts_with("HTTP/"),
        "not an http answer: {:?}",
        line.trim_end()
    );
    words
        .next()
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status code in {:?}", line.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Serves one connection with `answer` and returns the URL of `path` on it.
    async fn serve_once(answer: &'static str, path: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await.unwrap();
            socket.write_all(answer.as_bytes()).await.unwrap();
        });
        format!("http://{addr}{path}")
    }

    fn args(url: String) -> ProbeArgs {
        ProbeArgs {
            url,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn a_200_answer_is_ready() {
        let url = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", "/readyz").await;
        run(args(url)).await.unwrap();
    }

    #[tokio::test]
    async fn a_503_answer_is_not_ready() {
        let answer = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
        let url = serve_once(answer, "/readyz").await;
        let error = run(args(url)).await.unwrap_err();
        assert!(error.to_string().contains("answered 503"), "{error}");
    }

    #[tokio::test]
    async fn a_closed_port_is_not_ready() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(run(args(format!("http://{addr}/readyz"))).await.is_err());
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let probe = ProbeArgs {
            url: format!("http://{addr}/readyz"),
            timeout: Duration::from_millis(200),
        };
        let error = run(probe).await.unwrap_err();
        assert!(error.to_string().contains("did not answer"), "{error}");
        drop(listener);
    }

    #[test]
    fn urls_keep_their_query_and_refuse_https() {
        let target = Target::parse("http://127.0.0.1:9090/readyz?x=1").unwrap();
        assert_eq!(target.authority, "127.0.0.1:9090");
        assert_eq!(target.path, "/readyz?x=1");
        assert_eq!(
            Target::parse("http://[::1]:9090/").unwrap().authority,
            "[::1]:9090"
        );
        assert!(Target::parse("https://host/readyz").is_err());
        assert!(parse_status_line("garbage\r\n").is_err());
        assert_eq!(
            parse_status_line("HTTP/1.0 204 No Content\r\n").unwrap(),
            204
        );
    }
}
