//! `sql-dump`: the tables of a MySQL or MariaDB dump, read from the file as
//! `mysqldump` writes it, without loading it anywhere first.
//!
//! PostfixAdmin runs on MySQL/MariaDB more often than on anything else, and
//! the file an admin has is its `mysqldump` output, which neither SQLite nor
//! PostgreSQL takes (backquoted names, `ENGINE=`, `LOCK TABLES`, `\'`
//! escapes). This reader takes what the SQL reader needs from it: each
//! table's columns (`CREATE TABLE`) and rows (`INSERT INTO ... VALUES`, one
//! or many rows a statement, with or without a column list, as
//! `--complete-insert` and `--extended-insert` write them), and hands them
//! to the same code that reads those tables from a database
//! ([`super::sql`]'s `Tables`).
//!
//! The statement syntax followed is that of the MySQL 8.0 reference
//! manual, "Comments", "String Literals" (the escapes `\0 \' \" \b \n \r
//! \t \Z \\`, a quote doubled), "Hexadecimal Literals" (`X'..'`, `0x..`),
//! "Bit-Value Literals" (`b'..'`) and "Character Set Introducers"
//! (`_binary '..'`), and of `mysqldump`'s output (`client/mysqldump.cc`:
//! versioned `/*!40101 ... */` comments, which only set session variables
//! there and are skipped as comments). `USE name` starts the tables of
//! another database (`--databases`, `--all-databases`): each database's
//! tables are kept apart, for the caller to pick the one with the mail
//! tables. Every other statement (`SET`, `DROP TABLE`, `LOCK TABLES`) is
//! skipped. Anything the reader
//! cannot take is an error naming the line, never a guess: a row read
//! wrong would import a wrong mailbox.

use std::collections::BTreeMap;
use std::fmt;

/// A cell, as text (`NULL` is `None`).
pub type Cell = Option<String>;

/// A table of the dump: its column names (lower case) and its rows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DumpTable {
    /// Column names, lower case, in the order of `CREATE TABLE`.
    pub columns: Vec<String>,
    /// Rows in the order of the dump, each with one cell per column.
    pub rows: Vec<Vec<Cell>>,
}

/// The tables of one database of a dump, by name (as written, and found
/// in any case).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dump {
    /// Tables by their lower-cased name.
    pub tables: BTreeMap<String, DumpTable>,
}

/// One database of a dump file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Database {
    /// Its name, where a `USE` statement gave one; `None` for the tables
    /// before any `USE` (all of them in a dump of one database,
    /// `mysqldump DATABASE`, which writes no `USE`).
    pub name: Option<String>,
    /// Its tables.
    pub dump: Dump,
}

/// Why a dump cannot be read: the line of the statement, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpError {
    /// 1-based line where the statement (or the fault) is.
    pub line: usize,
    /// What is wrong.
    pub why: String,
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

/// One token of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A run of other characters: a keyword, a number, a bare name.
    Word(String),
    /// A backquoted name.
    Name(String),
    /// A quoted string, escapes undone.
    Str(String),
    Open,
    Close,
    Comma,
}

/// A statement's tokens and the line it starts on.
struct Statement {
    line: usize,
    tokens: Vec<Token>,
}

