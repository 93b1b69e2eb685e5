//! The OpenAPI 3.1 document (`/openapi.json`, `cleave openapi`) and the API reference page
//! (`/docs`, Swagger UI with its assets compiled into the binary: it works offline).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "cleave", description = "A commerce backend: users, catalog, orders, payments. Errors are RFC 9457 problem details (application/problem+json)."),
    paths(
        crate::rest::users::register,
        crate::rest::users::login,
        crate::rest::users::refresh,
        crate::rest::users::logout,
        crate::rest::users::me,
        crate::rest::me::overview,
        crate::rest::users::list_users,
        crate::rest::users::deactivate_user,
        crate::rest::users::jwks,
        crate::rest::catalog::list_products,
        crate::rest::catalog::get_product,
        crate::rest::catalog::create_product,
        crate::rest::catalog::update_product,
        crate::rest::catalog::set_stock,
        crate::rest::catalog::list_categories,
        crate::rest::catalog::create_category,
        crate::rest::orders::place_order,
        crate::rest::orders::list_orders,
        crate::rest::orders::get_order,
        crate::rest::orders::cancel_order,
        crate::rest::payments::get_payment,
        crate::rest::admin::list_dead_letters,
        crate::rest::admin::get_dead_letter,
        crate::rest::admin::replay_dead_letter,
        crate::rest::admin::discard_dead_letter,
        crate::rest::admin::status,
        crate::health::live,
        crate::health::ready,
        crate::health::metrics,
    ),
    components(schemas(shared_kernel::ProblemDetails, shared_kernel::FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "Accounts"),
        (name = "auth", description = "Tokens and keys"),
        (name = "catalog", description = "Products, categories, stock"),
        (name = "orders", description = "Placing, reading and cancelling orders"),
        (name = "payments", description = "An order's payment"),
        (name = "events", description = "Dead letters of event consumers (admin)"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The document as pretty JSON.
pub fn document_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".to_owned())
}

/// `/docs` (the reference page) and `/openapi.json`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::from(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi())).with_state(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_lists_every_path() {
        let document: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/api/users/register",
            "/api/auth/login",
            "/api/auth/refresh",
            "/api/auth/logout",
            "/api/users/me",
            "/api/users",
            "/api/users/{id}/deactivate",
            "/.well-known/jwks.json",
            "/health/ready",
            "/api/admin/dead-letters",
            "/api/admin/dead-letters/{id}",
            "/api/admin/dead-letters/{id}/replay",
            "/api/catalog/products",
            "/api/catalog/products/{id}",
            "/api/catalog/products/{id}/stock",
            "/api/catalog/categories",
            "/api/orders/{id}/payment",
        ] {
            assert!(document["paths"].get(path).is_some(), "{path} is missing");
        }
    }
}
