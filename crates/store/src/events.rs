//! Decision events from the DNS server and the proxy (issue 4).
