//! LIST: selectors, pages over a consistent snapshot with continue tokens, `PartialObjectMetadata` answers.

use serde_json::json;

use super::http::{Out, Request};
use super::select::{FieldSelector, Filter, LabelSelector};
use super::server::Ctx;
use super::store::{self, ContinueError, SnapshotPage};
use super::Resource;

pub(crate) fn filter(
    req: &Request,
    res: Resource,
    namespace: Option<String>,
) -> Result<Filter, String> {
    Ok(Filter {
        res,
        namespace,
        labels: LabelSelector::parse(req.param("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(req.param("fieldSelector").unwrap_or(""))?,
    })
}

/// Whether to answer `PartialObjectMetadata`: `Err` when the client asks for it only and it is switched off (406).
pub(crate) fn partial_metadata(ctx: &Ctx) -> Result<bool, ()> {
    let accept = ctx.req.header("accept").unwrap_or("");
    if !accept.contains("as=PartialObjectMetadata") {
        return Ok(false);
    }
    if ctx.sh.settings.partial_metadata {
        return Ok(true);
    }
    let plain = accept
        .split(',')
        .any(|t| matches!(t.trim(), "application/json" | "*/*" | "application/*"));
    if plain {
        Ok(false)
    } else {
        Err(())
    }
}

/// An object as `PartialObjectMetadata`: its metadata only.
pub(crate) fn partial_object(json: &str) -> String {
    let meta = serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|mut v| v.get_mut("metadata").map(serde_json::Value::take))
        .unwrap_or_else(|| json!({}));
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
        .to_string()
}

pub(crate) fn list(ctx: &Ctx, out: &mut Out, filter: Filter, partial: bool) -> bool {
    let req = ctx.req;
    let limit = match req
        .param("limit")
        .filter(|l| !l.is_empty())
        .map(str::parse::<usize>)
    {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return ctx.error(out, 400, "limit must be a non-negative integer"),
    };
    let cont = req.param("continue").filter(|c| !c.is_empty());
    if req
        .param("resourceVersionMatch")
        .is_some_and(|m| !m.is_empty())
    {
        if cont.is_some() {
            return ctx.error(
                out,
                422,
                "resourceVersionMatch is forbidden when continue is provided",
            );
        }
        if req.param("resourceVersion").is_none_or(str::is_empty) {
            return ctx.error(
                out,
                422,
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            );
        }
    }
    // `Exact`: the state at that resourceVersion, if the history still reaches back to it.
    let exact = match (req.param("resourceVersionMatch"), cont) {
        (Some("Exact"), None) => match req.param("resourceVersion").map(str::parse::<u64>) {
            Some(Ok(rv)) => Some(rv),
            _ => return ctx.error(out, 400, "resourceVersion must be an integer for Exact"),
        },
        _ => None,
    };
    let ttl = ctx.sh.settings.continue_ttl;
    let kind;
    let page = {
        let mut st = ctx.sh.lock();
        kind = st.kind_of(&filter.res);
        match cont {
            Some(token) => match st.store.snapshot(token, ttl) {
                Ok(SnapshotPage {
                    items,
                    rv,
                    offset,
                    id,
                }) => {
                    let end = if limit == 0 {
                        items.len()
                    } else {
                        offset.saturating_add(limit).min(items.len())
                    };
                    let offset = offset.min(end);
                    let next = (end < items.len()).then(|| store::continue_token(id, end));
                    Ok((items[offset..end].to_vec(), rv, next, items.len() - end))
                }
                Err(e) => Err(e),
            },
            None => {
                let (items, rv) = match exact {
                    Some(rv) => match st.store.list_at(&filter, rv) {
                        Some(items) => (items, rv),
                        None => {
                            drop(st);
                            let msg = format!("too old resource version: {rv} ({})", rv + 1);
                            return ctx.error(out, 410, &msg);
                        }
                    },
                    None => (st.store.list(&filter), st.store.rv()),
                };
                if limit > 0 && items.len() > limit {
                    let page = items[..limit].to_vec();
                    let remaining = items.len() - limit;
                    let token = st.store.save_snapshot(items, rv, limit, ttl);
                    Ok((page, rv, Some(token), remaining))
                } else {
                    Ok((items, rv, None, 0))
                }
            }
        }
    };
    let (items, rv, next, remaining) = match page {
        Ok(p) => p,
        Err(ContinueError::Malformed) => return ctx.error(out, 400, "invalid continue token"),
        Err(ContinueError::Expired) => {
            let msg =
                "The provided continue parameter is too old to display a consistent list result. \
                       You can start a new list without the continue parameter.";
            return ctx.error(out, 410, msg);
        }
    };
    // Assembled by hand: the items are already serialised and may be large.
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(t) = &next {
        meta["continue"] = json!(t);
        meta["remainingItemCount"] = json!(remaining);
    }
    let items: Vec<std::sync::Arc<str>> = if partial {
        items.iter().map(|i| partial_object(i).into()).collect()
    } else {
        items
    };
    let size: usize = items.iter().map(|i| i.len() + 1).sum();
    let mut body = String::with_capacity(size + 128);
    let (list_kind, list_version) = if partial {
        ("PartialObjectMetadata".to_string(), "meta.k8s.io/v1")
    } else {
        (kind, filter.res.api_version.as_str())
    };
    body.push_str(&format!(
        "{{\"kind\":\"{list_kind}List\",\"apiVersion\":\"{list_version}\",\"metadata\":{meta},\"items\":["
    ));
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str("]}");
    ctx.json(out, &body)
}
