//! `sis-emulator`: serves a synthetic campus for the benchmark, then checks the job's work.
//!
//! `serve` starts the emulator of this crate's library on a free loopback port with
//! a per-request latency, writes the values file for the campus and an info file
//! (`key=value` lines, `base_url` last so a reader that sees it sees everything), and
//! serves until killed. `check` rebuilds the same campus from the same parameters, compares
//! every roster file with the oracle, reads the job's report and the emulator's counters,
//! and prints the figures. The campus is a pure function of the parameters, so the two
//! processes agree without sharing state.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use sis_emulator::{Campus, Options, PAGE_SIZE, STATS_PATH, SisServer, Synthetic};

const USAGE: &str = "usage:
  sis-emulator serve --values FILE --info FILE [CAMPUS] [--latency-ms MS]
  sis-emulator check --output-dir DIR --report FILE --stats-url URL --wall SECONDS
                     --latency-ms MS --concurrency N [CAMPUS]
  sis-emulator canvas-bench --binary PATH --work DIR [--courses 200] [--students 150]
                     [--pool 3000] [--seed 1] [--latency-ms MS] [--concurrency N]
CAMPUS: [--courses 200] [--sections 3] [--students 150] [--pool 150] [--seed 1]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let flags = match parse_flags(rest) {
        Ok(flags) => flags,
        Err(error) => {
            eprintln!("{error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command.as_str() {
        "serve" => serve(&flags),
        "check" => check(&flags),
        "canvas-bench" => canvas_bench(&flags),
        _ => Err(format!("unknown command {command:?}")),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sis-emulator: {error}");
            ExitCode::from(2)
        }
    }
}

type Flags = BTreeMap<String, String>;

fn parse_flags(args: &[String]) -> Result<Flags, String> {
    let mut flags = Flags::new();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {flag:?}"))?;
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        flags.insert(name.to_string(), value.clone());
    }
    Ok(flags)
}

fn number(flags: &Flags, name: &str, default: u64) -> Result<u64, String> {
    flags.get(name).map_or(Ok(default), |value| {
        value
            .parse()
            .map_err(|_| format!("--{name} wants a number, not {value:?}"))
    })
}

fn path<'a>(flags: &'a Flags, name: &str) -> Result<&'a str, String> {
    flags
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| format!("--{name} is required"))
}

fn campus(flags: &Flags) -> Result<Campus, String> {
    Ok(Campus::synthetic(&Synthetic {
        courses: number(flags, "courses", 200)? as usize,
        mean_sections: number(flags, "sections", 3)? as usize,
        mean_students: number(flags, "students", 150)? as usize,
        instructor_pool: number(flags, "pool", 150)? as usize,
        seed: number(flags, "seed", 1)?,
    }))
}

