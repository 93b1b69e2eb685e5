//! Versions at the edge (docs/api-versioning.md). Every REST route is registered with its version
//! and its path below the version: it is served at `/api/v{N}{path}`, its canonical path, and the
//! newest version of each path is also served at `/api{path}`, the alias clients that do not pin
//! a version use. A v2 of one route is registered beside its v1; the alias moves to v2 and v1
//! keeps answering at `/api/v1/...` until it is removed.
//!
//! A route listed in [`DEPRECATED`] answers with `Deprecation` (RFC 9745) and `Sunset`
//! (RFC 8594) headers, and a `Link` to its successor when it has one; the OpenAPI document marks
//! its operations deprecated and says when it goes.

use axum::Router;
use axum::http::{HeaderName, HeaderValue};
use axum::routing::MethodRouter;
use chrono::{NaiveDate, TimeZone as _, Utc};
use std::collections::BTreeMap;

/// Routes marked deprecated. Empty today: every route is in its first version.
pub const DEPRECATED: &[Deprecated] = &[];

/// A route version that is on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprecated {
    pub version: u16,
    /// The path below the version, as registered: `/orders/{id}`.
    pub path: &'static str,
    /// When it was deprecated, `YYYY-MM-DD` (UTC midnight).
    pub since: &'static str,
    /// When it may be removed, `YYYY-MM-DD` (UTC midnight): the `Sunset` header.
    pub sunset: &'static str,
    /// The canonical path that replaces it, if any: `/api/v2/orders/{id}`.
    pub successor: Option<&'static str>,
}

impl Deprecated {
    /// The route's canonical path.
    pub fn canonical(&self) -> String {
        canonical(self.version, self.path)
    }

    /// `Deprecation`, `Sunset` and (with a successor) `Link` header values.
    pub fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let since = midnight(self.since)?;
        let sunset = midnight(self.sunset)?;
        if sunset <= since {
            return Err(format!("{}: the sunset ({}) must come after the deprecation ({})", self.canonical(), self.sunset, self.since));
        }
        let mut headers = vec![
            (HeaderName::from_static("deprecation"), header(format!("@{}", since.timestamp()))?),
            (HeaderName::from_static("sunset"), header(sunset.format("%a, %d %b %Y %H:%M:%S GMT").to_string())?),
        ];
        if let Some(successor) = self.successor {
            headers.push((HeaderName::from_static("link"), header(format!("<{successor}>; rel=\"successor-version\""))?));
        }
        Ok(headers)
    }

    /// The line the OpenAPI document adds to the operation's description.
    pub fn notice(&self) -> String {
        let successor = self.successor.map(|s| format!(" Use `{s}` instead.")).unwrap_or_default();
        format!("**Deprecated** since {}; it may be removed after {} (the `Sunset` header).{successor}", self.since, self.sunset)
    }
}

fn midnight(date: &str) -> Result<chrono::DateTime<Utc>, String> {
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| format!("{date:?} is not a YYYY-MM-DD date"))?;
    Ok(Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default()))
}

fn header(text: String) -> Result<HeaderValue, String> {
    HeaderValue::from_str(&text).map_err(|_| format!("{text:?} is not a header value"))
}

/// `/api/v{version}{path}`.
pub fn canonical(version: u16, path: &str) -> String {
    format!("/api/v{version}{path}")
}

/// REST routes by version and path, turned into a router with [`ApiRoutes::into_router`].
pub struct ApiRoutes<S> {
    /// path → version → handler; a version of a path holds all of that path's methods.
    routes: BTreeMap<&'static str, BTreeMap<u16, MethodRouter<S>>>,
}

impl<S: Clone + Send + Sync + 'static> Default for ApiRoutes<S> {
    fn default() -> Self {
        Self { routes: BTreeMap::new() }
    }
}

