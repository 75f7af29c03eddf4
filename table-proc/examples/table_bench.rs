//! Benchmark driver (not a test): plays smtpd's side of a table, in either
//! wire protocol, against table programs, the way smtpd's lka does it: one
//! request in flight, waiting for each reply, over a socketpair on the
//! table's fd 0 (text protocol: also fd 1, as smtpd 7.x does).
//!
//! ```sh
//! table_bench --proto text|imsg --size LABEL --keys DB.keys --cases mailbox,alias,... \
//!     [--secs 1] [--rounds 20] [--min-ops 3] [--csv OUT.csv] [--log FILE] [--warm-file DB] \
//!     [--phase cold|warm] [--working-set N] [--fill] \
//!     (--spec TABLES.tsv | --table LABEL [--rss-comm NAME] -- TABLE-COMMAND [ARGS...])
//! ```
//!
//! `tests/bench/run.sh` runs it for every protocol and size. With `--spec`,
//! several tables run side by side: each line of the file is
//! `LABEL<TAB>CASES<TAB>RSS-COMM<TAB>MIN-OPS<TAB>COMMAND<TAB>ARG...` (CASES:
//! a comma list, `*` = every requested case but `floor`; RSS-COMM `-`
//! = the command itself). All tables are started at once and every case is
//! measured in `--rounds` slices per table, the tables taking turns, so a
//! machine whose speed drifts during the run (other load, frequency
//! changes) slows every table alike and the ratios stay meaningful.
//!
//! Cases are the key kinds of `tests/bench/gen.py` (`DB.keys`:
//! `CASE<TAB>KEY`):
//!
//! * `mailbox`, `tagged`, `alias`, `multi`, `catchall`, `unknown`: one
//!   operation is one recipient: smtpd's virtual key walk for the address
//!   (`user+tag@dom`, `user@dom`, `user+tag`, `user`, `@dom`, `@`;
//!   `aliases_virtual_get` in OpenSMTPD `usr.sbin/smtpd/aliases.c`),
//!   LOOKUP `alias`, stopping at the first answer found (or error);
//! * `domain`: CHECK `domain`; `userinfo`, `credentials`: LOOKUP;
//! * `floor`: one LOOKUP `alias` of a mailbox key, no walk (for the echo
//!   table, which finds nothing and would otherwise walk all six keys).
//!
//! Per table and case it prints and appends to the CSV: operations/s (the
//! median of the slices' rates; the plain mean is in the CSV too),
//! requests per operation, p50/p99 latency of an operation, the share of
//! operations that found something, error answers, and the table process's
//! VmRSS and VmHWM from `/proc` (RSS-COMM names the descendant to measure,
//! e.g. the table inside `tests/e2e/container.sh`). Each table first runs a
//! short unmeasured warm-up per case (at least one operation); every slice
//! has at least one operation and each table at least MIN-OPS per case; a
//! table that has had `--secs` and MIN-OPS sits out the remaining rounds.
//! `--warm-file` reads that file (the database) before every case, so each
//! case starts with it in the page cache.
//!
//! Cold and warm (`--phase`, a label in the output and the CSV):
//!
//! * `cold` (the default): every key of the case in turn, 5000 per case
//!   from `DB.keys`, skipping a key equal to one of the last two asked
//!   (the 1k database has only 10 domains), so no operation repeats a key
//!   of the two before it. The
//!   driver cannot make a table's own cache miss by itself (at 1k users
//!   there are only 1000 mailboxes); `run.sh` runs table-mailtable for
//!   this phase with `cache_entries = 1`, a cache that keeps the last two
//!   answers only, so it is never asked a key it still holds (the walk
//!   never repeats a key within two requests), while each lookup still
//!   pays the change check and the cache's miss path (the keys two walks
//!   share, `@dom` and `@`, come back three or more requests apart, when
//!   both answers kept are other keys');
//! * `warm`: only the first `--working-set` keys of each case (default
//!   300), over and over, as real traffic repeats recipients; the per-case
//!   warm-up asks every key of the working set at least once before
//!   anything is measured, so a table with a cache of at least that many
//!   answers serves every measured operation from it.
//!
//! `--fill`: the start-up warm-up asks every key of every requested case
//! once (instead of 200 ms of mailbox keys), e.g. 45000 operations for
//! nine cases: more distinct keys than table-mailtable's default cache
//! holds (20000 answers), so its memory is measured with the cache at its
//! bound.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Text,
    Imsg,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Outcome {
    Found,
    NotFound,
    Error,
}

