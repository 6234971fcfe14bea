//! What a watch borrows from the daemon while the loop drives it: the
//! registry, the resolver, the clusters' connection settings, the sinks and
//! the shared buffers. One struct, so a watcher's methods take one argument
//! instead of seven, and the borrow of each is visible where it is made.

use super::cluster::ClusterRuntime;
use super::credential::Readiness;
use crate::net::Resolver;
use crate::sink::Sink;
use mio::Registry;
use std::time::Instant;

/// Shared things a watch needs while it is being driven.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub resolver: &'a mut Resolver,
    pub clusters: &'a mut [ClusterRuntime],
    pub sinks: &'a mut [Sink],
    pub read_buf: &'a mut [u8],
    pub record_buf: &'a mut Vec<u8>,
    pub now: Instant,
}

impl Ctx<'_> {
    /// Whether cluster `cluster`'s credentials are there (this may start
    /// its exec plugin).
    pub fn credentials(&mut self, cluster: usize) -> Readiness {
        match self.clusters.get_mut(cluster) {
            Some(c) => c.readiness(self.registry, self.now),
            None => Readiness::Ready,
        }
    }
}