impl<S: Clone + Send + Sync + 'static> ApiRoutes<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The first version of `path` (below `/api/v1`).
    pub fn v1(self, path: &'static str, handler: MethodRouter<S>) -> Self {
        self.version(1, path, handler)
    }

    /// Version `version` of `path`: it holds every method of the path in that version (a method
    /// v2 keeps unchanged is registered in v2 again, with the same handler).
    pub fn version(mut self, version: u16, path: &'static str, handler: MethodRouter<S>) -> Self {
        assert!(version >= 1, "versions start at 1");
        assert!(path.starts_with('/') && !path.starts_with("/v"), "{path}: give the path below the version");
        let previous = self.routes.entry(path).or_default().insert(version, handler);
        assert!(previous.is_none(), "{} registered twice", canonical(version, path));
        self
    }

    pub fn merge(mut self, other: Self) -> Self {
        for (path, versions) in other.routes {
            for (version, handler) in versions {
                self = self.version(version, path, handler);
            }
        }
        self
    }

    /// Every `(version, path)` registered, for the OpenAPI check.
    pub fn registered(&self) -> Vec<(u16, &'static str)> {
        self.routes.iter().flat_map(|(path, versions)| versions.keys().map(move |v| (*v, *path))).collect()
    }

    /// The canonical routes and the aliases, with [`DEPRECATED`]'s headers.
    pub fn into_router(self) -> Router<S> {
        self.into_router_with(DEPRECATED).unwrap_or_else(|error| panic!("{error}"))
    }

    /// As [`ApiRoutes::into_router`], with another list of deprecations. Fails when one names a
    /// route that is not registered or has a bad date.
    pub fn into_router_with(self, deprecated: &[Deprecated]) -> Result<Router<S>, String> {
        for entry in deprecated {
            if !self.routes.get(entry.path).is_some_and(|versions| versions.contains_key(&entry.version)) {
                return Err(format!("{} is marked deprecated but not registered", entry.canonical()));
            }
        }
        let mut router = Router::new();
        for (path, versions) in self.routes {
            let newest = versions.keys().max().copied();
            for (version, handler) in versions {
                let handler = match deprecated.iter().find(|d| d.version == version && d.path == path) {
                    Some(entry) => {
                        let headers = entry.headers()?;
                        handler.layer(axum::middleware::map_response(move |mut response: axum::response::Response| {
                            let headers = headers.clone();
                            async move {
                                response.headers_mut().extend(headers);
                                response
                            }
                        }))
                    }
                    None => handler,
                };
                if Some(version) == newest {
                    router = router.route(&format!("/api{path}"), handler.clone());
                }
                router = router.route(&canonical(version, path), handler);
            }
        }
        Ok(router)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt as _;

    async fn call(router: &Router, path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = router.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 16).await.unwrap();
        (parts.status, parts.headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn routes() -> ApiRoutes<()> {
        ApiRoutes::new().v1("/things", get(|| async { "things v1" })).v1("/things/{id}", get(|| async { "thing v1" })).version(
            2,
            "/things/{id}",
            get(|| async { "thing v2" }),
        )
    }

    #[tokio::test]
    async fn the_alias_serves_the_newest_version_and_every_version_keeps_its_path() {
        let router = routes().into_router_with(&[]).unwrap();
        assert_eq!(call(&router, "/api/v1/things").await.2, "things v1");
        assert_eq!(call(&router, "/api/things").await.2, "things v1");
        assert_eq!(call(&router, "/api/v1/things/7").await.2, "thing v1");
        assert_eq!(call(&router, "/api/v2/things/7").await.2, "thing v2");
        assert_eq!(call(&router, "/api/things/7").await.2, "thing v2");
        assert_eq!(call(&router, "/api/v2/things").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_deprecated_route_says_so_and_when_it_goes_and_the_others_do_not() {
        let deprecated = Deprecated {
            version: 1,
            path: "/things/{id}",
            since: "2026-12-01",
            sunset: "2027-06-01",
            successor: Some("/api/v2/things/{id}"),
        };
        let router = routes().into_router_with(&[deprecated]).unwrap();
        let (status, headers, body) = call(&router, "/api/v1/things/7").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "thing v1"));
        assert_eq!(headers["deprecation"], "@1796083200");
        assert_eq!(headers["sunset"], "Tue, 01 Jun 2027 00:00:00 GMT");
        assert_eq!(headers["link"], "</api/v2/things/{id}>; rel=\"successor-version\"");
        for path in ["/api/v2/things/7", "/api/things/7", "/api/things"] {
            let (_, headers, _) = call(&router, path).await;
            assert!(headers.get("deprecation").is_none() && headers.get("sunset").is_none(), "{path}");
        }
    }

    #[test]
    fn a_deprecation_of_an_unknown_route_or_with_bad_dates_is_refused() {
        let unknown = Deprecated { version: 3, path: "/things", since: "2026-12-01", sunset: "2027-01-01", successor: None };
        assert!(routes().into_router_with(&[unknown]).unwrap_err().contains("/api/v3/things"));
        let backwards = Deprecated { version: 1, path: "/things", since: "2027-12-01", sunset: "2027-01-01", successor: None };
        assert!(routes().into_router_with(&[backwards]).unwrap_err().contains("after"));
        let garbled = Deprecated { version: 1, path: "/things", since: "1 Dec 2026", sunset: "2027-01-01", successor: None };
        assert!(routes().into_router_with(&[garbled]).unwrap_err().contains("YYYY-MM-DD"));
    }

    #[test]
    fn the_deprecations_in_force_name_registered_routes_with_good_dates() {
        let _router = crate::modules::routes().into_router_with(DEPRECATED).unwrap();
        for entry in DEPRECATED {
            entry.headers().unwrap();
        }
    }
}
