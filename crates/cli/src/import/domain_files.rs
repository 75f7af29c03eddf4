//! One passwd-file per domain: Dovecot's `args = /etc/auth/%d/passwd`
//! (2.3) or `passwd_file_path = /etc/dovecot/%{user | domain}/passwd`
//! (2.4), where the file is chosen by the domain of the login (Dovecot
//! docs, "Passwd-file", "Multiple passwd files"). Given that path as the
//! source, the import reads every file it names, the domain taken from
//! the file's place, so that a layout of hundreds of domains is one
//! import, in one transaction.
//!
//! The domain variable may stand anywhere in one component of the path
//! (`/etc/auth/%d/passwd`, `/etc/dovecot/users.%d`); the directory above
//! is listed and every entry that fits, whose variable part is a domain,
//! is one file. Other variables are not expanded (they would name files
//! per user, which no import can list).

use mailtable_core::Domain;
use std::path::PathBuf;

/// A path with the domain variable in one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The directory whose entries are the domains.
    pub dir: PathBuf,
    /// The component's text before and after the variable.
    pub prefix: String,
    /// See `prefix`.
    pub suffix: String,
    /// The rest of the path below the component (empty: the component is
    /// the file).
    pub rest: PathBuf,
}

/// Where the first spelling of "the login's domain" in `path` starts, and
/// its length: 2.3's `%d`, `%Ld` (lower-cased, as a login is by default
/// anyway) and `%{domain}`, 2.4's `%{user | domain}` (blanks optional).
fn variable_at(path: &str) -> Option<(usize, usize)> {
    path.match_indices('%').find_map(|(i, _)| {
        let after = &path[i + 1..];
        if after.starts_with('d') {
            return Some((i, 2));
        }
        if after.starts_with("Ld") {
            return Some((i, 3));
        }
        let inner = after.strip_prefix('{')?;
        let end = inner.find('}')?;
        let name: String = inner[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        matches!(name.as_str(), "domain" | "user|domain").then_some((i, end + 3))
    })
}

/// The first Dovecot variable of `path` that is not the login's domain
/// (`%u`, `%n`, `%{domain | lower}`, ...), for the message when such a
/// path names no file.
pub fn other_variable(path: &str) -> Option<String> {
    path.match_indices('%').find_map(|(i, _)| {
        let after = &path[i + 1..];
        let v = match after.strip_prefix('{') {
            Some(inner) => format!("%{{{}}}", &inner[..inner.find('}')?]),
            None => format!("%{}", after.chars().next()?),
        };
        (variable_at(&v).is_none()).then_some(v)
    })
}

/// The template of `path`, `None` when it has no domain variable.
/// `Err`: a variable twice (the domain in two places of one path), or
/// the variable in a path's first component.
pub fn template(path: &str) -> Result<Option<Template>, String> {
    let Some((at, len)) = variable_at(path) else {
        return Ok(None);
    };
    let after = &path[at + len..];
    if variable_at(after).is_some() {
        return Err(format!(
            "{path}: the domain variable twice in one path: give one of its files at a time"
        ));
    }
    let start = path[..at].rfind('/').map_or(0, |i| i + 1);
    let (component_after, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i + 1..]),
        None => (after, ""),
    };
    let dir = match &path[..start] {
        "" => ".",
        d => d,
    };
    Ok(Some(Template {
        dir: PathBuf::from(dir),
        prefix: path[start..at].to_string(),
        suffix: component_after.to_string(),
        rest: PathBuf::from(rest),
    }))
}

/// What the listing of a template found: each domain's file, and the
/// entries of the directory that fit but are left out, with why.
#[derive(Debug, Default)]
pub struct Found {
    /// `(domain, file)`, sorted by domain.
    pub files: Vec<(Domain, PathBuf)>,
    /// `(path, why)` of what is left out.
    pub left_out: Vec<(PathBuf, String)>,
}

