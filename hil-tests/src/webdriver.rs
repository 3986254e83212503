//! A minimal W3C WebDriver client for headless Chromium, for browser tests of
//! the sink's dashboard: finds Debian's `chromium` and `chromedriver`, starts the
//! driver on a free loopback port, opens a headless session, navigates, runs
//! scripts, waits for a condition in the page, reads the browser console and
//! takes screenshots.
//!
//! Only the handful of commands those tests use, as JSON over reqwest (no client
//! crate). It never downloads or manages browsers: a missing one is reported as
//! [`WebDriverError::NotInstalled`] so the test can skip.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Why the browser could not be driven.
#[derive(Debug, thiserror::Error)]
pub enum WebDriverError {
    /// `chromium` or `chromedriver` is not installed (a test may skip).
    #[error("{0} not found (Debian: apt-get install chromium chromium-driver)")]
    NotInstalled(&'static str),
    /// chromedriver did not start or did not become ready.
    #[error("chromedriver: {0}")]
    Start(String),
    /// The HTTP exchange with chromedriver failed.
    #[error("webdriver request {command}: {source}")]
    Http {
        command: String,
        #[source]
        source: reqwest::Error,
    },
    /// chromedriver answered a command with an error.
    #[error("webdriver {command}: {error}: {message}")]
    Command {
        command: String,
        error: String,
        message: String,
    },
    /// A page condition did not hold within the limit.
    #[error("timed out after {limit:?} waiting for {what}; last value {last}")]
    Timeout {
        what: String,
        limit: Duration,
        last: Value,
    },
}

/// The browser and its driver: `$CHROMIUM` / `$CHROMEDRIVER` if set, else
/// Debian's paths, else the first on `PATH`.
#[derive(Debug, Clone)]
pub struct Browser {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

impl Browser {
    /// Locates both binaries, or says which is missing.
    pub fn find() -> Result<Browser, WebDriverError> {
        let chromium = locate(
            "CHROMIUM",
            // The real binary first: /usr/bin/chromium is a shell wrapper.
            &["/usr/lib/chromium/chromium", "/usr/bin/chromium"],
            &["chromium", "chromium-browser"],
        )
        .ok_or(WebDriverError::NotInstalled("chromium"))?;
        let chromedriver = locate(
            "CHROMEDRIVER",
            &["/usr/bin/chromedriver"],
            &["chromedriver"],
        )
        .ok_or(WebDriverError::NotInstalled("chromedriver"))?;
        Ok(Browser {
            chromium,
            chromedriver,
        })
    }
}

fn locate(env: &str, paths: &[&str], names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    paths
        .iter()
        .map(PathBuf::from)
        .chain(
            names
                .iter()
                .flat_map(|n| on_path.iter().map(move |d| d.join(n))),
        )
        .find(|p| p.is_file())
}

/// A running chromedriver; killed on drop.
#[derive(Debug)]
pub struct ChromeDriver {
    child: Child,
    url: String,
    browser: Browser,
    http: reqwest::Client,
}

impl ChromeDriver {
    /// Starts chromedriver on a free loopback port (log in `log_path`) and
    /// waits (≤ 20 s) until it reports ready.
    pub async fn start(browser: &Browser, log_path: &Path) -> Result<ChromeDriver, WebDriverError> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| WebDriverError::Start(format!("no free port: {e}")))?
            .port();
        // Its own process group, which the browsers it starts join: dropping the
        // driver kills them all, even when a test panics before `Session::close`.
        let child = Command::new(&browser.chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log_path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                WebDriverError::Start(format!("{}: {e}", browser.chromedriver.display()))
            })?;
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            browser: browser.clone(),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = driver.call("GET", "/status", None).await;
            if ready.is_ok_and(|v| v["ready"] == true) {
                return Ok(driver);
            }
            if Instant::now() > deadline {
                return Err(WebDriverError::Start(format!(
                    "not ready on port {port} after 20 s (log: {})",
                    log_path.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens a headless Chromium session with a `width`×`height` window and the
    /// browser console kept (see [`Session::console`]).
    pub async fn session(
        &self,
        width: u32,
        height: u32,
        profile: &Path,
    ) -> Result<Session<'_>, WebDriverError> {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": self.browser.chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let answer = self.call("POST", "/session", Some(caps)).await?;
        let id = answer["sessionId"]
            .as_str()
            .ok_or_else(|| WebDriverError::Start(format!("no session id in {answer}")))?;
        Ok(Session {
            driver: self,
            path: format!("/session/{id}"),
        })
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        let command = format!("{method} {path}");
        let http = |source| WebDriverError::Http {
            command: command.clone(),
            source,
        };
        let url = format!("{}{path}", self.url);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let answer: Value = request
            .send()
            .await
            .map_err(http)?
            .json()
            .await
            .map_err(http)?;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            return Err(WebDriverError::Command {
                command,
                error: error.to_owned(),
                message: value["message"].as_str().unwrap_or_default().to_owned(),
            });
        }
        Ok(value)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // SIGKILL to the whole group (driver and browsers), then reap the driver.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session (one window). End it with [`Session::close`].
#[derive(Debug)]
pub struct Session<'a> {
    driver: &'a ChromeDriver,
    path: String,
}

impl Session<'_> {
    /// Loads `url` and returns once the document has loaded.
    pub async fn goto(&self, url: &str) -> Result<(), WebDriverError> {
        self.command("POST", "/url", json!({ "url": url }))
            .await
            .map(drop)
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub async fn execute(&self, script: &str, args: &[Value]) -> Result<Value, WebDriverError> {
        self.command(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
        .await
    }

    /// Re-evaluates `script` every 50 ms until it returns something other than
    /// `null`/`false`, and returns that; [`WebDriverError::Timeout`] after `limit`.
    pub async fn wait_for(
        &self,
        what: &str,
        script: &str,
        args: &[Value],
        limit: Duration,
    ) -> Result<Value, WebDriverError> {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.execute(script, args).await?;
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return Ok(value);
            }
            if Instant::now() > deadline {
                return Err(WebDriverError::Timeout {
                    what: what.to_owned(),
                    limit,
                    last: value,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The browser console since the last call (`[{level, message, timestamp}]`).
    pub async fn console(&self) -> Result<Vec<Value>, WebDriverError> {
        let v = self
            .command("POST", "/se/log", json!({ "type": "browser" }))
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// A PNG of the window's viewport.
    pub async fn screenshot(&self) -> Result<Vec<u8>, WebDriverError> {
        let v = self.command("GET", "/screenshot", Value::Null).await?;
        let text = v.as_str().unwrap_or_default();
        base64_decode(text).ok_or_else(|| WebDriverError::Command {
            command: "GET /screenshot".into(),
            error: "bad base64".into(),
            message: format!("{} characters", text.len()),
        })
    }

    /// Ends the session (closes the browser).
    pub async fn close(self) -> Result<(), WebDriverError> {
        self.driver.call("DELETE", &self.path, None).await.map(drop)
    }

    async fn command(
        &self,
        method: &str,
        path: &str,
        body: Value,
    ) -> Result<Value, WebDriverError> {
        let body = (!body.is_null()).then_some(body);
        self.driver
            .call(method, &format!("{}{path}", self.path), body)
            .await
    }
}

/// Standard base64 (with padding, whitespace ignored); `None` on a bad character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_round_trips_known_vectors() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode("iVBO\nRw0K").unwrap(), b"\x89PNG\r\n");
        assert!(base64_decode("Zm9v!").is_none());
    }
}
