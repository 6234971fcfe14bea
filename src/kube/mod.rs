//! What kwatchd knows about the Kubernetes API: request paths and the JSON
//! shapes of watch events, lists and Status answers. Parsing here borrows from
//! the input line and never re-serialises objects.

pub mod access;
pub mod event;
pub mod path;

pub use event::{ListPage, ObjectMeta, ParseError, Status, WatchEvent, WatchEventType};
pub use path::{ResourcePath, Selectors, WatchQuery};
