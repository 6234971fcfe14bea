//! What kwatchd knows about the Kubernetes API: request paths and the JSON
//! shapes of watch events, lists and Status answers. Parsing here borrows from
//! the input line and never re-serialises objects.

pub mod access;
pub mod discovery;
pub mod event;
pub mod list_scan;
pub mod path;
pub mod scan;

pub use event::{
    ListPage, Members, ObjectMeta, ParseError, RawObject, Status, WatchEvent, WatchEventType,
    Within,
};
pub use path::{
    ResourcePath, Selectors, WatchQuery, JSON_ACCEPT, METADATA_LIST_ACCEPT, METADATA_WATCH_ACCEPT,
};
