//! `wgan view` in a real browser: headless Chromium loads the page against a small trained run,
//! presses "generate" twice and writes what it saw into the page (`?selftest=1`), which
//! `--dump-dom` hands back; a second run takes a screenshot.
//!
//! Why Chromium's own `--headless --dump-dom/--screenshot` rather than a WebDriver/CDP driver
//! (fantoccini, chromiumoxide): the page itself does the pressing and the checking, so all the test
//! needs from the browser is the final DOM and a picture, which the command line gives. A driver
//! would add an async runtime and ~100 crates to the build (or chromedriver to the install) for
//! nothing this test asserts. `--virtual-time-budget` makes Chromium wait for the page's fetches
//! before it dumps; `--run-all-compositor-stages-before-draw` makes the screenshot show the
//! final page.
//!
//! Without Chromium the test says so and passes, unless `WGAN_REQUIRE_BROWSER=1` (as in CI, where
//! `scripts/test` installs it), where that is a failure. `WGAN_CHROMIUM` names the browser binary;
//! `WGAN_VIEW_SCREENSHOT=PATH` also writes the screenshot there (docs/view.png is made so).

mod view_fixture;

use std::path::{Path, PathBuf};
use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use view_fixture::{runs, start, tmp};

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("WGAN_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// What the browser printed.
struct Printed {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs the browser headless on `url` with `extra` flags; kills it after `limit`. Its output goes
/// to files (a pipe nobody reads while it runs could fill and stall it).
fn headless(browser: &Path, dir: &Path, name: &str, url: &str, extra: &[String], limit: Duration) -> Printed {
    let (out, err) = (dir.join(format!("{name}.out")), dir.join(format!("{name}.err")));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            // CI runs as root, where Chromium's sandbox cannot start; the page is our own, on 127.0.0.1.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=60000",
        ])
        .arg(format!("--user-data-dir={}", dir.join(format!("{name}-profile")).display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.display()));
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} did not finish in {limit:?}; stderr:\n{}",
                browser.display(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Printed { ok: status.success(), stdout: read(&out), stderr: read(&err) }
}

#[test]
fn generate_twice_in_chromium_and_take_a_screenshot() {
    let Some(browser) = chromium() else {
        if std::env::var("WGAN_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("WGAN_REQUIRE_BROWSER=1 but no Chromium found (install it: apt-get install chromium, or set WGAN_CHROMIUM)");
        }
        eprintln!("skipped: no Chromium on PATH (apt-get install chromium, or set WGAN_CHROMIUM)");
        return;
    };
    let srv = start(runs());
    let dir = tmp("browser");
    let limit = Duration::from_secs(180);

    // 1. The page presses generate twice and reports into <pre id="selftest">.
    let url = format!("{}?run=mnist&n=16&selftest=1", srv.url());
    let o = headless(&browser, &dir, "dump", &url, &["--dump-dom".into()], limit);
    let dom = &o.stdout;
    assert!(o.ok && dom.contains("id=\"selftest\""), "{} --dump-dom failed; stderr:\n{}", browser.display(), o.stderr);
    let start = dom.find("id=\"selftest\"").unwrap();
    let pre = &dom[start..start + dom[start..].find("</pre>").expect("end of the self-test report")];
    let json = &pre[pre.find('>').unwrap() + 1..];
    let report: serde_json::Value = serde_json::from_str(&json.replace("&quot;", "\"").replace("&amp;", "&"))
        .unwrap_or_else(|e| panic!("the page wrote no self-test report ({e}): {pre}"));
    eprintln!("self-test: {report}");
    let gen = report["generated"].as_array().expect("two generated grids");
    assert_eq!(gen.len(), 2, "{report}");
    assert_ne!(gen[0]["seed"], gen[1]["seed"], "generate drew the same noise twice: {report}");
    for g in gen {
        assert_eq!(g["width"], 122, "a 16-sample grid (4 × 30 + 2 pixels) was not displayed: {report}");
    }
    assert_eq!(report["images_differ"], true, "the two generated images are the same: {report}");
    assert!(report["chart_paths"].as_u64().unwrap_or(0) >= 3, "charts not drawn: {report}");
    for f in ["wasserstein", "critic_loss", "gen_loss"] {
        assert!(report["fields"].as_array().unwrap().iter().any(|v| v == f), "no chart of {f}: {report}");
    }
    assert!(report["walk_width"].as_u64().unwrap_or(0) > 0, "the walk was not drawn: {report}");
    assert!(report["timeline_width"].as_u64().unwrap_or(0) > 0, "the samples timeline was not drawn: {report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert!(pre.contains("data-result=\"pass\""), "{pre}");

    // 2. A screenshot of the page as a user first sees it.
    let shot = std::env::current_dir().unwrap().join("target").join("view-screenshot.png");
    let url = format!("{}?run=mnist&seed=1&live=0", srv.url());
    let args = [
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,1000".into(),
        "--run-all-compositor-stages-before-draw".into(),
    ];
    let _ = std::fs::remove_file(&shot);
    let o = headless(&browser, &dir, "screenshot", &url, &args, limit);
    assert!(o.ok && shot.is_file(), "no screenshot; stderr:\n{}", o.stderr);
    let img = image::open(&shot).expect("the screenshot is a PNG").to_rgb8();
    assert_eq!((img.width(), img.height()), (1280, 1000));
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 50, "the screenshot is nearly blank ({} colours)", colours.len());
    eprintln!("screenshot: {}", shot.display());
    if let Ok(p) = std::env::var("WGAN_VIEW_SCREENSHOT") {
        std::fs::copy(&shot, &p).unwrap();
    }
    srv.stop();
}