/// Splits `text` into statements at `;` outside quotes and comments.
fn statements(text: &str) -> Result<Vec<Statement>, DumpError> {
    let mut out = Vec::new();
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut line = 1;
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, tokens: &mut Vec<Token>| {
        if !word.is_empty() {
            tokens.push(Token::Word(std::mem::take(word)));
        }
    };
    while let Some(c) = chars.next() {
        if tokens.is_empty() && word.is_empty() && !c.is_whitespace() {
            start = line;
        }
        match c {
            '\n' => {
                line += 1;
                flush(&mut word, &mut tokens);
            }
            c if c.is_whitespace() => flush(&mut word, &mut tokens),
            '#' => {
                flush(&mut word, &mut tokens);
                skip_line(&mut chars, &mut line);
            }
            '-' if word.is_empty() && chars.peek() == Some(&'-') => {
                chars.next();
                // `--` starts a comment only before white space (or the
                // end): `--1` is minus minus one.
                match chars.peek() {
                    None => {}
                    Some(c) if c.is_whitespace() => skip_line(&mut chars, &mut line),
                    Some(_) => word.push_str("--"),
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                flush(&mut word, &mut tokens);
                chars.next();
                let at = line;
                let mut prev = '\0';
                loop {
                    let Some(c) = chars.next() else {
                        return Err(err(at, "a /* comment that never ends"));
                    };
                    if c == '\n' {
                        line += 1;
                    }
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '\'' | '"' => {
                flush(&mut word, &mut tokens);
                tokens.push(Token::Str(quoted(&mut chars, c, &mut line)?));
            }
            '`' => {
                flush(&mut word, &mut tokens);
                tokens.push(Token::Name(backquoted(&mut chars, &mut line)?));
            }
            '(' | ')' | ',' | ';' => {
                flush(&mut word, &mut tokens);
                match c {
                    '(' => tokens.push(Token::Open),
                    ')' => tokens.push(Token::Close),
                    ',' => tokens.push(Token::Comma),
                    _ => {
                        if !tokens.is_empty() {
                            out.push(Statement {
                                line: start,
                                tokens: std::mem::take(&mut tokens),
                            });
                        }
                    }
                }
            }
            c => word.push(c),
        }
    }
    flush(&mut word, &mut tokens);
    if !tokens.is_empty() {
        // mysqldump ends every statement with `;`: a last one without is a
        // file cut short (a dump that failed, a copy still running).
        return Err(err(
            start,
            "the last statement has no `;`: the dump looks cut short",
        ));
    }
    Ok(out)
}

/// A line that is one `/* ... */` comment and nothing else.
fn is_comment_line(line: &str) -> bool {
    line.starts_with("/*") && line.ends_with("*/")
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, line: &mut usize) {
    for c in chars.by_ref() {
        if c == '\n' {
            *line += 1;
            return;
        }
    }
}

fn err(line: usize, why: impl Into<String>) -> DumpError {
    DumpError {
        line,
        why: why.into(),
    }
}

/// A string after its opening `quote`, escapes undone (MySQL 8.0 manual,
/// "String Literals", Table 11.1); a backslash before any other character
/// is that character. A quote doubled is one quote.
fn quoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    quote: char,
    line: &mut usize,
) -> Result<String, DumpError> {
    let at = *line;
    let mut s = String::new();
    loop {
        let Some(c) = chars.next() else {
            return Err(err(at, "a string that never ends"));
        };
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    return Err(err(at, "a string that never ends"));
                };
                s.push(match e {
                    '0' => '\0',
                    'b' => '\u{8}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'Z' => '\u{1a}',
                    '\n' => {
                        *line += 1;
                        '\n'
                    }
                    other => other,
                });
            }
            c if c == quote => {
                if chars.peek() == Some(&quote) {
                    chars.next();
                    s.push(quote);
                } else {
                    return Ok(s);
                }
            }
            '\n' => {
                *line += 1;
                s.push('\n');
            }
            c => s.push(c),
        }
    }
}

/// A backquoted name after its opening quote; a doubled backquote is one.
fn backquoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    line: &mut usize,
) -> Result<String, DumpError> {
    let at = *line;
    let mut s = String::new();
    loop {
        match chars.next() {
            None => return Err(err(at, "a `name` that never ends")),
            Some('`') if chars.peek() == Some(&'`') => {
                chars.next();
                s.push('`');
            }
            Some('`') => return Ok(s),
            Some(c) => {
                if c == '\n' {
                    *line += 1;
                }
                s.push(c);
            }
        }
    }
}

/// `text` with its `DELIMITER` blocks blanked, line ends kept (line numbers
/// stay right). mysqldump wraps triggers, routines and events
/// (`--triggers`, `--routines`, `--events`) in `DELIMITER ;;` ...
/// `DELIMITER ;`, a command of the mysql(1) client, not SQL; their bodies
/// are code, and an `INSERT` there is no row of the table. mysqldump
/// writes every value on one line (a line feed in it as `\n`), so a line
/// that starts with `DELIMITER` is never inside a value.
fn without_delimiter_blocks(text: &str) -> Result<std::borrow::Cow<'_, str>, DumpError> {
    // The command and its one argument, the new delimiter (mysql(1):
    // "delimiter"); a line `delimiter` alone is no command.
    fn delimiter(line: &str) -> Option<&str> {
        let mut words = line.split_whitespace();
        let word = words.next()?;
        word.eq_ignore_ascii_case("delimiter")
            .then(|| words.next())
            .flatten()
    }
    if !text.lines().any(|l| delimiter(l).is_some()) {
        return Ok(text.into());
    }
    let mut out = String::with_capacity(text.len());
    let mut opened = None;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        match delimiter(line) {
            Some(d) => opened = (d != ";").then_some(n + 1),
            None if opened.is_none() => {
                out.push_str(line);
                continue;
            }
            None => {}
        }
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    // Skipping to the end would drop every row after it without a word.
    match opened {
        Some(at) => Err(err(
            at,
            "a DELIMITER block never ends (no `DELIMITER ;` after it): the dump looks cut short",
        )),
        None => Ok(out.into()),
    }
}

