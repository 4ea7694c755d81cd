//! The HTTP API behind the page, independent of the server crate: a method and a URL in, a status,
//! a content type and a body out. Every failure is a 4xx/5xx with `{"error": "..."}`.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /api/runs` | the runs: name, dataset, checkpoints (step, errors), sample steps, live |
//! | `GET /api/runs/{run}/metrics?after=STEP` | metrics.jsonl as `{"records": [...], "skipped": n}` |
//! | `GET /api/runs/{run}/config` | config.json (or the checkpoint's configuration) |
//! | `GET /api/runs/{run}/sample.png?seed=S&n=N&step=K` | a grid of N samples (toy data: the figure) |
//! | `GET /api/runs/{run}/walk.png?a=S1[:I]&b=S2[:J]&steps=K&mode=lerp\|slerp\|both&step=K` | an interpolation strip |
//! | `GET /api/runs/{run}/samples/step_N.png` | a picture of the run's `samples/` |

use super::generate::{Generator, Latent, Task, WalkMode, MAX_SAMPLES, MAX_WALK_STEPS};
use super::runs::{self, RunSet};
use super::ApiError;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const PAGE_HTML: &str = include_str!("page.html");
const PAGE_JS: &str = include_str!("page.js");
const PAGE_CSS: &str = include_str!("page.css");

/// Default number of samples in a grid.
pub const DEFAULT_N: usize = 64;
/// Default number of frames in a walk.
pub const DEFAULT_WALK_STEPS: usize = 10;

pub struct App {
    pub runs: RunSet,
    pub gen: Generator,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply { status: 200, content_type, body: body.into() }
    }
    fn json(v: &Value) -> Reply {
        Reply::ok("application/json", v.to_string())
    }
    pub fn error(e: &ApiError) -> Reply {
        Reply {
            status: e.status,
            content_type: "application/json",
            body: json!({ "error": e.message }).to_string().into(),
        }
    }
}

impl App {
    pub fn new(runs: RunSet, gen: Generator) -> App {
        App { runs, gen }
    }

    /// Answers one request.
    pub fn handle(&self, method: &str, url: &str) -> Reply {
        if method != "GET" && method != "HEAD" {
            return Reply::error(&ApiError::new(405, format!("{method}: only GET is served")));
        }
        self.route(url).unwrap_or_else(|e| Reply::error(&e))
    }

    fn route(&self, url: &str) -> Result<Reply, ApiError> {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(s).ok_or_else(|| ApiError::bad_request(format!("{s:?}: invalid %-escape in path"))))
            .collect::<Result<_, _>>()?;
        let q = Query::parse(query)?;
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        match seg.as_slice() {
            [] | ["index.html"] => Ok(Reply::ok("text/html; charset=utf-8", PAGE_HTML)),
            ["page.js"] => Ok(Reply::ok("text/javascript; charset=utf-8", PAGE_JS)),
            ["page.css"] => Ok(Reply::ok("text/css; charset=utf-8", PAGE_CSS)),
            ["favicon.ico"] => Ok(Reply { status: 204, content_type: "image/x-icon", body: vec![] }),
            ["api", "runs"] => Ok(self.list()),
            ["api", "runs", run, rest @ ..] => self.run_route(run, rest, &q),
            _ => Err(ApiError::not_found(format!("{path}: no such page or API (see GET /api/runs)"))),
        }
    }

    fn list(&self) -> Reply {
        let runs: Vec<Value> = self
            .runs
            .names()
            .iter()
            .filter_map(|n| self.runs.resolve(n).ok().map(|dir| runs::summary(n, &dir)))
            .collect();
        Reply::json(
            &json!({ "root": self.runs.root().display().to_string(), "device": self.gen.device_name(), "runs": runs }),
        )
    }

    fn run_route(&self, run: &str, rest: &[&str], q: &Query) -> Result<Reply, ApiError> {
        let dir = self.runs.resolve(run)?;
        match rest {
            [] => Ok(Reply::json(&runs::summary(run, &dir))),
            ["metrics"] => {
                q.only(&["after"])?;
                let (records, skipped) = runs::metrics(&dir, q.u64("after")?);
                Ok(Reply::json(&json!({ "records": records, "skipped": skipped })))
            }
            ["config"] => {
                q.only(&[])?;
                Ok(Reply::json(&runs::config(run, &dir)?))
            }
            ["samples", name] => Ok(Reply::ok("image/png", runs::sample_file(run, &dir, name)?)),
            ["sample.png"] => {
                q.only(&["seed", "n", "step"])?;
                let seed = q.u64("seed")?.unwrap_or(0);
                let n = q.count("n", 1, MAX_SAMPLES)?.unwrap_or(DEFAULT_N);
                let ck = runs::choose_checkpoint(run, &dir, q.u64("step")?)?;
                Ok(Reply::ok("image/png", self.gen.run(&ck.dir, Task::Grid { seed, n })?))
            }
            ["walk.png"] => {
                q.only(&["a", "b", "steps", "mode", "step"])?;
                let a = q.latent("a")?.unwrap_or(Latent { seed: 0, index: 0 });
                let b = q.latent("b")?.unwrap_or(Latent { seed: 1, index: 0 });
                let steps = q.count("steps", 2, MAX_WALK_STEPS)?.unwrap_or(DEFAULT_WALK_STEPS);
                let mode = match q.get("mode") {
                    None | Some("lerp") => WalkMode::Lerp,
                    Some("slerp") => WalkMode::Slerp,
                    Some("both") => WalkMode::Both,
                    Some(m) => return Err(ApiError::bad_request(format!("mode={m}: expected lerp, slerp or both"))),
                };
                let ck = runs::choose_checkpoint(run, &dir, q.u64("step")?)?;
                Ok(Reply::ok("image/png", self.gen.run(&ck.dir, Task::Walk { a, b, steps, mode })?))
            }
            _ => Err(ApiError::not_found(format!(
                "/api/runs/{run}/{}: no such API (metrics, config, sample.png, walk.png, samples/step_N.png)",
                rest.join("/")
            ))),
        }
    }
}

