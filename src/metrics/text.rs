//! Prometheus text exposition format 0.0.4: `# HELP`, `# TYPE` and sample
//! lines, with the format's escaping.

use std::fmt::Write as _;

/// The `Content-Type` of a scrape answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A label value with `\`, `"` and newline escaped.
pub fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes only `\` and newline.
fn escape_help(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A value as the format writes it: integers plainly, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // `Display` for f64 never uses an exponent and round-trips.
        let _ = write!(out, "{v}");
    }
}

/// Builds one exposition. Families must be written whole, one after the
/// other (the format requires a family's lines to be contiguous).
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Exposition::default()
    }

    /// Starts a family: its HELP and TYPE lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(help, &mut self.out);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// One sample line. `name` may carry a histogram suffix (`_bucket`…).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label_value(v, &mut self.out);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        format_value(value, &mut self.out);
        self.out.push('\n');
    }

    /// A counter or integer gauge sample.
    pub fn int(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        // Exact up to 2^53, which counters do not reach in practice.
        self.sample(name, labels, value as f64);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        let mut e = Exposition::new();
        e.family("x_total", Kind::Counter, "a \\ help\nline \"quoted\"");
        e.int("x_total", &[("watch", "a\\b\"c\nd"), ("type", "ADDED")], 3);
        e.sample("y", &[], 0.25);
        e.sample("y", &[("le", "+Inf")], f64::INFINITY);
        e.sample("y", &[], f64::NAN);
        assert_eq!(
            e.finish(),
            "# HELP x_total a \\\\ help\\nline \"quoted\"\n# TYPE x_total counter\nx_total{watch=\"a\\\\b\\\"c\\nd\",type=\"ADDED\"} 3\ny 0.25\ny{le=\"+Inf\"} +Inf\ny NaN\n"
        );
    }

    #[test]
    fn values_never_use_exponents() {
        let mut s = String::new();
        format_value(1_763_790_000.125, &mut s);
        s.push(' ');
        format_value(0.0005, &mut s);
        s.push(' ');
        format_value(1e21, &mut s);
        assert_eq!(s, "1763790000.125 0.0005 1000000000000000000000");
    }
}