/// The databases of the dump `text` that hold tables, in the order of the
/// dump.
pub fn parse_dump(text: &str) -> Result<Vec<Database>, DumpError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = &*without_delimiter_blocks(text)?;
    if text.trim_start().starts_with("<?xml") {
        return Err(err(
            1,
            "an XML dump (mysqldump --xml): dump without --xml, as SQL statements",
        ));
    }
    postgres_copy(text)?;
    cut_short(text)?;
    let mut databases = vec![Database::default()];
    let mut current = 0;
    for st in statements(text)? {
        let dump = &mut databases[current].dump;
        let mut t = Cursor {
            tokens: &st.tokens,
            at: 0,
            line: st.line,
        };
        if t.keyword("CREATE") {
            t.keyword("TEMPORARY");
            if !t.keyword("TABLE") {
                continue;
            }
            create_table(&mut t, dump)?;
        } else if t.keyword("INSERT") || t.keyword("REPLACE") {
            t.keyword("IGNORE");
            t.keyword("INTO");
            insert(&mut t, dump)?;
        } else if t.keyword("USE") {
            let name = Some(t.name()?);
            // Back to a database met before (files joined by hand): its
            // tables go on where they were.
            current = match databases.iter().position(|d| d.name == name) {
                Some(i) => i,
                None => {
                    databases.push(Database {
                        name,
                        dump: Dump::default(),
                    });
                    databases.len() - 1
                }
            };
        }
    }
    databases.retain(|d| !d.dump.tables.is_empty());
    Ok(databases)
}

/// A PostgreSQL dump in pg_dump's default form: its rows follow a `COPY
/// table (columns) FROM stdin;` line as tab-separated text up to `\.`
/// (`pg_dump(1)`; `--inserts` writes `INSERT` statements instead), which
/// no MySQL statement reader can take. Named with the way to read it,
/// rather than failing on the rows as a statement that never ends.
fn postgres_copy(text: &str) -> Result<(), DumpError> {
    let copy = text.lines().position(|l| {
        let l = l.trim_end();
        l.get(..5).is_some_and(|w| w.eq_ignore_ascii_case("COPY "))
            && l.to_ascii_uppercase().ends_with(" FROM STDIN;")
    });
    match copy {
        Some(n) => Err(err(
            n + 1,
            "a PostgreSQL dump (pg_dump's COPY ... FROM stdin): restore it into a database \
             and import that with --from sql postgresql://..., or dump again with \
             pg_dump --inserts",
        )),
        None => Ok(()),
    }
}

/// A dump that mysqldump began and did not finish: with its comments on,
/// it writes a first line `-- MySQL dump ...` (`-- MariaDB dump ...`) and
/// a last `-- Dump completed ...` (`client/mysqldump.c`, `print_comment`
/// at the start and in `main` at the end), so a file with the first and
/// without the last was cut short, also where the cut falls between two
/// statements (a table left out entirely). Without its comments
/// (`--skip-comments`, `--compact`) nothing tells; a cut inside a
/// statement is still refused by the reader.
///
/// MariaDB's dump since 10.5.25, 10.6.18, 10.11.8 and 11.x writes one line
/// before its header, `/*!999999\- enable the sandbox mode */` (`/*M!`
/// in later releases), for its own client: the header is looked for past
/// such versioned comments, or a MariaDB dump cut short would pass.
fn cut_short(text: &str) -> Result<(), DumpError> {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !is_comment_line(l))
        .unwrap_or("");
    let begun = ["-- MySQL dump", "-- MariaDB dump"]
        .iter()
        .any(|h| first.starts_with(h));
    if begun && !text.lines().any(|l| l.starts_with("-- Dump completed")) {
        return Err(err(
            text.lines().count().max(1),
            "the dump has mysqldump's first line but not its last (\"-- Dump completed\"): \
             it looks cut short (a dump that failed, a copy not finished); dump again",
        ));
    }
    Ok(())
}

