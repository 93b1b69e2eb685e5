//! `GET /graphql`: the GraphiQL playground, with every file it loads compiled into the binary
//! (`app/assets/graphiql`, fetched by its `fetch.sh`), so it works with no internet.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("../../assets/graphiql/index.html");

/// (name, content type, bytes) of every asset the page loads.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("graphiql.min.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/graphiql/graphiql.min.js")),
    ("graphiql.min.css", "text/css; charset=utf-8", include_bytes!("../../assets/graphiql/graphiql.min.css")),
    ("react.production.min.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/graphiql/react.production.min.js")),
    ("react-dom.production.min.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/graphiql/react-dom.production.min.js")),
    ("playground.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/graphiql/playground.js")),
];

/// The page.
pub async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], PAGE).into_response()
}

/// One of the page's files; 404 (problem+json, by the edge) for anything else.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, bytes)) => {
            ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "public, max-age=3600")], *bytes).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
