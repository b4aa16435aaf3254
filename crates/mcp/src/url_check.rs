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
    if let Some(ip) = addrs.iter().find(|ip| special_purpose(**ip)) {
        return Err(format!(
            "url points at {ip}, a private or loopback address (not allowed on this platform)"
        ));
    }
    Ok(url)
}

/// True for an address of the IANA special-purpose registries (IPv4 and IPv6) or any other
/// address that is not a unicast address on the public internet: private, shared (CGNAT),
/// loopback, link-local, documentation, benchmarking, multicast, reserved, and IPv6 forms that
/// embed an IPv4 address (mapped, NAT64, 6to4) when that address is one.
pub fn special_purpose(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            a == 0                                   // "this network" 0/8
                || a == 10                           // private 10/8
                || (a == 100 && (b & 0xc0) == 64)    // shared 100.64/10
                || a == 127                          // loopback 127/8
                || (a == 169 && b == 254)            // link local 169.254/16
                || (a == 172 && (b & 0xf0) == 16)    // private 172.16/12
                || (a == 192 && b == 0 && c == 0)    // IETF protocol assignments 192.0.0/24
                || (a == 192 && b == 0 && c == 2)    // documentation 192.0.2/24
                || (a == 192 && b == 88 && c == 99)  // 6to4 relay anycast 192.88.99/24
                || (a == 192 && b == 168)            // private 192.168/16
                || (a == 198 && (b & 0xfe) == 18)    // benchmarking 198.18/15
                || (a == 198 && b == 51 && c == 100) // documentation 198.51.100/24
                || (a == 203 && b == 0 && c == 113)  // documentation 203.0.113/24
                || a >= 224 // multicast 224/4, reserved 240/4, broadcast
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                return special_purpose(IpAddr::V4(v4)); // ::ffff:0:0/96
            }
            if s[0] == 0x0064 && s[1] == 0xff9b {
                // NAT64 64:ff9b::/96 and 64:ff9b:1::/48: the IPv4 address it stands for.
                let v4 = std::net::Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                );
                return s[2] != 0 || special_purpose(IpAddr::V4(v4));
            }
            if s[0] == 0x2002 {
                // 6to4 2002::/16 embeds an IPv4 address.
                let v4 = std::net::Ipv4Addr::new(
                    (s[1] >> 8) as u8,
                    s[1] as u8,
                    (s[2] >> 8) as u8,
                    s[2] as u8,
                );
                return special_purpose(IpAddr::V4(v4));
            }
            v6.is_unspecified()                                  // ::
                || v6.is_loopback()                              // ::1
                || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0) // ::/96 (IPv4-compatible)
                || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard 100::/64
                || (s[0] == 0x2001 && s[1] < 0x0200)             // IETF protocol assignments 2001::/23
                || (s[0] == 0x2001 && s[1] == 0x0db8)            // documentation 2001:db8::/32
                || (s[0] == 0x3fff && s[1] < 0x1000)             // documentation 3fff::/20
                || (s[0] == 0x5f00)                              // segment routing 5f00::/16
                || (s[0] & 0xfe00) == 0xfc00                     // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80                     // link local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0                     // site local (deprecated) fec0::/10
                || (s[0] & 0xff00) == 0xff00 // multicast ff00::/8
        }
    }
}

/// The resolver of connections made on an organization's behalf: a name is resolved again at
/// every connection and the addresses of the special-purpose ranges are dropped (unless the
/// operator allows private addresses), so a name that resolves elsewhere at registration and
/// to an internal address later (DNS rebinding) is refused when it is used.
#[derive(Debug, Clone, Copy)]
pub struct TenantResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for TenantResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<std::net::SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| allow_private || !special_purpose(a.ip()))
                .collect();
            if public.is_empty() {
                let seen: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "{host} resolves to {}: an internal or special-purpose address (not allowed \
                     on this platform)",
                    seen.join(", ")
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Refuses, before connecting, a URL whose host is an IP literal of a special-purpose range
/// (literals are not resolved, so the resolver cannot see them).
///
/// # Errors
/// What is refused, and why.
pub fn check_literal(url: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url} is not a valid URL: {e}"))?;
    let host = parsed.host_str().unwrap_or("").trim_matches(['[', ']']);
    match host.parse::<IpAddr>() {
        Ok(ip) if special_purpose(ip) => Err(format!(
            "{ip} is an internal or special-purpose address (not allowed on this platform)"
        )),
        _ => Ok(()),
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

    #[test]
    fn every_special_purpose_range_is_refused_and_public_addresses_are_not() {
        let special = [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.10",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:192.0.2.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:10::1",
            "2001:db8::1",
            "2002:7f00:1::",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ];
        for ip in special {
            assert!(special_purpose(ip.parse().unwrap()), "{ip} is special-purpose");
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.254",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
            "2a00:1450::1",
        ];
        for ip in public {
            assert!(!special_purpose(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn literal_addresses_are_checked_before_connecting() {
        let err = check_literal("http://192.0.2.10:8080/mcp", false).unwrap_err();
        assert!(err.contains("192.0.2.10"), "{err}");
        assert!(check_literal("http://[fd00::1]/mcp", false).is_err());
        assert!(check_literal("http://192.0.2.10/mcp", true).is_ok());
        assert!(check_literal("https://93.184.216.34/mcp", false).is_ok());
        assert!(check_literal("http://example.com/mcp", false).is_ok(), "names: the resolver's");
    }

    /// A server on loopback that answers every request with `response`; returns its port.
    async fn answer(response: &'static [u8]) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.read(&mut [0u8; 4096]).await; // the request's head
                let _ = s.write_all(response).await;
            }
        });
        port
    }

    /// A server on loopback, reached by a name that resolves to it (`localhost`, as a rebound
    /// name would): refused at connect time unless private addresses are allowed.
    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_when_connecting() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let url = format!("http://localhost:{port}/");
        let err = crate::tenant_http(false).get(&url).send().await.unwrap_err();
        let chain = format!("{err:?}");
        assert!(chain.contains("special-purpose"), "{chain}");
        let ok = crate::tenant_http(true).get(&url).send().await.unwrap();
        assert_eq!(ok.status(), 200);
    }

    /// A redirect is answered as it is, never followed (its target would not be checked).
    #[tokio::test]
    async fn redirects_are_not_followed() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = answer(
            b"HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:9/\r\n\
              content-length: 0\r\n\r\n",
        )
        .await;
        let r = crate::tenant_http(true).post(format!("http://127.0.0.1:{port}/")).send().await;
        assert_eq!(r.unwrap().status(), 307);
    }
}