/// Reading position in a statement's tokens.
struct Cursor<'a> {
    tokens: &'a [Token],
    at: usize,
    line: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<&Token> {
        let t = self.tokens.get(self.at);
        self.at += 1;
        t
    }

    /// Takes the bare word `k` (any case) if it comes next.
    fn keyword(&mut self, k: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(k) => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<(), DumpError> {
        match self.next() {
            Some(t) if *t == want => Ok(()),
            _ => Err(self.fault(format!("expected {what}"))),
        }
    }

    fn fault(&self, why: String) -> DumpError {
        err(self.line, why)
    }

    /// A name, backquoted, bare or in double quotes (`--compatible=ansi`
    /// writes ANSI SQL's quoted names); of `db`.`table`, the table.
    fn name(&mut self) -> Result<String, DumpError> {
        let mut name = match self.next() {
            Some(Token::Name(n) | Token::Str(n)) => n.clone(),
            Some(Token::Word(w)) => w.clone(),
            _ => return Err(self.fault("expected a table name".into())),
        };
        // `db`.`t` reads as a name, a word ".", a name; `db.t` as one word.
        if let Some(Token::Word(w)) = self.peek() {
            if w == "." {
                self.at += 1;
                return self.name();
            }
        }
        if let Some((_, t)) = name.rsplit_once('.') {
            name = t.to_string();
        }
        Ok(name)
    }
}

/// What opens a line of `CREATE TABLE` that is no column.
const NOT_COLUMNS: [&str; 9] = [
    "PRIMARY",
    "KEY",
    "INDEX",
    "UNIQUE",
    "CONSTRAINT",
    "FOREIGN",
    "FULLTEXT",
    "SPATIAL",
    "CHECK",
];

fn create_table(t: &mut Cursor<'_>, dump: &mut Dump) -> Result<(), DumpError> {
    if t.keyword("IF") {
        t.keyword("NOT");
        t.keyword("EXISTS");
    }
    let name = t.name()?;
    // `CREATE TABLE t LIKE u`, `... AS SELECT`: no rows of a dump.
    if t.peek() != Some(&Token::Open) {
        return Err(t.fault(format!("CREATE TABLE {name} without a column list")));
    }
    t.at += 1;
    let mut columns = Vec::new();
    let mut depth = 0usize;
    let mut item_start = true;
    loop {
        let Some(tok) = t.next().cloned() else {
            return Err(t.fault(format!("CREATE TABLE {name}: the column list never ends")));
        };
        match tok {
            Token::Open => depth += 1,
            Token::Close if depth == 0 => break,
            Token::Close => depth -= 1,
            Token::Comma if depth == 0 => {
                item_start = true;
                continue;
            }
            Token::Name(n) | Token::Str(n) if item_start => columns.push(n.to_lowercase()),
            Token::Word(w)
                if item_start && !NOT_COLUMNS.iter().any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                columns.push(w.to_lowercase())
            }
            _ => {}
        }
        item_start = false;
    }
    let key = name.to_lowercase();
    if dump.tables.contains_key(&key) {
        return Err(t.fault(format!(
            "table {name} is created twice in one database: two dumps joined into one file? \
             Dump again, only the database that holds the mail tables (mysqldump DATABASE)"
        )));
    }
    dump.tables.insert(
        key,
        DumpTable {
            columns,
            rows: Vec::new(),
        },
    );
    Ok(())
}

fn insert(t: &mut Cursor<'_>, dump: &mut Dump) -> Result<(), DumpError> {
    let name = t.name()?;
    // `INSERT INTO t (a, b) VALUES ...` (`--complete-insert`).
    let mut listed = None;
    if t.peek() == Some(&Token::Open) {
        t.at += 1;
        let mut cols = Vec::new();
        loop {
            match t.next() {
                Some(Token::Name(n) | Token::Str(n)) => cols.push(n.to_lowercase()),
                Some(Token::Word(w)) => cols.push(w.to_lowercase()),
                _ => return Err(t.fault(format!("INSERT INTO {name}: a bad column list"))),
            }
            match t.next() {
                Some(Token::Comma) => {}
                Some(Token::Close) => break,
                _ => return Err(t.fault(format!("INSERT INTO {name}: a bad column list"))),
            }
        }
        listed = Some(cols);
    }
    if !(t.keyword("VALUES") || t.keyword("VALUE")) {
        return Err(t.fault(format!(
            "INSERT INTO {name} without VALUES (INSERT ... SELECT or SET is no dump's)"
        )));
    }
    let table = dump.tables.entry(name.to_lowercase()).or_default();
    // Where each value of a row goes among the table's columns.
    let slots: Vec<usize> = match &listed {
        None if table.columns.is_empty() => {
            return Err(t.fault(format!(
                "INSERT INTO {name} without a column list, and no CREATE TABLE {name} before \
                 it: which value is which column cannot be told (dump with --complete-insert, \
                 or with the CREATE TABLE statements)"
            )))
        }
        None => (0..table.columns.len()).collect(),
        Some(cols) => {
            let mut slots = Vec::with_capacity(cols.len());
            for c in cols {
                let i = match table.columns.iter().position(|x| x == c) {
                    Some(i) => i,
                    None => {
                        table.columns.push(c.clone());
                        for r in &mut table.rows {
                            r.push(None);
                        }
                        table.columns.len() - 1
                    }
                };
                slots.push(i);
            }
            slots
        }
    };
    loop {
        t.expect(Token::Open, &format!("INSERT INTO {name}: a row in ( )"))?;
        let mut values = Vec::with_capacity(slots.len());
        loop {
            values.push(value(t, &name)?);
            match t.next() {
                Some(Token::Comma) => {}
                Some(Token::Close) => break,
                _ => return Err(t.fault(format!("INSERT INTO {name}: a row not closed by )"))),
            }
        }
        if values.len() != slots.len() {
            return Err(t.fault(format!(
                "INSERT INTO {name}: a row of {} values for {} columns",
                values.len(),
                slots.len()
            )));
        }
        let mut row = vec![None; table.columns.len()];
        for (slot, v) in slots.iter().zip(values) {
            row[*slot] = v;
        }
        table.rows.push(row);
        match t.next() {
            Some(Token::Comma) => {}
            // The end, or `ON DUPLICATE KEY UPDATE ...` after the rows.
            None | Some(Token::Word(_)) => return Ok(()),
            _ => return Err(t.fault(format!("INSERT INTO {name}: rows not separated by ,"))),
        }
    }
}

