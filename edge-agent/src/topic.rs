//! MQTT topic filters (`+` one level, `#` the rest) and matching topics against them.
//!
//! Used to pick a route for each message; subscription itself is the broker's job.

/// A validated MQTT topic filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter(String);

impl TopicFilter {
    /// Parses a filter, explaining what is wrong with an invalid one.
    pub fn parse(filter: &str) -> Result<TopicFilter, String> {
        if filter.is_empty() {
            return Err("topic filter is empty".into());
        }
        let levels: Vec<&str> = filter.split('/').collect();
        for (i, level) in levels.iter().enumerate() {
            if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
                return Err(format!("'#' must be a whole last level in '{filter}'"));
            }
            if level.contains('+') && *level != "+" {
                return Err(format!("'+' must be a whole level in '{filter}'"));
            }
        }
        Ok(TopicFilter(filter.to_owned()))
    }

    /// The filter text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `topic` matches this filter.
    pub fn matches(&self, topic: &str) -> bool {
        let mut topic_levels = topic.split('/');
        for f in self.0.split('/') {
            match (f, topic_levels.next()) {
                ("#", _) => return true,
                (_, None) => return false,
                ("+", Some(_)) => {}
                (f, Some(t)) if f == t => {}
                _ => return false,
            }
        }
        topic_levels.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_mqtt_says() {
        let f = TopicFilter::parse("plant/+/sensors").unwrap();
        assert!(f.matches("plant/p1/sensors"));
        assert!(!f.matches("plant/p1/logs"));
        assert!(!f.matches("plant/p1/sensors/x"));
        let all = TopicFilter::parse("plant/#").unwrap();
        assert!(all.matches("plant/a/b/c") && all.matches("plant"));
        assert!(TopicFilter::parse("a/#/b").is_err());
        assert!(TopicFilter::parse("a/b+").is_err());
    }
}