/// The files `t` names, listing its directory.
pub fn expand(t: &Template) -> std::io::Result<Found> {
    let mut found = Found::default();
    let mut names: Vec<String> = std::fs::read_dir(&t.dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let middles: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_prefix(&t.prefix)?.strip_suffix(&t.suffix))
        .collect();
    for name in &names {
        let Some(middle) = name
            .strip_prefix(&t.prefix)
            .and_then(|m| m.strip_suffix(&t.suffix))
            .filter(|m| !m.is_empty())
        else {
            continue;
        };
        let file = match t.rest.as_os_str().is_empty() {
            true => t.dir.join(name),
            // Below a component, only a directory can hold the file.
            false if t.dir.join(name).is_dir() => t.dir.join(name).join(&t.rest),
            false => continue,
        };
        if let Some(why) = not_a_domain_file(middle, &middles) {
            found.left_out.push((file, why));
            continue;
        }
        match Domain::parse(middle) {
            // Dovecot lower-cases the login (auth_username_format %Lu, the
            // default; ASCII only: str_lcase in src/lib/strfuncs.c), so a
            // file under a name with an upper-case ASCII letter is never
            // read. A Unicode name (`bücher.de`) is read for the logins
            // written with it, and comes over in its IDNA form.
            Ok(d) if !middle.bytes().any(|b| b.is_ascii_uppercase()) => {
                if file.is_file() {
                    found.files.push((d, file));
                } else if file.symlink_metadata().is_ok() {
                    found.left_out.push((
                        file,
                        "not a file (a directory, or a link to nothing)".into(),
                    ));
                } else if !t.rest.as_os_str().is_empty() {
                    found
                        .left_out
                        .push((file, "no such file: no user of this domain".into()));
                }
            }
            Ok(_) => found.left_out.push((
                file,
                format!(
                    "{middle:?} has upper-case letters: Dovecot looks for the lower-cased \
                     domain of a login, so it never read this file"
                ),
            )),
            Err(e) => found
                .left_out
                .push((file, format!("{middle:?} is no domain ({e})"))),
        }
    }
    // A Unicode name's domain sorts by its IDNA form, not where its name did.
    found.files.sort();
    Ok(found)
}