/// One value of a row.
fn value(t: &mut Cursor<'_>, table: &str) -> Result<Cell, DumpError> {
    let bad = |t: &Cursor<'_>, what: &str| {
        t.fault(format!(
            "INSERT INTO {table}: a value this reader does not take ({what})"
        ))
    };
    let tok = t.next().cloned();
    Ok(match tok {
        Some(Token::Str(s)) => Some(s),
        Some(Token::Word(w)) => {
            let lower = w.to_ascii_lowercase();
            // `_binary 'x'`, `_utf8mb4 'x'`: a character set introducer.
            if lower.starts_with('_') {
                match t.next().cloned() {
                    Some(Token::Str(s)) => return Ok(Some(s)),
                    _ => return Err(bad(t, &w)),
                }
            }
            match lower.as_str() {
                "null" => None,
                "true" => Some("1".into()),
                "false" => Some("0".into()),
                // X'4142', b'1'.
                "x" | "b" => match t.next().cloned() {
                    Some(Token::Str(s)) if lower == "x" => Some(hex(&s).ok_or_else(|| bad(t, &w))?),
                    Some(Token::Str(s)) => Some(bits(&s).ok_or_else(|| bad(t, &w))?),
                    _ => return Err(bad(t, &w)),
                },
                _ if lower.starts_with("0x") => Some(hex(&w[2..]).ok_or_else(|| bad(t, &w))?),
                _ if lower.starts_with("0b") => Some(bits(&w[2..]).ok_or_else(|| bad(t, &w))?),
                _ if is_number(&w) => Some(w),
                _ => return Err(bad(t, &w)),
            }
        }
        _ => return Err(bad(t, "not a value")),
    })
}

/// A decimal number as MySQL writes one (sign, digits, point, exponent).
fn is_number(w: &str) -> bool {
    let digits = w.strip_prefix(['-', '+']).unwrap_or(w);
    !digits.is_empty()
        && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b))
}

