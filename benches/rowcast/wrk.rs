//! Load from `wrk` (Debian package `wrk`), a C load generator, when it is installed: it
//! costs the 2-core machine far less CPU than an in-process client, as pgbench's client does.

use std::path::Path;

use super::{Figures, READ_ROWS, TENANT};

pub fn available() -> bool {
    std::process::Command::new("wrk").arg("--version").output().is_ok()
}

fn headers(token: &str, extra: &str) -> String {
    format!(r#"{{["Authorization"] = "Bearer {token}", {extra}}}"#)
}

pub fn create_script(token: &str) -> String {
    let headers = headers(token, r#"["Content-Type"] = "application/json", ["Prefer"] = "return=minimal""#);
    format!(
        r#"local threads = {{}}
function setup(thread) thread:set("tid", #threads) table.insert(threads, thread) end
function init(args) counter = 0 base = 5000000000 + tid * 100000000 end
request = function()
  counter = counter + 1
  local body = string.format('{{"tenant_id":"{TENANT}","phone":"+1%d","first_name":"Bench"}}', base + counter)
  return wrk.format("POST", "/rest/contacts", {headers}, body)
end
"#
    )
}

pub fn read_script(token: &str) -> String {
    let headers = headers(token, r#"["Accept"] = "application/vnd.pgrst.object+json""#);
    // Every request is formatted once per thread, in `init`: `wrk.format` per request (a Lua
    // table of headers and a string of ~400 bytes each time) cost the shared 2-core machine
    // ~15 µs of wrk CPU per request, taken from the server being measured.
    format!(
        r#"local requests = {{}}
function init(args)
  for i = 1, {READ_ROWS} do
    requests[i] = wrk.format("GET", string.format("/rest/contacts?id=eq.00000000-0000-4000-8000-%012x", i), {headers})
  end
end
request = function()
  return requests[math.random(1, {READ_ROWS})]
end
"#
    )
}

fn millis(value: &str) -> f64 {
    let (number, factor) = if let Some(v) = value.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = value.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = value.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (value, 1.0)
    };
    number.parse::<f64>().unwrap_or(0.0) * factor
}

fn field<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.trim().strip_prefix(prefix)).map(str::trim)
}

/// Runs wrk against `base` with `script` and reads its figures.
pub fn run(base: &str, script: &str, clients: usize, seconds: u64) -> anyhow::Result<Figures> {
    let file = tempfile::Builder::new().suffix(".lua").tempfile()?;
    std::fs::write(file.path(), script)?;
    let out = std::process::Command::new("wrk")
        .args(["--latency", "-t", "2", "-c"])
        .arg(clients.to_string())
        .arg("-d")
        .arg(format!("{seconds}s"))
        .arg("-s")
        .arg(file.path() as &Path)
        .arg(base)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    anyhow::ensure!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let errors = field(&text, "Non-2xx or 3xx responses:").and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Figures {
        per_second: field(&text, "Requests/sec:").and_then(|v| v.parse().ok()).unwrap_or(0.0),
        p50_ms: field(&text, "50%").map(millis).unwrap_or(0.0),
        p99_ms: field(&text, "99%").map(millis).unwrap_or(0.0),
        errors,
    })
}