struct Opts {
    proto: Proto,
    table: String,
    size: String,
    keys: String,
    cases: Vec<String>,
    secs: f64,
    rounds: usize,
    min_ops: usize,
    csv: Option<String>,
    rss_comm: Option<String>,
    log: Option<String>,
    spec: Option<String>,
    warm_file: Option<String>,
    phase: String,
    working_set: usize,
    fill: bool,
    cmd: Vec<String>,
}

/// One table program under test.
struct Spec {
    label: String,
    cases: Vec<String>,
    rss_comm: Option<String>,
    min_ops: usize,
    cmd: Vec<String>,
}

fn parse_args() -> Res<Opts> {
    let mut a = std::env::args().skip(1);
    let mut o = Opts {
        proto: Proto::Text,
        table: "table".into(),
        size: "-".into(),
        keys: String::new(),
        cases: Vec::new(),
        secs: 1.0,
        rounds: 20,
        min_ops: 3,
        csv: None,
        rss_comm: None,
        log: None,
        spec: None,
        warm_file: None,
        phase: "cold".into(),
        working_set: 300,
        fill: false,
        cmd: Vec::new(),
    };
    while let Some(arg) = a.next() {
        let mut val = || a.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--proto" => {
                o.proto = match val()?.as_str() {
                    "text" => Proto::Text,
                    "imsg" => Proto::Imsg,
                    p => return Err(format!("unknown protocol {p}").into()),
                }
            }
            "--table" => o.table = val()?,
            "--size" => o.size = val()?,
            "--keys" => o.keys = val()?,
            "--cases" => o.cases = val()?.split(',').map(String::from).collect(),
            "--secs" => o.secs = val()?.parse()?,
            "--min-ops" => o.min_ops = val()?.parse()?,
            "--rounds" => o.rounds = val()?.parse::<usize>()?.max(1),
            "--spec" => o.spec = Some(val()?),
            "--warm-file" => o.warm_file = Some(val()?),
            "--phase" => {
                o.phase = val()?;
                if o.phase != "cold" && o.phase != "warm" {
                    return Err(format!("--phase: cold or warm, not {}", o.phase).into());
                }
            }
            "--working-set" => o.working_set = val()?.parse::<usize>()?.max(1),
            "--fill" => o.fill = true,
            "--csv" => o.csv = Some(val()?),
            "--rss-comm" => o.rss_comm = Some(val()?),
            "--log" => o.log = Some(val()?),
            "--" => {
                o.cmd = a.by_ref().collect();
                break;
            }
            _ => return Err(format!("unknown argument {arg} (see the source's header)").into()),
        }
    }
    if (o.cmd.is_empty() && o.spec.is_none()) || o.keys.is_empty() || o.cases.is_empty() {
        return Err(
            "usage: table_bench --proto P --keys F --cases C,... (--spec F | -- CMD...)".into(),
        );
    }
    Ok(o)
}

/// smtpd's side of one table process.
struct Conn {
    proto: Proto,
    name: String,
    w: UnixStream,
    r: BufReader<UnixStream>,
    seq: u32,
    line: String,
    buf: Vec<u8>,
}

impl Conn {
    fn handshake(&mut self) -> Res<()> {
        match self.proto {
            Proto::Text => {
                let hello = format!(
                    "config|smtpd-version|7.6.0-portable\nconfig|protocol|0.1\nconfig|tablename|{}\nconfig|ready\n",
                    self.name
                );
                self.w.write_all(hello.as_bytes())?;
                loop {
                    self.line.clear();
                    if self.r.read_line(&mut self.line)? == 0 {
                        return Err("table closed the socket during the handshake".into());
                    }
                    if self.line.trim_end() == "register|ready" {
                        return Ok(());
                    }
                }
            }
            Proto::Imsg => {
                // PROC_TABLE_OPEN: version 2 + name[LINE_MAX = 2048], NUL-padded.
                let mut payload = 2u32.to_ne_bytes().to_vec();
                let mut name = self.name.as_bytes().to_vec();
                name.resize(2048, 0);
                payload.extend_from_slice(&name);
                self.send_imsg(2, &payload)?;
                let (_, rest) = self.recv_imsg()?;
                if !rest.is_empty() {
                    return Err("OPEN reply has a payload".into());
                }
                Ok(())
            }
        }
    }

