//! Topic and room name patterns, shared by retention rules, queue depth rules and access
//! permissions: `*` matches exactly one dot-separated segment, `>` one or more trailing
//! segments (NATS subjects' wildcards).

/// Whether `name` (a topic or room) matches `pattern`.
///
/// `vendor.*` matches `vendor.a` but not `vendor.a.b`; `vendor.>` matches both but not
/// `vendor` itself; a pattern without wildcards matches only the same name.
pub fn topic_matches(pattern: &str, name: &str) -> bool {
    let mut pat = pattern.split('.');
    let mut top = name.split('.');
    loop {
        match (pat.next(), top.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(t)) if p == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_segments() {
        assert!(topic_matches("vendor.*", "vendor.store-1"));
        assert!(!topic_matches("vendor.*", "vendor.store-1.x"));
        assert!(topic_matches("vendor.>", "vendor.store-1.x"));
        assert!(!topic_matches("vendor.>", "vendor"));
        assert!(topic_matches("pickup", "pickup"));
        assert!(!topic_matches("pickup", "pickups"));
        assert!(topic_matches(">", "anything.at.all"));
    }
}
