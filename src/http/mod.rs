//! Sans-I/O HTTP/1.1 client protocol: request encoding, response heads,
//! chunked transfer coding, gzip content coding, and line framing for watch
//! streams.
//!
//! Nothing here touches a socket. The connection code feeds the bytes it
//! read into a [`ResponseReader`] and pulls heads, lines or whole bodies out.

pub mod chunked;
pub mod encoding;
mod excerpt;
pub mod framer;
pub mod reader;
pub mod request;
pub mod response;

pub use chunked::{ChunkedDecoder, ChunkedError};
pub use framer::{LineFramer, LineTooLong};
pub use reader::{BodyMode, HttpError, ResponseReader};
pub use request::{percent_encode_query_value, Request, RequestError, USER_AGENT};
pub use response::{BodyFraming, HeadError, ResponseHead};