/// A URL's query parameters, each given at most once.
struct Query(BTreeMap<String, String>);

impl Query {
    fn parse(q: &str) -> Result<Query, ApiError> {
        let mut m = BTreeMap::new();
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| {
                percent_decode(&s.replace('+', " "))
                    .ok_or_else(|| ApiError::bad_request(format!("{pair:?}: invalid %-escape in query")))
            };
            let (k, v) = (dec(k)?, dec(v)?);
            if m.insert(k.clone(), v).is_some() {
                return Err(ApiError::bad_request(format!("{k}: given more than once")));
            }
        }
        Ok(Query(m))
    }

    /// Refuses parameters other than `known` (a misspelt one would otherwise be silently ignored).
    fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) if known.is_empty() => Err(ApiError::bad_request(format!("{k}: this API takes no parameters"))),
            Some(k) => Err(ApiError::bad_request(format!("{k}: unknown parameter (expected {})", known.join(", ")))),
        }
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// A whole number ≥ 0.
    fn u64(&self, k: &str) -> Result<Option<u64>, ApiError> {
        self.get(k).map(|v| parse_u64(k, v)).transpose()
    }

    /// A whole number in [lo, hi].
    fn count(&self, k: &str, lo: usize, hi: usize) -> Result<Option<usize>, ApiError> {
        let Some(v) = self.u64(k)? else { return Ok(None) };
        if v < lo as u64 || v > hi as u64 {
            return Err(ApiError::bad_request(format!("{k}={v}: expected {lo} to {hi}")));
        }
        Ok(Some(v as usize))
    }

    /// `SEED` or `SEED:INDEX`: sample INDEX of the grid drawn with SEED.
    fn latent(&self, k: &str) -> Result<Option<Latent>, ApiError> {
        let Some(v) = self.get(k) else { return Ok(None) };
        let (s, i) = v.split_once(':').unwrap_or((v, "0"));
        let seed = parse_u64(k, s)?;
        let index = parse_u64(k, i)?;
        if index >= MAX_SAMPLES as u64 {
            return Err(ApiError::bad_request(format!("{k}={v}: the sample index must be below {MAX_SAMPLES}")));
        }
        Ok(Some(Latent { seed, index: index as usize }))
    }
}

fn parse_u64(k: &str, v: &str) -> Result<u64, ApiError> {
    if v.starts_with('-') {
        return Err(ApiError::bad_request(format!("{k}={v}: must not be negative")));
    }
    v.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("{k}={v:?}: expected a whole number from 0 to {}", u64::MAX)))
}

/// Decodes %XX escapes; None for a malformed escape or bytes that are not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%2e%2E"), Some("..".into()));
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn query_values() {
        let q = Query::parse("n=4&seed=7&a=3:5").unwrap();
        assert_eq!(q.count("n", 1, 8).unwrap(), Some(4));
        assert_eq!(q.u64("seed").unwrap(), Some(7));
        assert_eq!(q.latent("a").unwrap(), Some(Latent { seed: 3, index: 5 }));
        assert!(q.count("n", 5, 8).is_err());
        assert!(Query::parse("n=1&n=2").is_err());
        assert_eq!(Query::parse("step=-1").unwrap().u64("step").unwrap_err().status, 400);
        assert!(q.only(&["n", "seed"]).is_err());
        assert!(q.only(&["n", "seed", "a"]).is_ok());
    }
}
