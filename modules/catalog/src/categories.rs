//! Categories: listed by name (cached), made by an admin, fetched many at once.

use crate::cache::{Cached, Key, Lookup, Tag};
use crate::context::Context;
use crate::domain::CategoryName;
use crate::entities::categories;
use crate::views::category_view;
use catalog_contract::events::CategoryCreatedV1;
use catalog_contract::{CategoryView, NewCategory};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use shared_kernel::db::conflict_on_duplicate;
use shared_kernel::outbox::UnitOfWork;
use shared_kernel::{ApiError, Caller, CategoryId, Page, PageRequest};
use std::collections::BTreeSet;

impl Context {
    pub(crate) async fn list_categories(&self, page: PageRequest) -> Result<Page<CategoryView>, ApiError> {
        let after = page.after_key()?;
        let key = Key::category_page(after.as_deref(), page.limit());
        let load = async {
            let mut query = categories::Entity::find().order_by_asc(categories::Column::NameKey).limit(u64::from(page.limit()) + 1);
            if let Some(after) = after.clone() {
                query = query.filter(categories::Column::NameKey.gt(after));
            }
            let rows = query.all(&self.db).await?;
            Ok(Page::from_overfetched(rows, page.limit(), |row| row.name_key.clone()).map(|row| category_view(&row)))
        };
        let unwrap = |value| if let Cached::Categories(page) = value { Some(page) } else { None };
        self.cached(key, unwrap, |page: &Page<CategoryView>| Cached::Categories(page.clone()), load).await
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn create_category(&self, caller: &Caller, input: NewCategory) -> Result<CategoryView, ApiError> {
        caller.require_admin()?;
        let name = CategoryName::parse(&input.name)?;
        let now = self.clock.now();
        let row = categories::ActiveModel {
            id: Set(CategoryId::new().as_uuid()),
            name_key: Set(name.key()),
            name: Set(name.as_str().to_owned()),
            created_at: Set(now),
        };
        let mut unit = UnitOfWork::begin(&self.db, &self.outbox).await?;
        let created = conflict_on_duplicate(row.insert(&*unit).await, "a category with this name exists")?;
        let event = CategoryCreatedV1 { category_id: CategoryId::from_uuid(created.id), name: created.name.clone(), created_at: now };
        unit.publish(&event, now, shared_kernel::current_request_context().as_ref()).await?;
        unit.commit().await?;
        self.cache.invalidate(&[Tag::Categories]).await;
        Ok(category_view(&created))
    }

    /// Many categories, each from the cache when it holds it.
    pub(crate) async fn get_categories(&self, ids: Vec<CategoryId>) -> Result<Vec<CategoryView>, ApiError> {
        if ids.len() > 1000 {
            return Err(ApiError::invalid_field("ids", "at most 1000 at once"));
        }
        let unique: BTreeSet<uuid::Uuid> = ids.iter().map(CategoryId::as_uuid).collect();
        let mut found = Vec::with_capacity(unique.len());
        let mut missing = Vec::new();
        for id in unique {
            match self.cache.get(&Key::Category(id)).await {
                Lookup::Hit(Cached::Category(view)) => found.push(view),
                Lookup::Hit(_) => missing.push((id, None)),
                Lookup::Miss(stamp) => missing.push((id, Some(stamp))),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let rows = categories::Entity::find().filter(categories::Column::Id.is_in(missing.iter().map(|(id, _)| *id))).all(&self.db).await?;
        for row in rows {
            let view = category_view(&row);
            if let Some((_, Some(stamp))) = missing.iter().find(|(id, _)| *id == row.id) {
                self.cache.put(&Key::Category(row.id), Cached::Category(view.clone()), *stamp).await;
            }
            found.push(view);
        }
        Ok(found)
    }
}
