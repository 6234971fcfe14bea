//! Configuration errors: data, not strings. Each one names the file, the
//! position (1-based line and column, in characters) and the dotted key.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the caller named it.
    pub file: PathBuf,
    /// 1-based line of the offending key, value or table header.
    pub line: Option<usize>,
    /// 1-based column (in characters) on that line.
    pub column: Option<usize>,
    /// Dotted key, e.g. `watch[1].cluster`, `clusters.local.server`
    /// (`[n]` is the 0-based index of an array element). Empty when the
    /// problem concerns the file as a whole (unreadable, TOML syntax).
    pub key: String,
    /// What is wrong, and where useful what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Sorts by position (problems without a line first), keeping the
    /// discovery order of problems on the same spot.
    pub(crate) fn sorted(mut errors: Vec<ConfigError>) -> ConfigErrors {
        errors.sort_by_key(|e| (e.line.unwrap_or(0), e.column.unwrap_or(0)));
        ConfigErrors(errors)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: Option<usize>, column: Option<usize>, key: &str) -> ConfigError {
        ConfigError {
            file: PathBuf::from("kwatchd.toml"),
            line,
            column,
            key: key.to_string(),
            message: "cluster \"prod\" is not defined (defined: local)".to_string(),
        }
    }

    #[test]
    fn display_has_file_line_column_key_message() {
        let e = error(Some(12), Some(3), "watch[1].cluster");
        assert_eq!(
            e.to_string(),
            "kwatchd.toml:12:3: watch[1].cluster: cluster \"prod\" is not defined (defined: local)"
        );
    }

    #[test]
    fn display_without_position_or_key() {
        let e = error(None, None, "");
        assert_eq!(
            e.to_string(),
            "kwatchd.toml: cluster \"prod\" is not defined (defined: local)"
        );
    }

    #[test]
    fn errors_display_one_per_line_in_file_order() {
        let errors = ConfigErrors::sorted(vec![
            error(Some(9), Some(1), "b"),
            error(Some(2), Some(5), "a"),
        ]);
        let text = errors.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("kwatchd.toml:2:5: a:"));
        assert!(lines[1].starts_with("kwatchd.toml:9:1: b:"));
    }
}
