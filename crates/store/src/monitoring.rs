//! Monitoring records: concerns and alerts (issue 6).
