//! The report, as text (one line per check, the fix on the same line) or
//! JSON. Pure: literal checks in, a string out.

use super::{Check, Status};

/// Whether every check holds or does not apply.
pub(crate) fn all_hold(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status != Status::Problem)
}

fn count(checks: &[Check], s: Status) -> usize {
    checks.iter().filter(|c| c.status == s).count()
}

/// `ok   name  message`, `FAIL name  message -- fix: ...`, `n/a  name  why`;
/// then a summary line.
pub(crate) fn text(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let tag = match c.status {
            Status::Ok => "ok  ",
            Status::Problem => "FAIL",
            Status::NotApplicable => "n/a ",
        };
        // One line per check, whatever a daemon printed.
        let message = c.message.replace('\n', " ");
        out.push_str(&format!("{tag} {:<width$}  {message}", c.name));
        if let Some(fix) = &c.fix {
            out.push_str(&format!(" -- fix: {}", fix.replace('\n', " ")));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "{} ok, {} problem(s), {} not applicable\n",
        count(checks, Status::Ok),
        count(checks, Status::Problem),
        count(checks, Status::NotApplicable)
    ));
    out
}

/// `{"ok": bool, "problems": N, "checks": [{"name", "status", "message", "fix"?}]}`.
pub(crate) fn json(checks: &[Check]) -> String {
    let v = serde_json::json!({
        "ok": all_hold(checks),
        "problems": count(checks, Status::Problem),
        "checks": checks,
    });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&v).unwrap_or_else(|_| "{}".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Check> {
        vec![
            Check::ok("config", "/etc/mail/mailtable.toml parses"),
            Check::problem(
                "database.schema",
                "schema version 1; these binaries know 2",
                "mailtable migrate",
            ),
            Check::na("serve", "no [serve] listener\nin the config"),
        ]
    }

    #[test]
    fn text_is_one_line_per_check() {
        assert_eq!(
            text(&sample()),
            "ok   config           /etc/mail/mailtable.toml parses\n\
             FAIL database.schema  schema version 1; these binaries know 2 -- fix: mailtable migrate\n\
             n/a  serve            no [serve] listener in the config\n\
             1 ok, 1 problem(s), 1 not applicable\n"
        );
        assert!(!all_hold(&sample()));
        assert!(all_hold(&sample()[2..]));
    }

    #[test]
    fn json_shape() {
        let v: serde_json::Value = serde_json::from_str(&json(&sample())).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["problems"], 1);
        assert_eq!(v["checks"][1]["status"], "problem");
        assert_eq!(v["checks"][1]["fix"], "mailtable migrate");
        assert_eq!(v["checks"][2]["status"], "not_applicable");
        assert!(v["checks"][0].get("fix").is_none());
    }
}
