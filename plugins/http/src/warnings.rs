//! What a configuration may still say but should not: accepted, and logged when the plugin
//! is configured.

use wasmgate_glue::ConfigError;

/// Warnings about a configuration that is accepted, each naming the field like an error
/// (`rules[0].match.prefix: use match.path.prefix`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings(Vec<ConfigError>);

impl Warnings {
    /// Warn about `field` (relative to where the caller is).
    pub fn warn(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError::new(field, reason));
    }

    /// Run `f`, whose warnings are about fields under `parent` (as [`ConfigError::at`] nests
    /// errors).
    pub fn within<T>(&mut self, parent: &str, f: impl FnOnce(&mut Warnings) -> T) -> T {
        let start = self.0.len();
        let out = f(self);
        for warning in &mut self.0[start..] {
            *warning = std::mem::replace(warning, ConfigError::new("", "")).at(parent);
        }
        out
    }

    /// Every warning, in the order of the fields.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_warnings_name_the_whole_field() {
        let mut warnings = Warnings::default();
        warnings.warn("mode", "old");
        warnings.within("rules[1]", |w| {
            w.within("match", |w| w.warn("prefix", "use match.path.prefix"))
        });
        let all: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            all,
            ["mode: old", "rules[1].match.prefix: use match.path.prefix"]
        );
        assert!(!warnings.is_empty());
        assert!(Warnings::default().is_empty());
    }
}