    fn send_imsg(&mut self, ty: u32, payload: &[u8]) -> Res<()> {
        let len = u16::try_from(16 + payload.len())?;
        self.buf.clear();
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&0u16.to_ne_bytes()); // flags
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // peerid
        self.buf
            .extend_from_slice(&std::process::id().to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.w.write_all(&self.buf)?;
        Ok(())
    }

    fn recv_imsg(&mut self) -> Res<(u32, Vec<u8>)> {
        let mut head = [0u8; 16];
        self.r.read_exact(&mut head)?;
        let ty = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]);
        let len = usize::from(u16::from_ne_bytes([head[4], head[5]]));
        if !(16..=16384).contains(&len) {
            return Err(format!("bad imsg length {len}").into());
        }
        let mut rest = vec![0u8; len - 16];
        self.r.read_exact(&mut rest)?;
        if ty != 0 {
            return Err(format!("reply type {ty}, not PROC_TABLE_OK").into());
        }
        Ok((ty, rest))
    }

    /// One request, one reply: `check` (CHECK) or `lookup` (LOOKUP).
    fn ask(&mut self, check: bool, service: &str, key: &str) -> Res<Outcome> {
        self.seq = self.seq.wrapping_add(1);
        match self.proto {
            Proto::Text => {
                let id = self.seq.wrapping_mul(2_654_435_761);
                let ts = SystemTime::now().duration_since(UNIX_EPOCH)?;
                let op = if check { "check" } else { "lookup" };
                let req = format!(
                    "table|0.1|{}.{:06}|{}|{op}|{service}|{id:08x}|{key}\n",
                    ts.as_secs(),
                    ts.subsec_micros(),
                    self.name
                );
                self.w.write_all(req.as_bytes())?;
                self.line.clear();
                if self.r.read_line(&mut self.line)? == 0 {
                    return Err("table closed the socket".into());
                }
                let want = format!("{op}-result|{id:08x}|");
                let rest = self
                    .line
                    .trim_end_matches('\n')
                    .strip_prefix(&want)
                    .ok_or_else(|| format!("reply {:?} is not for {want}", self.line))?;
                Ok(if rest == "not-found" {
                    Outcome::NotFound
                } else if rest.starts_with("error") {
                    Outcome::Error
                } else if rest == "found" && check || rest.starts_with("found|") {
                    Outcome::Found
                } else {
                    return Err(format!("bad reply {:?}", self.line).into());
                })
            }
            Proto::Imsg => {
                let svc: i32 = match service {
                    "alias" => 0x001,
                    "domain" => 0x002,
                    "credentials" => 0x004,
                    "userinfo" => 0x010,
                    "mailaddr" => 0x040,
                    "mailaddrmap" => 0x100,
                    s => return Err(format!("no imsg number for service {s}").into()),
                };
                let mut p = svc.to_ne_bytes().to_vec();
                p.extend_from_slice(&0u64.to_ne_bytes()); // params count (size_t, 64-bit)
                p.extend_from_slice(key.as_bytes());
                p.push(0);
                self.send_imsg(if check { 5 } else { 6 }, &p)?;
                let (_, rest) = self.recv_imsg()?;
                if rest.len() < 4 {
                    return Err("short reply".into());
                }
                let r = i32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]);
                Ok(match r {
                    1 => Outcome::Found,
                    0 if rest.len() == 4 => Outcome::NotFound,
                    -1 if rest.len() == 4 => Outcome::Error,
                    _ => return Err(format!("bad reply r={r}, {} bytes", rest.len()).into()),
                })
            }
        }
    }
}