/// Why a name that fits the template is still no domain's file: a
/// backup an editor, the package manager or an admin left
/// (`users.example.org.bak`, `.dpkg-old`, `.ucf-old`, `~`, or any
/// `example.org.SOMETHING` beside `example.org` itself), a last label of
/// digits (`example.org.1`, `.20240101`: no top-level domain is one), or
/// a name without a dot (`localhost`, no domain mail is addressed to).
/// Dovecot would read such a file only for logins of that "domain",
/// which nobody has.
fn not_a_domain_file(middle: &str, listed: &[&str]) -> Option<String> {
    const BACKUPS: [&str; 20] = [
        ".bak",
        ".old",
        ".orig",
        ".save",
        ".swp",
        ".tmp",
        ".dpkg-old",
        ".dpkg-dist",
        ".dpkg-new",
        ".rpmnew",
        ".rpmsave",
        ".ucf-old",
        ".ucf-dist",
        ".ucf-new",
        ".backup",
        ".copy",
        ".prev",
        ".disabled",
        "-old",
        "_old",
    ];
    // `example.org` then `example.org.uk` are two domains; a suffix that
    // is no plain label (`.copy-2`, `-old`, `~`) makes a copy.
    let copy_of = listed.iter().find(|d| {
        middle
            .strip_prefix(**d)
            .is_some_and(|rest| match rest.strip_prefix('.') {
                Some(label) => !label.is_empty() && !label.bytes().all(|b| b.is_ascii_alphabetic()),
                None => rest.starts_with(['-', '_', '~']),
            })
    });
    if let Some(d) = copy_of {
        return Some(format!(
            "{middle:?} looks like a copy of {d}'s file, not a domain"
        ));
    }
    let last = middle.rsplit('.').next().unwrap_or_default();
    if middle.ends_with('~')
        || BACKUPS.iter().any(|b| middle.ends_with(b))
        || (middle.contains('.') && last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(format!("{middle:?} looks like a backup copy, not a domain"));
    }
    if !middle.contains('.') {
        return Some(format!(
            "{middle:?} has no dot: no domain mail is addressed to (read it on its own with \
             --login-domain if it is one)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(dir: &str, prefix: &str, suffix: &str, rest: &str) -> Option<Template> {
        Some(Template {
            dir: dir.into(),
            prefix: prefix.into(),
            suffix: suffix.into(),
            rest: rest.into(),
        })
    }

    #[test]
    fn the_domain_variable_in_each_spelling_and_place() {
        assert_eq!(template("/etc/dovecot/users"), Ok(None));
        assert_eq!(
            template("/etc/auth/%d/passwd"),
            Ok(t("/etc/auth/", "", "", "passwd"))
        );
        for v in [
            "%Ld",
            "%{domain}",
            "%{user | domain}",
            "%{user|domain}",
            "%{ user |domain }",
        ] {
            assert_eq!(
                template(&format!("/etc/dovecot/{v}/passwd")),
                Ok(t("/etc/dovecot/", "", "", "passwd")),
                "{v}"
            );
        }
        assert_eq!(
            template("/etc/dovecot/users.%d"),
            Ok(t("/etc/dovecot/", "users.", "", ""))
        );
        assert_eq!(
            template("/home/vmail/d-%d.x/etc/passwd"),
            Ok(t("/home/vmail/", "d-", ".x", "etc/passwd"))
        );
        assert_eq!(template("%d/passwd"), Ok(t(".", "", "", "passwd")));
        assert!(template("/home/%d/etc/%d.passwd").is_err());
        // Other variables stay text: a file per user cannot be listed.
        assert_eq!(template("/etc/%u/passwd"), Ok(None));
        assert_eq!(template("/etc/%{user}/passwd"), Ok(None));
        assert_eq!(other_variable("/etc/%u/passwd").as_deref(), Some("%u"));
        assert_eq!(
            other_variable("/etc/%{domain | lower}/p").as_deref(),
            Some("%{domain | lower}")
        );
        assert_eq!(other_variable("/etc/%d/passwd"), None);
        assert_eq!(other_variable("/etc/passwd"), None);
    }

    #[test]
    fn a_listing_takes_domains_and_says_what_it_leaves() {
        let dir = tempfile::tempdir().unwrap();
        for (name, file) in [
            ("example.org", true),
            ("example.net", true),
            ("Example.com", true),
            ("lost+found", false),
            ("empty.example", false),
            ("example.org.bak", true),
            ("example.org.dpkg-old", true),
            ("example.org.20240101", true),
            ("example.org.copy-2", true),
            ("other.example.ucf-old", true),
            ("example.org.uk", true),
            ("localhost", true),
            ("b\u{fc}cher.de", true),
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            if file {
                std::fs::write(dir.path().join(name).join("passwd"), "a:{PLAIN}x\n").unwrap();
            }
        }
        std::fs::write(dir.path().join("README"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("dir.example/passwd")).unwrap();
        let path = format!("{}/%d/passwd", dir.path().display());
        let found = expand(&template(&path).unwrap().unwrap()).unwrap();
        let files: Vec<(&str, PathBuf)> = found
            .files
            .iter()
            .map(|(d, f)| {
                (
                    d.as_str(),
                    f.strip_prefix(dir.path()).unwrap().to_path_buf(),
                )
            })
            .collect();
        assert_eq!(
            files,
            [
                ("example.net", PathBuf::from("example.net/passwd")),
                ("example.org", PathBuf::from("example.org/passwd")),
                ("example.org.uk", PathBuf::from("example.org.uk/passwd")),
                // Read by Dovecot for `a@bücher.de`; its IDNA form sorts here.
                ("xn--bcher-kva.de", PathBuf::from("b\u{fc}cher.de/passwd")),
            ]
        );
        let left: Vec<String> = found
            .left_out
            .iter()
            .map(|(p, why)| format!("{}: {why}", p.strip_prefix(dir.path()).unwrap().display()))
            .collect();
        assert_eq!(left.len(), 10, "{left:?}");
        for (i, start) in [
            "Example.com/passwd: \"Example.com\" has upper-case",
            "dir.example/passwd: not a file",
            "empty.example/passwd: no such file",
            "example.org.20240101/passwd: \"example.org.20240101\" looks like a copy of example.org",
            "example.org.bak/passwd: \"example.org.bak\" looks like a backup",
            "example.org.copy-2/passwd: \"example.org.copy-2\" looks like a copy of example.org",
            "example.org.dpkg-old/passwd: \"example.org.dpkg-old\" looks like a copy",
            "localhost/passwd: \"localhost\" has no dot",
            "lost+found/passwd: \"lost+found\" has no dot",
            "other.example.ucf-old/passwd: \"other.example.ucf-old\" looks like a backup",
        ]
        .iter()
        .enumerate()
        {
            assert!(left[i].starts_with(start), "{i}: {left:?}");
        }
    }
}
