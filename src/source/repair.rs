//! Repairs for what a platform can put inside JSON strings: one bad item
//! must not make the whole page unreadable.

use serde_json::Value;

/// Whether any key or string in `value` holds U+0000: PostgreSQL text cannot,
/// and [`repair_strings`] turns unpaired surrogates into it.
pub(super) fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Rewrites the faults a platform can put inside JSON strings that make
/// strict parsing refuse the whole body: raw control characters become
/// escapes, and an unpaired UTF-16 surrogate escape becomes `\u0000`, which
/// [`holds_nul`] then finds in its item alone. Everything else is copied.
pub(super) fn repair_strings(body: &[u8]) -> Vec<u8> {
    let hex = |at: usize| {
        body.get(at..at + 4).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    let escape_at = |at: usize| (body.get(at..at + 2) == Some(b"\\u")).then(|| hex(at + 2)).flatten();
    let mut out = Vec::with_capacity(body.len());
    let (mut i, mut in_string) = (0, false);
    while i < body.len() {
        let b = body[i];
        if !in_string {
            in_string = b == b'"';
            out.push(b);
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = false;
                out.push(b);
                i += 1;
            }
            b'\\' => match escape_at(i) {
                Some(0xD800..=0xDBFF) if escape_at(i + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) => {
                    out.extend_from_slice(&body[i..i + 12]);
                    i += 12;
                }
                Some(0xD800..=0xDFFF) => {
                    out.extend_from_slice(b"\\u0000");
                    i += 6;
                }
                _ => {
                    let end = (i + 2).min(body.len());
                    out.extend_from_slice(&body[i..end]);
                    i = end;
                }
            },
            0x00..=0x1F => {
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}
