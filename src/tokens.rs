//! Poll tokens for sources that come and go (connections, hook pipes).

use mio::Token;

/// Tokens only grow, so an event fetched for a closed source can never be
/// mistaken for a new one in the same poll batch.
#[derive(Debug)]
pub struct TokenAllocator {
    next: usize,
}

impl TokenAllocator {
    pub fn starting_at(first: usize) -> Self {
        TokenAllocator { next: first }
    }

    pub fn allocate(&mut self) -> Token {
        let t = Token(self.next);
        self.next += 1;
        t
    }
}
