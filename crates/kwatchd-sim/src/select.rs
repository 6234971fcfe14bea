//! Label and field selectors: the equality-based subset the watch protocol needs, and the per-watch filter.

use super::store::Labels;
use super::Resource;

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
}

/// `labelSelector`: comma-separated `k=v`, `k==v`, `k!=v`, `k`, `!k` (all must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector(Vec<LabelReq>);

fn valid_key(k: &str) -> Result<String, String> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!("invalid label key {k:?}"))
    }
}

fn valid_value(v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        Ok(v.to_string())
    } else {
        Err(format!("invalid label value {v:?}"))
    }
}

impl LabelSelector {
    /// Parse; set-based forms (`in`, `notin`) are refused rather than misread.
    pub(crate) fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let req = if let Some((k, v)) = term.split_once("!=") {
                LabelReq::Ne(valid_key(k)?, valid_value(v)?)
            } else if let Some((k, v)) = term.split_once("==") {
                LabelReq::Eq(valid_key(k)?, valid_value(v)?)
            } else if let Some((k, v)) = term.split_once('=') {
                LabelReq::Eq(valid_key(k)?, valid_value(v)?)
            } else if let Some(k) = term.strip_prefix('!') {
                LabelReq::NotExists(valid_key(k)?)
            } else {
                LabelReq::Exists(valid_key(term)?)
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub(crate) fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => labels.get(k) == Some(v),
            // As in Kubernetes, `k!=v` also holds when the label is absent.
            LabelReq::Ne(k, v) => labels.get(k) != Some(v),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::NotExists(k) => !labels.contains_key(k),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    Namespace,
}

/// `fieldSelector` over `metadata.name` and `metadata.namespace` with `=`, `==`, `!=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector(Vec<(Field, bool, String)>);

impl FieldSelector {
    pub(crate) fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut reqs = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!("invalid field selector term {term:?}"));
            };
            let field = match k.trim() {
                "metadata.name" => Field::Name,
                "metadata.namespace" => Field::Namespace,
                // The real server answers the same way for fields it cannot select on.
                other => return Err(format!("field label not supported: {other}")),
            };
            reqs.push((field, eq, v.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    pub(crate) fn matches(&self, namespace: &str, name: &str) -> bool {
        self.0.iter().all(|(f, eq, v)| {
            let actual = match f {
                Field::Name => name,
                Field::Namespace => namespace,
            };
            (actual == v) == *eq
        })
    }
}

/// What one list or watch is about: a resource, maybe one namespace, and selectors.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub(crate) res: Resource,
    pub(crate) namespace: Option<String>,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

impl Filter {
    /// Namespace and field selector: these never change over an object's life.
    pub(crate) fn matches_key(&self, namespace: &str, name: &str) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.fields.matches(namespace, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_forms() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        for (sel, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=db", false),
            ("app=web,tier=front", true),
            ("app=web, tier=back", false),
            ("tier", true),
            ("!tier", false),
            ("missing!=x", true),
            ("!missing", true),
            ("missing", false),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&l),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn label_selector_rejects_bad_input() {
        for bad in ["a=b=c", "app in (a,b)", "=x", "a b", "!"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selector_forms() {
        let f = FieldSelector::parse("metadata.name=a,metadata.namespace!=kube-system").unwrap();
        assert!(f.matches("default", "a"));
        assert!(!f.matches("kube-system", "a"));
        assert!(!f.matches("default", "b"));
        assert!(FieldSelector::parse("metadata.name==a")
            .unwrap()
            .matches("x", "a"));
        assert!(FieldSelector::parse("spec.nodeName=n1").is_err());
        assert!(FieldSelector::parse("metadata.name").is_err());
    }
}
