//! Catalog endpoints (api.md): public reads, admin writes.

use crate::rest::{ApiRoutes, AppState};
use crate::edge::{AppJson, CallerExt, ClientId};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use catalog_contract::{CategoryView, NewCategory, NewProduct, ProductPatch, ProductQuery, ProductView, SetStock};
use serde::Deserialize;
use shared_kernel::{ApiError, CategoryId, Page, PageRequest, ProblemDetails, ProductId};

/// Its operations in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_products, get_product, create_product, update_product, set_stock, list_categories, create_category), tags((name = "catalog", description = "Products, categories, stock")))]
pub struct Doc;

pub fn routes() -> ApiRoutes<AppState> {
    ApiRoutes::new()
        .v1("/catalog/products", get(list_products).post(create_product))
        .v1("/catalog/products/{id}", get(get_product).patch(update_product))
        .v1("/catalog/products/{id}/stock", put(set_stock))
        .v1("/catalog/categories", get(list_categories).post(create_category))
}

/// `?limit&cursor&category&q`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ProductListQuery {
    /// 1..=100, default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, example = 20)]
    pub limit: Option<String>,
    pub cursor: Option<String>,
    /// A category id.
    #[param(format = Uuid)]
    pub category: Option<String>,
    /// Text in the name, SKU or description (case-insensitive).
    #[param(max_length = 100)]
    pub q: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CategoryListQuery {
    /// 1..=100, default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, example = 20)]
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Products, oldest first, filtered by category and text. Public.
#[utoipa::path(get, path = "/api/v1/catalog/products", tag = "catalog", params(ProductListQuery), responses(
    (status = 200, body = Page<ProductView>),
    (status = 422, description = "A bad limit, cursor or category", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn list_products(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Query(query): Query<ProductListQuery>,
) -> Result<Json<Page<ProductView>>, ApiError> {
    let page = PageRequest::from_query(query.limit.as_deref(), query.cursor.as_deref())?;
    let category = match query.category.as_deref().filter(|c| !c.is_empty()) {
        Some(text) => Some(CategoryId::parse(text).map_err(|_| ApiError::invalid_field("category", "must be a category id"))?),
        None => None,
    };
    let q = query.q.filter(|q| !q.trim().is_empty());
    if q.as_ref().is_some_and(|q| q.chars().count() > 100) {
        return Err(ApiError::invalid_field("q", "must be at most 100 characters"));
    }
    state.catalog.list_products(&caller, ProductQuery { category, q, page }).await.map(Json)
}

/// One product with its price and available stock. Public.
#[utoipa::path(get, path = "/api/v1/catalog/products/{id}", tag = "catalog", params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, body = ProductView),
    (status = 404, body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn get_product(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<ProductView>, ApiError> {
    let id = ClientId::<ProductId>::new(&id);
    id.explain(state.catalog.get_product(&caller, id.get()).await).map(Json)
}

/// Create a product (admin).
#[utoipa::path(post, path = "/api/v1/catalog/products", tag = "catalog", request_body = NewProduct, security(("bearer" = [])), responses(
    (status = 201, body = ProductView),
    (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 409, description = "Duplicate SKU", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 422, body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn create_product(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    AppJson(body): AppJson<NewProduct>,
) -> Result<(StatusCode, Json<ProductView>), ApiError> {
    let product = state.catalog.create_product(&caller, body).await?;
    Ok((StatusCode::CREATED, Json(product)))
}

/// Change a product (admin); the body's `version` must be current, else 409.
#[utoipa::path(patch, path = "/api/v1/catalog/products/{id}", tag = "catalog", params(("id" = String, Path, format = Uuid)), request_body = ProductPatch, security(("bearer" = [])), responses(
    (status = 200, body = ProductView),
    (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
    (status = 409, description = "Stale version", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn update_product(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
    AppJson(body): AppJson<ProductPatch>,
) -> Result<Json<ProductView>, ApiError> {
    let id = ClientId::<ProductId>::new(&id);
    id.explain(state.catalog.update_product(&caller, id.get(), body).await).map(Json)
}

/// Set stock on hand (admin); 409 below what is reserved for orders.
#[utoipa::path(put, path = "/api/v1/catalog/products/{id}/stock", tag = "catalog", params(("id" = String, Path, format = Uuid)), request_body = SetStock, security(("bearer" = [])), responses(
    (status = 200, body = ProductView),
    (status = 409, body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn set_stock(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
    AppJson(body): AppJson<SetStock>,
) -> Result<Json<ProductView>, ApiError> {
    let id = ClientId::<ProductId>::new(&id);
    id.explain(state.catalog.set_stock(&caller, id.get(), body).await).map(Json)
}

/// Categories by name. Public.
#[utoipa::path(get, path = "/api/v1/catalog/categories", tag = "catalog", params(CategoryListQuery), responses((status = 200, body = Page<CategoryView>)))]
pub async fn list_categories(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Query(query): Query<CategoryListQuery>,
) -> Result<Json<Page<CategoryView>>, ApiError> {
    let page = PageRequest::from_query(query.limit.as_deref(), query.cursor.as_deref())?;
    state.catalog.list_categories(&caller, page).await.map(Json)
}

/// Create a category (admin).
#[utoipa::path(post, path = "/api/v1/catalog/categories", tag = "catalog", request_body = NewCategory, security(("bearer" = [])), responses(
    (status = 201, body = CategoryView),
    (status = 409, description = "Name taken", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn create_category(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    AppJson(body): AppJson<NewCategory>,
) -> Result<(StatusCode, Json<CategoryView>), ApiError> {
    let category = state.catalog.create_category(&caller, body).await?;
    Ok((StatusCode::CREATED, Json(category)))
}
