//! The wire: two client framings on one port, told apart per connection.
//!
//! - [`legacy`]: the PHP frontend's 560-byte frames and fixed-width replies;
//! - [`text`]: one command per line, for people with netcat;
//! - [`detect`]: which of the two a new connection speaks.

pub mod detect;
pub mod legacy;
pub mod peer;
pub mod text;

/// The framing a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// 560-byte frames, one request per connection.
    Legacy,
    /// Lines, many commands per connection.
    Text,
}

impl Framing {
    /// The framing's name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Legacy => "legacy",
            Framing::Text => "text",
        }
    }
}
