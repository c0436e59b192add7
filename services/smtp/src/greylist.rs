//! The relay's greylisting (SMTP.md §1 `--rcpt-greylist-rate`): a share of recipients is
//! first refused with a temporary error, as a real greylisting relay does; a client that
//! comes back with the same recipient is let through, which is what a real one does too.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;

/// (client, recipient) pairs remembered at most.
const REMEMBERED: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct Greylist {
    refused: HashSet<(IpAddr, String)>,
    order: VecDeque<(IpAddr, String)>,
}

impl Greylist {
    /// Whether to refuse this recipient now; `rate` is the share refused on first sight.
    pub(crate) fn refuses(&mut self, client: IpAddr, rcpt: &str, rate: f64) -> bool {
        let key = (client, rcpt.to_ascii_lowercase());
        if self.refused.contains(&key) {
            return false;
        }
        if rate <= 0.0 || crate::session::random_unit() >= rate {
            return false;
        }
        if self.order.len() >= REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.refused.remove(&old);
        }
        self.refused.insert(key.clone());
        self.order.push_back(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_recipient_passes_on_the_retry() {
        let mut g = Greylist::default();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        assert!(g.refuses(ip, "A@x.example", 1.0));
        assert!(!g.refuses(ip, "a@x.example", 1.0));
        assert!(g.refuses("203.0.113.8".parse().unwrap(), "a@x.example", 1.0));
        assert!(!g.refuses(ip, "b@x.example", 0.0));
    }
}
