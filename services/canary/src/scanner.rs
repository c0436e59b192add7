//! Link previews and mail-security fetches (CANARY.md §10): hits nobody opened. They are
//! recorded and published marked as such, but never make a tag or revoke a token.

use std::net::IpAddr;

use regex::RegexSet;

use crate::net::Cidr;

/// The shipped User-Agent list.
const SHIPPED: &str = include_str!("../data/scanner-user-agents.txt");

/// Headers that announce a prefetch, lower-case.
const PREFETCH: [(&str, &str); 4] = [
    ("sec-purpose", "prefetch"),
    ("purpose", "prefetch"),
    ("x-purpose", "preview"),
    ("x-moz", "prefetch"),
];

/// What marks a scanner.
#[derive(Debug)]
pub struct Scanners {
    names: Vec<String>,
    agents: RegexSet,
    ranges: Vec<(String, Cidr)>,
}

impl Scanners {
    /// The shipped list plus `extra_agents` (one regex per line, `#` comments) and the
    /// operator's `name=cidr,…` ranges.
    pub fn new(extra_agents: Option<&str>, ranges: Option<&str>) -> Result<Scanners, String> {
        let names: Vec<String> = SHIPPED
            .lines()
            .chain(extra_agents.unwrap_or_default().lines())
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        let agents = regex::RegexSetBuilder::new(&names)
            .case_insensitive(true)
            .build()
            .map_err(|e| format!("scanner User-Agent list: {e}"))?;
        let ranges = ranges
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|entry| {
                let (name, cidr) = entry
                    .split_once('=')
                    .ok_or_else(|| format!("scanner range '{entry}': expected name=cidr"))?;
                Ok((name.trim().to_owned(), Cidr::parse(cidr)?))
            })
            .collect::<Result<_, String>>()?;
        Ok(Scanners {
            names,
            agents,
            ranges,
        })
    }

    /// Why a hit looks like a scanner, if it does: `ua:<name>`, `method:HEAD`,
    /// `header:<name>` or `cidr:<name>`.
    pub fn reason(
        &self,
        method_head: bool,
        user_agent: Option<&str>,
        header: impl Fn(&str) -> Option<String>,
        client: IpAddr,
    ) -> Option<String> {
        if let Some(ua) = user_agent
            && let Some(i) = self.agents.matches(ua).iter().next()
        {
            return Some(format!("ua:{}", self.names[i]));
        }
        if method_head {
            return Some("method:HEAD".to_owned());
        }
        for (name, value) in PREFETCH {
            if header(name).is_some_and(|v| v.to_ascii_lowercase().contains(value)) {
                return Some(format!("header:{name}"));
            }
        }
        self.ranges
            .iter()
            .find(|(_, c)| c.contains(client))
            .map(|(name, _)| format!("cidr:{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_signal_names_itself() {
        let s = Scanners::new(Some("^MailGuard/"), Some("proofpoint=203.0.113.0/24")).unwrap();
        let none = |_: &str| None;
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let ua = Some("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)");
        assert_eq!(
            s.reason(false, ua, none, ip).as_deref(),
            Some("ua:Slackbot")
        );
        assert_eq!(
            s.reason(false, Some("MailGuard/2"), none, ip).as_deref(),
            Some("ua:^MailGuard/")
        );
        assert_eq!(
            s.reason(true, Some("curl/8"), none, ip).as_deref(),
            Some("method:HEAD")
        );
        let prefetch = |h: &str| (h == "sec-purpose").then(|| "prefetch;prerender".to_owned());
        assert_eq!(
            s.reason(false, None, prefetch, ip).as_deref(),
            Some("header:sec-purpose")
        );
        let vendor: IpAddr = "203.0.113.40".parse().unwrap();
        assert_eq!(
            s.reason(false, None, none, vendor).as_deref(),
            Some("cidr:proofpoint")
        );
        assert_eq!(
            s.reason(false, Some("Mozilla/5.0 (X11; Linux x86_64)"), none, ip),
            None
        );
    }
}
