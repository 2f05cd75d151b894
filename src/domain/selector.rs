//! Where a value sits inside a platform item: a JSON pointer or a JSONPath.

use std::fmt;

/// Where a value sits inside a platform item: a JSON pointer (`/a/b`) or an
/// RFC 9535 JSONPath (`$.customFields[?@.name=='Teams link'].value`, the
/// first match). An empty text selects nothing.
#[derive(Debug, Clone)]
pub enum Selector {
    /// Selects nothing (the field is not mapped).
    None,
    /// A JSON pointer.
    Pointer(String),
    /// A JSONPath query.
    Path(serde_json_path::JsonPath),
}

impl Selector {
    /// Parses a pointer (starting with `/`) or a path (starting with `$`).
    ///
    /// # Errors
    /// Neither, or a path that does not parse (the text says where).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.chars().next() {
            None => Ok(Self::None),
            Some('/') => Ok(Self::Pointer(text.to_owned())),
            Some('$') => serde_json_path::JsonPath::parse(text)
                .map(Self::Path)
                .map_err(|e| format!("{text:?} is not a JSONPath: {e}")),
            Some(_) => Err(format!("must be a JSON pointer (\"/a/b\") or a JSONPath (\"$.a.b\"), got {text:?}")),
        }
    }

    /// The selected value, if any.
    pub fn select<'v>(&self, value: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        match self {
            Self::None => None,
            Self::Pointer(p) => value.pointer(p),
            Self::Path(path) => path.query(value).first(),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("(none)"),
            Self::Pointer(p) => f.write_str(p),
            Self::Path(path) => write!(f, "{path}"),
        }
    }
}