fn serve(flags: &Flags) -> Result<ExitCode, String> {
    let campus = campus(flags)?;
    let values = path(flags, "values")?;
    std::fs::write(values, campus.values_yaml()).map_err(|e| format!("{values}: {e}"))?;
    let options = Options {
        latency: Duration::from_millis(number(flags, "latency-ms", 20)?),
        ..Options::default()
    };
    let server = SisServer::start(campus, options);
    let info = path(flags, "info")?;
    let partial = format!("{info}.partial");
    std::fs::write(&partial, format!("base_url={}\n", server.base_url()))
        .map_err(|e| format!("{partial}: {e}"))?;
    // A rename, so the script never reads a half-written file.
    std::fs::rename(&partial, info).map_err(|e| format!("{info}: {e}"))?;
    eprintln!("sis-emulator: serving on {}", server.base_url());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn check(flags: &Flags) -> Result<ExitCode, String> {
    let campus = campus(flags)?;
    let output = path(flags, "output-dir")?;
    let mut mismatched = Vec::new();
    for course in &campus.courses {
        let key = course.key();
        for (list, expected) in [
            ("students", campus.expected_students(&key)),
            ("instructors", campus.expected_instructors(&key)),
        ] {
            let file = format!("{output}/{key}-{list}.txt");
            let actual = std::fs::read_to_string(&file).unwrap_or_default();
            let expected: String = expected.iter().map(|a| format!("{a}\n")).collect();
            if actual != expected {
                mismatched.push(format!("{key}-{list}.txt"));
            }
        }
    }
    let report = path(flags, "report")?;
    let report: serde_json::Value = std::fs::read_to_string(report)
        .map_err(|e| format!("{report}: {e}"))
        .and_then(|text| serde_json::from_str(&text).map_err(|e| format!("{report}: {e}")))?;
    let stats = fetch_stats(path(flags, "stats-url")?)?;
    let served = stats["requests"].as_u64().unwrap_or(0);
    let violations = stats["violations"].as_array().map_or(0, Vec::len);
    let repeated: Vec<&str> = stats["repeated"]
        .as_array()
        .map(|repeated| repeated.iter().filter_map(|r| r.as_str()).collect())
        .unwrap_or_default();

    let latency = number(flags, "latency-ms", 20)? as f64 / 1000.0;
    let concurrency = number(flags, "concurrency", 8)?.max(1) as f64;
    let wall: f64 = path(flags, "wall")?
        .parse()
        .map_err(|_| "--wall wants seconds".to_string())?;
    let minimum = campus.minimum_requests();
    let chain = longest_chain(&campus);
    let ideal = (served as f64 * latency / concurrency).max(chain as f64 * latency);
    let lists = 2 * campus.courses.len();

    println!("courses:                {}", campus.courses.len());
    println!(
        "rosters matching:       {}/{lists}",
        lists - mismatched.len()
    );
    println!("outcome:                {}", report["outcome"]);
    println!(
        "requests (report):      {} ({} retried)",
        report["requests"]["total"], report["requests"]["retried"]
    );
    println!("requests (emulator):    {served} ({violations} contract violations)");
    println!("requests asked again:   {}", repeated.len());
    for request in repeated.iter().take(5) {
        println!("asked again:            {request}");
    }
    println!("request lower bound:    {minimum}");
    println!("longest chain:          {chain} requests");
    println!("wall time:              {wall:.2} s");
    println!(
        "ideal time:             {ideal:.2} s = max({served} x {:.0} ms / {concurrency}, {chain} x {:.0} ms)",
        latency * 1000.0,
        latency * 1000.0
    );
    Ok(verdict(wall / ideal, &mismatched, violations, &report))
}

/// The longest chain of requests that must follow one another: the Classes call, then the
/// pages of the largest section one after another (instructor lookups are one step after
/// the Classes call).
fn longest_chain(campus: &Campus) -> usize {
    let pages = campus
        .courses
        .iter()
        .flat_map(|course| &course.sections)
        .map(|section| section.enrollments.len() / PAGE_SIZE + 1)
        .max()
        .unwrap_or(1);
    1 + pages
}

/// Reads the emulator's counters with a bare HTTP/1.0 request (loopback only).
fn fetch_stats(base_url: &str) -> Result<serde_json::Value, String> {
    let address = base_url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http URL: {base_url}"))?;
    let mut stream =
        std::net::TcpStream::connect(address).map_err(|e| format!("{address}: {e}"))?;
    write!(
        stream,
        "GET {STATS_PATH} HTTP/1.0\r\nHost: {address}\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .ok_or("malformed stats response")?;
    serde_json::from_str(body).map_err(|e| format!("stats: {e}"))
}

/// A Canvas campus served in process with a fixed latency; one `roster-sync sync` of it
/// (the binary at `--binary`, storage under `--work`), then the rosters against the oracle
/// and the requests and wall time against their bounds.
fn canvas_bench(flags: &Flags) -> Result<ExitCode, String> {
    use sis_emulator::canvas::{self, CanvasCampus, CanvasServer};
    let campus = CanvasCampus::synthetic(
        number(flags, "courses", 200)? as usize,
        number(flags, "students", 150)? as usize,
        number(flags, "pool", 3000)? as usize,
        number(flags, "seed", 1)?,
    );
    let latency_ms = number(flags, "latency-ms", 20)?;
    let concurrency = number(flags, "concurrency", 8)?.max(1);
    let work = std::path::PathBuf::from(path(flags, "work")?);
    let values = work.join("canvas-values.yaml");
    std::fs::write(&values, campus.values_yaml()).map_err(|e| e.to_string())?;
    let server = CanvasServer::start(
        campus.clone(),
        canvas::Options {
            latency: Duration::from_millis(latency_ms),
            ..canvas::Options::default()
        },
    );
    let output = work.join("canvas-profiles.d");
    let report = work.join("canvas-report.json");
    let started = std::time::Instant::now();
    let status = std::process::Command::new(path(flags, "binary")?)
        .arg("sync")
        .arg("--values")
        .arg(&values)
        .arg("--canvas-api")
        .arg(server.base_url())
        .arg("--output-dir")
        .arg(&output)
        .arg("--audit-repo")
        .arg(work.join("canvas-audit"))
        .arg("--report")
        .arg(&report)
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .arg("--termination-log")
        .arg(work.join("canvas-termination-log"))
        .env("CANVAS_API_TOKEN", canvas::TOKEN)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_RUST_LOG").unwrap_or("warn".into()),
        )
        .status()
        .map_err(|e| format!("running the sync: {e}"))?;
    let wall = started.elapsed().as_secs_f64();
    let mut mismatched = Vec::new();
    for course in campus.courses.keys() {
        let key = CanvasCampus::key(*course);
        for (list, expected) in [
            ("students", campus.expected_students(*course)),
            ("instructors", campus.expected_instructors(*course)),
        ] {
            let actual = std::fs::read_to_string(output.join(format!("{key}-{list}.txt")))
                .unwrap_or_default();
            let expected: String = expected.iter().map(|a| format!("{a}\n")).collect();
            if actual != expected {
                mismatched.push(format!("{key}-{list}.txt"));
            }
        }
    }
    let report: serde_json::Value = std::fs::read_to_string(&report)
        .map_err(|e| format!("the report: {e}"))
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))?;
    let served = server.requests().len();
    let violations = server.violations().len();
    let minimum = campus.minimum_requests();
    let chain = campus
        .courses
        .keys()
        .map(|c| campus.pages(*c))
        .max()
        .unwrap_or(1);
    let latency = latency_ms as f64 / 1000.0;
    let ideal = (served as f64 * latency / concurrency as f64).max(chain as f64 * latency);
    let lists = 2 * campus.courses.len();
    println!("canvas courses:         {}", campus.courses.len());
    println!(
        "rosters matching:       {}/{lists}",
        lists - mismatched.len()
    );
    println!(
        "outcome:                {} (exit {:?})",
        report["outcome"],
        status.code()
    );
    println!(
        "requests (report):      {} ({} retried)",
        report["requests"]["total"], report["requests"]["retried"]
    );
    println!("requests (emulator):    {served} ({violations} contract violations)");
    println!("request lower bound:    {minimum} (one per page)");
    println!("longest chain:          {chain} pages");
    println!("wall time:              {wall:.2} s");
    println!(
        "ideal time:             {ideal:.2} s = max({served} x {latency_ms} ms / {concurrency}, {chain} x {latency_ms} ms)"
    );
    Ok(verdict(wall / ideal, &mismatched, violations, &report))
}

/// The last lines of a check, and its status: success when every roster matched, the
/// emulator saw no contract violation and the job exited 0.
fn verdict(
    ratio: f64,
    mismatched: &[String],
    violations: usize,
    report: &serde_json::Value,
) -> ExitCode {
    println!("wall / ideal:           {ratio:.2}");
    for name in mismatched.iter().take(5) {
        println!("mismatch:               {name}");
    }
    match mismatched.is_empty() && violations == 0 && report["exit_code"] == 0 {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}