/// smtpd's virtual walk for a recipient (`aliases_virtual_get`).
fn walk(addr: &str) -> Vec<String> {
    let (local, dom) = addr.rsplit_once('@').unwrap_or((addr, ""));
    let base = local.split_once('+').map_or(local, |(b, _)| b);
    let tagged = base != local;
    let mut keys = Vec::with_capacity(6);
    if tagged {
        keys.push(format!("{local}@{dom}"));
    }
    keys.push(format!("{base}@{dom}"));
    if tagged {
        keys.push(local.to_string());
    }
    keys.push(base.to_string());
    if !dom.is_empty() {
        keys.push(format!("@{dom}"));
    }
    keys.push("@".into());
    keys
}

/// One operation of a case: (requests sent, final outcome).
fn op(c: &mut Conn, case: &str, key: &str) -> Res<(usize, Outcome)> {
    match case {
        "domain" => Ok((1, c.ask(true, "domain", key)?)),
        "userinfo" => Ok((1, c.ask(false, "userinfo", key)?)),
        "credentials" => Ok((1, c.ask(false, "credentials", key)?)),
        "floor" => Ok((1, c.ask(false, "alias", key)?)),
        _ => {
            let mut n = 0;
            for k in walk(key) {
                n += 1;
                match c.ask(false, "alias", &k)? {
                    Outcome::NotFound => {}
                    o => return Ok((n, o)),
                }
            }
            Ok((n, Outcome::NotFound))
        }
    }
}

fn proc_children() -> HashMap<u32, Vec<u32>> {
    let mut kids: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return kids;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            kids.entry(ppid).or_default().push(pid);
        }
    }
    kids
}

/// The pid whose memory is reported: the child, or its descendant named `comm`.
fn table_pid(child: u32, comm: Option<&str>) -> Option<u32> {
    let Some(comm) = comm else {
        return Some(child);
    };
    let kids = proc_children();
    let mut todo = vec![child];
    while let Some(p) = todo.pop() {
        let name = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        if name.trim_end() == comm {
            return Some(p);
        }
        todo.extend(kids.get(&p).into_iter().flatten());
    }
    None
}

/// (VmRSS, VmHWM) in KiB.
fn memory(pid: Option<u32>) -> (u64, u64) {
    let Some(pid) = pid else { return (0, 0) };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn specs(o: &Opts) -> Res<Vec<Spec>> {
    let Some(path) = &o.spec else {
        return Ok(vec![Spec {
            label: o.table.clone(),
            cases: vec!["*".into(), "floor".into()],
            rss_comm: o.rss_comm.clone(),
            min_ops: o.min_ops,
            cmd: o.cmd.clone(),
        }]);
    };
    let mut out = Vec::new();
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 5 {
            return Err(format!("{path}: bad line {line:?}").into());
        }
        out.push(Spec {
            label: f[0].to_string(),
            cases: f[1].split(',').map(String::from).collect(),
            rss_comm: (f[2] != "-").then(|| f[2].to_string()),
            min_ops: f[3].parse()?,
            cmd: f[4..].iter().map(|a| a.to_string()).collect(),
        });
    }
    Ok(out)
}

fn spawn(o: &Opts, cmd: &[String]) -> Res<(Child, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    let theirs = OwnedFd::from(theirs);
    let mut c = Command::new(&cmd[0]);
    c.args(&cmd[1..])
        .stdin(Stdio::from(theirs.try_clone()?))
        .env("MAILTABLE_LOG", "warn");
    match o.proto {
        Proto::Text => c.stdout(Stdio::from(theirs)),
        Proto::Imsg => c.stdout(Stdio::null()),
    };
    if let Some(log) = &o.log {
        let f = OpenOptions::new().create(true).append(true).open(log)?;
        c.stderr(Stdio::from(f));
    }
    Ok((c.spawn()?, ours))
}

/// A running table and what was measured on it for the current case.
struct Running {
    spec: Spec,
    child: Child,
    conn: Conn,
    pid: Option<u32>,
    lat: Vec<u64>,
    reqs: usize,
    found: usize,
    errors: usize,
    secs: f64,
    /// Operations per second of each slice.
    rates: Vec<f64>,
    next: usize,
    /// The last two keys asked in this case (cold: not asked again next).
    recent: [usize; 2],
}

