//! Prometheus text exposition format 0.0.4: names, escaping, sample lines.

use std::fmt::Write;

use crate::InvalidArgument;

/// Content type of the text this module writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Checks a metric name against `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn check_metric_name(name: &str) -> Result<(), InvalidArgument> {
    let valid = name.bytes().enumerate().all(|(i, byte)| {
        byte.is_ascii_alphabetic()
            || byte == b'_'
            || byte == b':'
            || (i > 0 && byte.is_ascii_digit())
    });
    if valid && !name.is_empty() {
        Ok(())
    } else {
        Err(InvalidArgument::new(
            "name",
            format!("{name:?} is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"),
        ))
    }
}

/// Checks a label name against `[a-zA-Z_][a-zA-Z0-9_]*` without the reserved `__` prefix.
pub fn check_label_name(name: &str) -> Result<(), InvalidArgument> {
    let valid = name.bytes().enumerate().all(|(i, byte)| {
        byte.is_ascii_alphabetic() || byte == b'_' || (i > 0 && byte.is_ascii_digit())
    });
    if valid && !name.is_empty() && !name.starts_with("__") {
        Ok(())
    } else {
        Err(InvalidArgument::new(
            "label_names",
            format!(
                "{name:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, no __ prefix)"
            ),
        ))
    }
}

/// Appends `x` as Prometheus spells floats: `+Inf`, `-Inf`, `NaN`, or a
/// shortest round-trip decimal (`0.25`, `1e-7`).
pub fn write_float(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("NaN");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // Debug is the shortest representation that parses back to the same f64.
        let _ = write!(out, "{x:?}");
    }
}

fn write_escaped(out: &mut String, text: &str, quote: bool) {
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            _ => out.push(ch),
        }
    }
}

/// Appends the `# HELP` and `# TYPE` lines of a metric.
pub fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    write_escaped(out, help, false);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// The label pairs of one sample: a child's labels, plus `le` for histogram buckets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Labels<'a> {
    /// Label names, in order.
    pub names: &'a [String],
    /// Label values, one per name.
    pub values: &'a [String],
}

/// The value of one sample.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    /// An integer count.
    Int(u64),
    /// A float.
    Float(f64),
}

/// Appends one sample line: `name{labels,le="..."} value`.
pub fn write_sample(
    out: &mut String,
    name: &str,
    labels: Labels<'_>,
    le: Option<f64>,
    value: Value,
) {
    out.push_str(name);
    if !labels.names.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        for (label, text) in labels.names.iter().zip(labels.values) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(label);
            out.push_str("=\"");
            write_escaped(out, text, true);
            out.push('"');
        }
        if let Some(le) = le {
            if !first {
                out.push(',');
            }
            out.push_str("le=\"");
            write_float(out, le);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    match value {
        Value::Int(count) => {
            let _ = write!(out, "{count}");
        }
        Value::Float(x) => write_float(out, x),
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prometheus_grammar() {
        for good in ["a", "http_requests_total", "ns:sub_1", "_x"] {
            assert!(check_metric_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1a", "a-b", "a b", "é"] {
            assert_eq!(
                check_metric_name(bad).unwrap_err().argument,
                "name",
                "{bad}"
            );
        }
        for good in ["a", "method", "_x1"] {
            assert!(check_label_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1a", "a:b", "__reserved"] {
            assert_eq!(check_label_name(bad).unwrap_err().argument, "label_names");
        }
    }

    #[test]
    fn floats_are_spelled_as_prometheus_parses_them() {
        let cases = [
            (0.25, "0.25"),
            (1.0, "1.0"),
            (1e-7, "1e-7"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (x, text) in cases {
            let mut out = String::new();
            write_float(&mut out, x);
            assert_eq!(out, text);
        }
    }

    #[test]
    fn samples_escape_help_and_label_values() {
        let mut out = String::new();
        write_header(&mut out, "m", "a \\ b\nc \"q\"", "counter");
        let names = ["path".to_owned()];
        let values = ["/a\"b\\c\nd".to_owned()];
        let labels = Labels {
            names: &names,
            values: &values,
        };
        write_sample(&mut out, "m", labels, None, Value::Int(3));
        write_sample(&mut out, "h_bucket", labels, Some(0.5), Value::Int(1));
        write_sample(&mut out, "g", Labels::default(), None, Value::Float(-2.5));
        assert_eq!(
            out,
            "# HELP m a \\\\ b\\nc \"q\"\n# TYPE m counter\n\
             m{path=\"/a\\\"b\\\\c\\nd\"} 3\n\
             h_bucket{path=\"/a\\\"b\\\\c\\nd\",le=\"0.5\"} 1\n\
             g -2.5\n"
        );
    }
}
