//! Checks on the URL of a server an organization registers: http(s) only, and (unless the
//! operator allows it) no private, loopback, link-local or otherwise internal address, so an API
//! client cannot make the platform call into its own network.

use std::net::IpAddr;

/// The URL, checked: `Err` says what is wrong with it.
///
/// # Errors
/// A malformed URL, a scheme other than http(s), credentials in the URL, or (without
/// `allow_private`) a host that is or resolves to an internal address.
pub async fn check_url(raw: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("url is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("url must be http or https".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not hold credentials; use bearer_token".into());
    }
    let host = url.host_str().ok_or("url has no host")?.trim_matches(['[', ']']).to_owned();
    if allow_private {
        return Ok(url);
    }
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => {
            if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") {
                return Err(format!("url points at {host}, a loopback address (not allowed)"));
            }
            let port = url.port_or_known_default().unwrap_or(443);
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("url's host {host} does not resolve: {e}"))?
                .map(|a| a.ip())
                .collect()
        }
    };
    if let Some(ip) = addrs.iter().find(|ip| internal(**ip)) {
        return Err(format!(
            "url points at {ip}, a private or loopback address (not allowed on this platform)"
        ));
    }
    Ok(url)
}

fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // 100.64/10
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| internal(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_and_malformed_urls_are_refused_unless_allowed() {
        for bad in ["not a url", "ftp://example.com/x", "http://user:pw@example.com/"] {
            assert!(check_url(bad, true).await.is_err(), "{bad}");
        }
        for private in [
            "http://127.0.0.1:8080/mcp",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://localhost/",
            "http://169.254.169.254/",
        ] {
            let err = check_url(private, false).await.unwrap_err();
            assert!(err.contains("not allowed"), "{private}: {err}");
            assert!(check_url(private, true).await.is_ok(), "{private}");
        }
        assert!(check_url("https://93.184.216.34/mcp", false).await.is_ok());
    }
}