/// Hex digits as text: the bytes, read as UTF-8 where they are (a hash a
/// `--hex-blob` dump wrote in hex), with U+FFFD where not.
fn hex(digits: &str) -> Option<String> {
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Binary digits as the decimal number they make (a `BIT` column).
fn bits(digits: &str) -> Option<String> {
    if digits.is_empty() || digits.len() > 64 {
        return None;
    }
    u64::from_str_radix(digits, 2).ok().map(|n| n.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The tables of a dump of one database (no `USE`).
    fn one(text: &str) -> Result<Dump, DumpError> {
        let mut dbs = parse_dump(text)?;
        assert!(dbs.len() <= 1 && dbs.iter().all(|d| d.name.is_none()));
        Ok(dbs.pop().map(|d| d.dump).unwrap_or_default())
    }

    fn cells(v: &[Option<&str>]) -> Vec<Cell> {
        v.iter().map(|c| c.map(String::from)).collect()
    }

    #[test]
    fn reads_what_mysqldump_writes() {
        let dump = "-- MySQL dump 10.13\n\
            /*!40101 SET NAMES utf8mb4 */;\n\
            DROP TABLE IF EXISTS `mailbox`;\n\
            CREATE TABLE `mailbox` (\n\
              `username` varchar(255) NOT NULL,\n\
              `password` varchar(255) NOT NULL,\n\
              `quota` bigint NOT NULL DEFAULT '0',\n\
              `active` tinyint(1) NOT NULL DEFAULT '1',\n\
              `note` text,\n\
              PRIMARY KEY (`username`),\n\
              KEY `domain` (`username`(10), `quota`)\n\
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='Postfix Admin; boxes';\n\
            LOCK TABLES `mailbox` WRITE;\n\
            INSERT INTO `mailbox` VALUES ('a@x.org','$2y$05$ab\\\\c',0,1,NULL),\
            ('O\\'B@x.org','h;#--',-5,0,'two\\nlines\\tand a \"\"q'' ');\n\
            # a comment\n\
            INSERT INTO `mailbox` (`active`, `username`, `password`) VALUES (b'1','c@x.org',0x2432);\n\
            UNLOCK TABLES;\n\
            -- Dump completed on 2024-03-01 10:00:00\n";
        let d = one(dump).unwrap();
        let t = &d.tables["mailbox"];
        assert_eq!(
            t.columns,
            ["username", "password", "quota", "active", "note"]
        );
        assert_eq!(
            t.rows,
            vec![
                cells(&[
                    Some("a@x.org"),
                    Some("$2y$05$ab\\c"),
                    Some("0"),
                    Some("1"),
                    None
                ]),
                cells(&[
                    Some("O'B@x.org"),
                    Some("h;#--"),
                    Some("-5"),
                    Some("0"),
                    Some("two\nlines\tand a \"\"q' ")
                ]),
                cells(&[Some("c@x.org"), Some("$2"), None, Some("1"), None]),
            ]
        );
    }

    /// A routine's body (`mysqldump --routines`) holds statements, an
    /// `INSERT` among them: code, not rows. So does a trigger's.
    #[test]
    fn routines_and_triggers_are_not_rows() {
        let dump = "CREATE TABLE `alias` (`address` varchar(255), `goto` text);\n\
            LOCK TABLES `alias` WRITE;\n\
            INSERT INTO `alias` VALUES ('a@x.org','b@x.org');\n\
            UNLOCK TABLES;\n\
            DELIMITER ;;\n\
            /*!50003 CREATE*/ /*!50003 TRIGGER `t` AFTER INSERT ON `alias` FOR EACH ROW BEGIN\n\
            INSERT INTO `alias` VALUES ('trigger@x.org','c@x.org'); END */;;\n\
            DELIMITER ;\n\
            delimiter ;;\n\
            CREATE PROCEDURE `p`(IN a INT)\n\
            BEGIN\n\
              SET @x = a;\n\
              INSERT INTO `alias` VALUES ('abuse@x.org','c@x.org');\n\
            END ;;\n\
            DELIMITER ;\n\
            INSERT INTO `alias` VALUES ('after@x.org', 'd@x.org');\n";
        let d = one(dump).unwrap();
        let keys: Vec<_> = d.tables["alias"]
            .rows
            .iter()
            .map(|r| r[0].clone().unwrap())
            .collect();
        assert_eq!(keys, ["a@x.org", "after@x.org"]);
        // A block that never ends is an error, not the rest of the dump
        // dropped.
        let open = dump.replace("DELIMITER ;\nINSERT", "INSERT");
        let e = one(&open).unwrap_err().to_string();
        assert!(e.contains("line 9") && e.contains("never ends"), "{e}");
        // The lines after a block keep their numbers.
        let bad = dump.replace("'after@x.org', 'd@x.org'", "'after@x.org', oops");
        let e = one(&bad).unwrap_err().to_string();
        assert!(e.contains("line 16"), "{e}");
    }

    #[test]
    fn other_value_forms() {
        let d = one("CREATE TABLE t (a text, b text, c int, d text, e text);\n\
             INSERT INTO db.t VALUES (_binary 'x\\0y', X'414243', 1.5e3, TRUE, \"dq\");\n\
             INSERT INTO `db`.`t` VALUE ('z', '', +7, false, 0b101);\n")
        .unwrap();
        assert_eq!(
            d.tables["t"].rows,
            vec![
                cells(&[
                    Some("x\0y"),
                    Some("ABC"),
                    Some("1.5e3"),
                    Some("1"),
                    Some("dq")
                ]),
                cells(&[Some("z"), Some(""), Some("+7"), Some("0"), Some("5")]),
            ]
        );
    }

    /// `--compatible=ansi` quotes names in double quotes; values stay in
    /// single ones.
    #[test]
    fn ansi_quoted_names() {
        let d = one(
            "CREATE TABLE \"alias\" (\"address\" varchar(255), \"goto\" text);\n\
             INSERT INTO \"postfix\".\"alias\" (\"goto\", \"address\") VALUES ('b@x', 'a@x');\n",
        )
        .unwrap();
        let t = &d.tables["alias"];
        assert_eq!(t.columns, ["address", "goto"]);
        assert_eq!(t.rows, vec![cells(&[Some("a@x"), Some("b@x")])]);
    }

    /// mysqldump's first comment line without its last: cut short, even
    /// between two statements; without its comments nothing tells.
    #[test]
    fn a_dump_with_its_header_needs_its_trailer() {
        let body = "CREATE TABLE t (a text);\nINSERT INTO t VALUES ('x');\n";
        let whole = format!("-- MariaDB dump 10.19\n{body}-- Dump completed on 2024-03-01\n");
        assert_eq!(one(&whole).unwrap().tables["t"].rows.len(), 1);
        let cut = format!("-- MySQL dump 10.13\n{body}");
        let e = one(&cut).unwrap_err();
        assert!(e.why.contains("cut short"), "{e}");
        assert_eq!(e.line, 3);
        // MariaDB's sandbox line before the header (as mariadb-dump
        // 10.11.19 writes it, with its trailing blank): the header still.
        for sandbox in [
            "/*!999999\\- enable the sandbox mode */ ",
            "/*M!999999\\- x */",
        ] {
            let cut = format!("{sandbox}\n-- MariaDB dump 10.19\n{body}");
            let e = one(&cut).unwrap_err();
            assert!(e.why.contains("cut short"), "{sandbox}: {e}");
            assert!(one(&format!("{cut}-- Dump completed on 2024-03-01\n")).is_ok());
        }
        // A line of mysqldump's own, not a comment alone: no header.
        assert!(one(&format!(
            "/*!40101 SET NAMES utf8 */;\n-- MySQL dump\n{body}"
        ))
        .is_ok());
        assert!(one(body).is_ok());
        let e = one("<?xml version=\"1.0\"?>\n<mysqldump>").unwrap_err();
        assert!(e.why.contains("--xml"), "{e}");
    }

    /// `USE` (`--databases`, `--all-databases`) starts another database's
    /// tables: a table of one name in two databases is two tables, and a
    /// database met again goes on where it was. Databases without tables
    /// are left out.
    #[test]
    fn each_database_keeps_its_tables() {
        let dbs = parse_dump(
            "CREATE TABLE t (a text);\nINSERT INTO t VALUES ('0');\n\
             CREATE DATABASE /*!32312 IF NOT EXISTS*/ `pf`;\nUSE `pf`;\n\
             CREATE TABLE t (a text);\nINSERT INTO t VALUES ('1');\n\
             USE `empty`;\nUSE rc;\nCREATE TABLE `T` (b text);\n\
             USE `pf`;\nINSERT INTO t VALUES ('2');\n",
        )
        .unwrap();
        let names: Vec<Option<&str>> = dbs.iter().map(|d| d.name.as_deref()).collect();
        assert_eq!(names, [None, Some("pf"), Some("rc")]);
        let rows = |i: usize| dbs[i].dump.tables.get("t").map(|t| t.rows.clone());
        assert_eq!(rows(0), Some(vec![cells(&[Some("0")])]));
        assert_eq!(
            rows(1),
            Some(vec![cells(&[Some("1")]), cells(&[Some("2")])])
        );
        assert_eq!(dbs[2].dump.tables["t"].columns, ["b"]);
    }

    /// Line ends inside strings (raw, or escaped by a backslash) count
    /// for the lines of what follows; a backquote doubled inside a name is
    /// one backquote.
    #[test]
    fn lines_inside_strings_count_and_names_keep_their_quotes() {
        let e = one("CREATE TABLE t (a text, b text);\n\
             INSERT INTO t VALUES ('two\\\nlines', 'x\ny');\n\
             INSERT INTO t VALUES (NOW(), 1);\n")
        .unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        let d =
            one("CREATE TABLE `a``b` (`c``d` text);\nINSERT INTO `a``b` VALUES ('x');\n").unwrap();
        assert_eq!(d.tables["a`b"].columns, ["c`d"]);
        assert_eq!(d.tables["a`b"].rows, vec![cells(&[Some("x")])]);
        let e = one("CREATE TABLE `x\ny` (a text);\nINSERT INTO u VALUES (1);\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    /// Every fault names its line, never guesses.
    #[test]
    fn faults_name_the_line() {
        let fault = |text: &str| one(text).unwrap_err();
        let e = fault("CREATE TABLE t (a text);\n\nINSERT INTO t VALUES ('x', 'y');\n");
        assert_eq!(
            (e.line, e.why.contains("2 values for 1 columns")),
            (3, true),
            "{e}"
        );
        let e = fault("INSERT INTO u VALUES ('x');\n");
        assert!(e.why.contains("no CREATE TABLE u before it"), "{e}");
        let e = fault("CREATE TABLE t (a text);\nINSERT INTO t VALUES ('open);\n");
        assert_eq!(e.line, 2, "{e}");
        let e = fault("CREATE TABLE t (a text);\nINSERT INTO t VALUES ('x')");
        assert!(e.why.contains("cut short"), "{e}");
        let e = fault("/* never\nends");
        assert_eq!((e.line, e.why.contains("never ends")), (1, true), "{e}");
        let e = fault("CREATE TABLE t (a text);\nCREATE TABLE `T` (b text);\n");
        assert!(e.why.contains("created twice"), "{e}");
        let e = fault("CREATE TABLE t (a text);\nINSERT INTO t VALUES (NOW());\n");
        assert!(e.why.contains("does not take (NOW"), "{e}");
        let e = fault("CREATE TABLE t (a text);\nINSERT INTO t SELECT * FROM u;\n");
        assert!(e.why.contains("without VALUES"), "{e}");
        let e = fault("CREATE TABLE t (a text);\nINSERT INTO t VALUES (X'4');\n");
        assert!(e.why.contains("does not take"), "{e}");
        // Words that only look like numbers: a bare sign, an exponent.
        for word in ["-", "e5", "E", "+"] {
            let e = fault(&format!(
                "CREATE TABLE t (a text);\nINSERT INTO t VALUES ({word});\n"
            ));
            assert!(
                e.why.contains(&format!("does not take ({word})")),
                "{word}: {e}"
            );
        }
        let d = one("CREATE TABLE t (a text);\nINSERT INTO t VALUES (.5);\n").unwrap();
        assert_eq!(d.tables["t"].rows, vec![cells(&[Some(".5")])]);
        assert_eq!(one("").unwrap(), Dump::default());
        assert_eq!(one("-- only\n/* comments */\n").unwrap(), Dump::default());
    }

    /// pg_dump's default output is named as a PostgreSQL dump at its first
    /// `COPY ... FROM stdin;`, with the ways to read it; its `--inserts`
    /// form, and a value that only says COPY, are read as statements.
    #[test]
    fn a_postgresql_copy_dump_is_named() {
        let dump = "--\n-- PostgreSQL database dump\n--\n\
                    CREATE TABLE public.mailbox (username character varying(255));\n\
                    COPY public.mailbox (username) FROM stdin;\n\
                    alice@example.com\n\\.\n";
        let e = one(dump).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(
            e.why.contains("PostgreSQL dump") && e.why.contains("pg_dump --inserts"),
            "{e}"
        );
        let d = one(
            "CREATE TABLE public.mailbox (username character varying(255));\n\
             INSERT INTO public.mailbox VALUES ('copy x from stdin;');\n",
        )
        .unwrap();
        assert_eq!(d.tables.len(), 1);
    }

    /// Bytes changed, cut, repeated anywhere in a dump: an answer or a
    /// fault with a line in the text, never a panic. A deterministic
    /// mutation loop (xorshift), run with the unit tests.
    #[test]
    fn mutated_dumps_never_panic() {
        let base = "CREATE TABLE `m` (`u` text, `p` text, `q` int, KEY `k` (`u`(3)));\n\
                    INSERT INTO `m` VALUES ('a@x\\'y','$2y$\\\\z',1),('b',NULL,-2);\n\
                    /*!40000 ALTER TABLE `m` ENABLE KEYS */; -- end\n# c\n";
        let pieces = [
            "'", "\\", "`", "(", ")", ",", ";", "/*", "*/", "-- ", "#", "\n", "X", "0x", "b'",
            "_bin ",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut text: Vec<char> = base.chars().collect();
            for _ in 0..1 + next() % 4 {
                let at = (next() % (text.len() as u64 + 1)) as usize;
                match next() % 3 {
                    0 if at < text.len() => {
                        text.remove(at);
                    }
                    1 => text.truncate(at),
                    _ => {
                        let p = pieces[(next() % pieces.len() as u64) as usize];
                        for (i, c) in p.chars().enumerate() {
                            text.insert(at.min(text.len()) + i, c);
                        }
                    }
                }
            }
            let text: String = text.into_iter().collect();
            if let Err(e) = parse_dump(&text) {
                assert!(
                    e.line >= 1 && e.line <= text.lines().count().max(1),
                    "{e}: {text:?}"
                );
            }
        }
    }
}
