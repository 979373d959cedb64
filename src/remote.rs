//! `janus-recorder rooms`, `record` and `recordings`: the HTTP API from the command line,
//! like `status`: the daemon's address and a token come from its config, so the same config
//! file is all that is needed.
//!
//! Exit status: 0 done; 1 the API refused (its message is printed); 2 the config cannot be
//! used (or has no HTTP server); 3 the daemon cannot be reached.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::config::{Config, EXIT_CONFIG, Scope};
use crate::status::EXIT_NOT_RUNNING;

/// Exit status when the API answered with an error.
pub const EXIT_REFUSED: i32 = 1;

/// What every command on the API takes.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// The daemon's config file: where its API listens, and a token for it.
    #[arg(long, default_value = "/etc/janus-recorder/config.toml")]
    pub config: PathBuf,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Where and how to call the API of the daemon of one config.
struct Remote {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

/// A failed call, with the exit status it means.
struct Failure {
    code: i32,
    message: String,
}

impl Remote {
    /// From the config: its `[http] listen` (a wildcard address reached on loopback) and a
    /// token with at least `needs` (a `read` token preferred for reading).
    fn new(args: &RemoteArgs, needs: Scope) -> Result<Remote, Failure> {
        let config = Config::load(&args.config).map_err(|e| Failure {
            code: EXIT_CONFIG,
            message: e.to_string(),
        })?;
        let Some(listen) = config.http_listen() else {
            return Err(Failure {
                code: EXIT_CONFIG,
                message: format!(
                    "the API is off: set [http] listen in {}",
                    args.config.display()
                ),
            });
        };
        let mut tokens: Vec<_> = config
            .tokens()
            .iter()
            .filter(|t| t.scope >= needs)
            .collect();
        tokens.sort_by_key(|t| t.scope);
        let token = tokens.first().map(|t| t.token.expose().to_owned());
        if token.is_none() && !config.tokens().is_empty() {
            return Err(Failure {
                code: EXIT_CONFIG,
                message: format!("no token with the {needs:?} scope in [[http.tokens]]"),
            });
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Failure {
                code: 1,
                message: e.to_string(),
            })?;
        Ok(Remote {
            base: format!("http://{}/api/v1", crate::status::reachable(listen)),
            token,
            client,
        })
    }

    /// Sends one request; the answer's JSON (`null` for an empty body).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| Failure {
            code: EXIT_NOT_RUNNING,
            message: format!(
                "janus-recorder is not running, or not serving its API at {}: {e}",
                self.base
            ),
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let json: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(json);
        }
        let message = json["error"]["message"]
            .as_str()
            .map_or_else(|| json.to_string(), str::to_owned);
        Err(Failure {
            code: EXIT_REFUSED,
            message: format!("the API refused ({status}): {message}"),
        })
    }
}

/// Runs one command's future on a small runtime; prints a failure and returns the status.
fn run(f: impl std::future::Future<Output = Result<(), Failure>>) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return 1;
        }
    };
    match runtime.block_on(f) {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("{}", crate::text::Escaped(&f.message));
            f.code
        }
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A path segment, percent-encoded where needed.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A JSON value as text for a table (strings without quotes).
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => crate::text::Escaped(s).to_string(),
        other => other.to_string(),
    }
}

/// `janus-recorder rooms`: every room the daemon records, its source and state.
pub fn rooms(args: &RemoteArgs) -> i32 {
    run(async {
        let remote = Remote::new(args, Scope::Read)?;
        let v = remote.call(reqwest::Method::GET, "/rooms", None).await?;
        if args.json {
            print_json(&v);
            return Ok(());
        }
        let rooms = v["rooms"].as_array().cloned().unwrap_or_default();
        if rooms.is_empty() {
            println!("no rooms");
        }
        for r in rooms {
            let mut line = format!(
                "{} {}  {}  {}  {} feeds",
                cell(&r["server"]),
                cell(&r["room"]),
                cell(&r["source"]),
                cell(&r["state"]),
                cell(&r["feeds_recording"])
            );
            if let Some(why) = r["reason"].as_str() {
                line.push_str(&format!("  ({})", crate::text::Escaped(why)));
            }
            if let Some(until) = r["until"].as_str() {
                line.push_str(&format!("  until {until}"));
            }
            println!("{line}");
        }
        Ok(())
    })
}

/// `janus-recorder record SERVER ROOM [--stop]`: starts (or stops) recording a room.
pub fn record(args: &RemoteArgs, server: &str, room: &str, stop: bool, body: Option<Value>) -> i32 {
    run(async {
        let remote = Remote::new(args, Scope::Control)?;
        let path = format!("/rooms/{}/{}", segment(server), segment(room));
        let method = if stop {
            reqwest::Method::DELETE
        } else {
            reqwest::Method::PUT
        };
        let v = remote
            .call(method, &path, if stop { None } else { body })
            .await?;
        if args.json {
            print_json(&v);
        } else if stop {
            println!("room {room}: stopped; its recordings are finalized");
        } else {
            println!("room {room}: recording");
        }
        Ok(())
    })
}

/// `janus-recorder recordings [--room R]`: the recordings, oldest first, every page.
pub fn recordings(args: &RemoteArgs, room: Option<&str>) -> i32 {
    run(async {
        let remote = Remote::new(args, Scope::Read)?;
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = "/recordings?limit=1000".to_owned();
            if let Some(r) = room {
                path.push_str(&format!("&room={}", segment(r)));
            }
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", segment(c)));
            }
            let v = remote.call(reqwest::Method::GET, &path, None).await?;
            all.extend(v["recordings"].as_array().cloned().unwrap_or_default());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        if args.json {
            print_json(&Value::Array(all));
            return Ok(());
        }
        if all.is_empty() {
            println!("no recordings");
        }
        for r in all {
            let ms = r["duration_ms"].as_u64().unwrap_or(0);
            println!(
                "{}  {}  {}:{:02}  {} bytes  {}",
                cell(&r["id"]),
                cell(&r["state"]),
                ms / 60_000,
                ms / 1000 % 60,
                cell(&r["bytes"]),
                cell(&r["sidecar"]["display"])
            );
        }
        Ok(())
    })
}