impl Running {
    /// The next key of the case. Cold: skips keys equal to one of the last
    /// two asked (a case with few distinct keys, like the 10 domains of
    /// 1k users, would otherwise repeat one within two requests, and
    /// `cache_entries = 1` keeps the last two answers).
    fn key<'k>(&mut self, ks: &'k [String], cold: bool) -> &'k str {
        let mut i = self.next % ks.len();
        if cold {
            for _ in 0..ks.len() {
                if self.recent.iter().all(|&r| r >= ks.len() || ks[r] != ks[i]) {
                    break;
                }
                self.next += 1;
                i = self.next % ks.len();
            }
        }
        self.next += 1;
        self.recent = [i, self.recent[0]];
        &ks[i]
    }

    fn runs(&self, case: &str) -> bool {
        let c = &self.spec.cases;
        c.iter().any(|x| x == case) || (case != "floor" && c.iter().any(|x| x == "*"))
    }
}

fn main() -> Res<()> {
    let o = parse_args()?;
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in BufReader::new(File::open(&o.keys)?).lines() {
        let line = line?;
        if let Some((case, key)) = line.split_once('\t') {
            keys.entry(case.to_string())
                .or_default()
                .push(key.to_string());
        }
    }
    if let Some(m) = keys.get("mailbox").cloned() {
        keys.insert("floor".into(), m);
    }
    // --fill asks every key, the working set or not.
    let all_keys = if o.fill {
        keys.clone()
    } else {
        BTreeMap::new()
    };
    if o.phase == "warm" {
        for ks in keys.values_mut() {
            ks.truncate(o.working_set);
        }
    }
    let mut tables = Vec::new();
    for spec in specs(&o)? {
        let (child, sock) = spawn(&o, &spec.cmd)?;
        let mut conn = Conn {
            proto: o.proto,
            name: "bench".into(),
            w: sock.try_clone()?,
            r: BufReader::with_capacity(64 * 1024, sock),
            seq: 0,
            line: String::new(),
            buf: Vec::new(),
        };
        conn.handshake()
            .map_err(|e| format!("{}: handshake: {e}", spec.label))?;
        let pid = table_pid(child.id(), spec.rss_comm.as_deref());
        tables.push(Running {
            spec,
            child,
            conn,
            pid,
            lat: Vec::new(),
            reqs: 0,
            found: 0,
            errors: 0,
            secs: 0.0,
            rates: Vec::new(),
            next: 0,
            recent: [usize::MAX; 2],
        });
    }
    let mut csv = match &o.csv {
        Some(p) => {
            let new = std::fs::metadata(p).map_or(true, |m| m.len() == 0);
            let mut f = OpenOptions::new().create(true).append(true).open(p)?;
            if new {
                writeln!(f, "phase,protocol,table,size,service,case,ops,requests,seconds,ops_per_s,mean_ops_per_s,req_per_op,p50_us,p99_us,found_pct,errors,rss_kib,hwm_kib")?;
            }
            Some(f)
        }
        None => None,
    };
    // Start-up warm-up, unmeasured: a first burst of mailbox lookups fills
    // each table's own caches, so the first case measured is not the one
    // that pays for it. With --fill: every key of every case, once.
    if o.fill {
        for r in tables.iter_mut() {
            for case in &o.cases {
                if !r.runs(case) {
                    continue;
                }
                for key in all_keys.get(case).into_iter().flatten() {
                    op(&mut r.conn, case, key)?;
                }
            }
        }
    } else if let Some(ks) = keys.get("mailbox").filter(|k| !k.is_empty()) {
        for r in tables.iter_mut() {
            let warm = Instant::now();
            let mut w = 0;
            while w == 0 || (warm.elapsed() < Duration::from_millis(200) && w < 5000) {
                op(&mut r.conn, "mailbox", &ks[r.next % ks.len()])?;
                r.next += 1;
                w += 1;
            }
        }
    }
    let proto = if o.proto == Proto::Text {
        "text"
    } else {
        "imsg"
    };
    let slice = Duration::from_secs_f64(o.secs / o.rounds as f64);
    for case in &o.cases {
        let Some(ks) = keys.get(case).filter(|k| !k.is_empty()) else {
            eprintln!("table_bench: no keys for case {case}, skipped");
            continue;
        };
        let service = match case.as_str() {
            "domain" | "userinfo" | "credentials" => case.as_str(),
            _ => "alias",
        };
        if let Some(path) = &o.warm_file {
            // Read the database file before every case, so that every case
            // starts with it in the page cache ("cached in memory"): some
            // kernels (DAMON pageout) reclaim cold page-cache pages within
            // a minute or two.
            let mut f = File::open(path)?;
            let mut buf = vec![0u8; 1 << 20];
            while f.read(&mut buf)? > 0 {}
        }
        let cold = o.phase == "cold";
        let active: Vec<usize> = (0..tables.len())
            .filter(|&t| tables[t].runs(case))
            .collect();
        for &t in &active {
            let r = &mut tables[t];
            (r.lat, r.reqs, r.found, r.errors, r.secs) = (Vec::new(), 0, 0, 0, 0.0);
            r.rates.clear();
            r.recent = [usize::MAX; 2];
            // Warm-up, unmeasured: at least one op, at most 20 ms; warm
            // phase: every key of the working set at least once.
            let warm = Instant::now();
            let mut w = 0;
            let least = if o.phase == "warm" { ks.len() } else { 1 };
            while w < least || (warm.elapsed() < Duration::from_millis(20) && w < 500) {
                let key = r.key(ks, cold);
                op(&mut r.conn, case, key)?;
                w += 1;
            }
        }
        for round in 0..o.rounds {
            // A different order each round: no table always follows the same one.
            for k in 0..active.len() {
                let r = &mut tables[active[(k + round) % active.len()]];
                // A slow table (the article's scans) stops taking turns once
                // it has had its time and its minimum of operations.
                if r.secs >= o.secs && r.lat.len() >= r.spec.min_ops {
                    continue;
                }
                let start = Instant::now();
                let mut n = 0usize;
                while n == 0 || start.elapsed() < slice {
                    let key = r.key(ks, cold);
                    let t = Instant::now();
                    let (q, out) = op(&mut r.conn, case, key)?;
                    r.lat.push(t.elapsed().as_nanos() as u64);
                    r.reqs += q;
                    n += 1;
                    match out {
                        Outcome::Found => r.found += 1,
                        Outcome::Error => r.errors += 1,
                        Outcome::NotFound => {}
                    }
                }
                let took = start.elapsed().as_secs_f64();
                r.secs += took;
                r.rates.push(n as f64 / took);
            }
        }
        for &t in &active {
            let r = &mut tables[t];
            r.lat.sort_unstable();
            let lat = &r.lat;
            let pct = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
            let n = lat.len();
            let (rss, hwm) = memory(r.pid);
            // The median slice: a burst of other load on the machine that
            // hits a few slices of one table does not move it.
            r.rates.sort_by(f64::total_cmp);
            let median = r.rates[r.rates.len() / 2];
            let row = (
                median,
                r.reqs as f64 / n as f64,
                pct(0.5),
                pct(0.99),
                100.0 * r.found as f64 / n as f64,
            );
            println!(
                "{} {proto:<5} {:<10} {:>5} {service:<12} {case:<11} {:>9.0} ops/s {:>4.2} req/op p50 {:>8.1} µs p99 {:>8.1} µs found {:>5.1}% err {:<4} hwm {hwm} KiB",
                o.phase, r.spec.label, o.size, row.0, row.1, row.2, row.3, row.4, r.errors
            );
            if let Some(f) = csv.as_mut() {
                writeln!(
                    f,
                    "{},{proto},{},{},{service},{case},{n},{},{:.3},{:.1},{:.1},{:.2},{:.1},{:.1},{:.1},{},{rss},{hwm}",
                    o.phase, r.spec.label, o.size, r.reqs, r.secs, row.0, n as f64 / r.secs, row.1, row.2, row.3, row.4, r.errors
                )?;
            }
        }
    }
    // EOF on the socket ends each table (and the container around it).
    let mut children = Vec::new();
    for r in tables {
        drop(r.conn);
        children.push((r.spec.label, r.child));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for (label, mut child) in children {
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("table_bench: {label} did not exit at EOF; killing it");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}
