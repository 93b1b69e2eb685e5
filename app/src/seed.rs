//! Demo data: about fifty products in five categories, through the catalog contract, as an
//! admin of this process. Running it again adds nothing (existing names and SKUs are kept).

use catalog_contract::{CatalogApi, NewCategory, NewProduct};
use shared_kernel::{ApiError, AuthenticatedUser, Caller, Currency, Money, Role, Secret, UserId};

const CATEGORIES: &[(&str, &str, &[&str])] = &[
    (
        "Books",
        "BOOK",
        &[
            "The Rust Programming Language",
            "Designing Data-Intensive Applications",
            "Domain-Driven Design",
            "Refactoring",
            "The Pragmatic Programmer",
            "Release It!",
            "Database Internals",
            "Zero To Production",
            "Crafting Interpreters",
            "Programming Rust",
        ],
    ),
    (
        "Kitchen",
        "KTCH",
        &[
            "Cast Iron Pan",
            "Chef's Knife",
            "Pepper Mill",
            "Espresso Cups (set of 4)",
            "Cutting Board",
            "Dutch Oven",
            "Tea Kettle",
            "Measuring Spoons",
            "Salad Bowl",
            "Whisk",
        ],
    ),
    (
        "Garden",
        "GRDN",
        &[
            "Watering Can",
            "Pruning Shears",
            "Seed Tray",
            "Garden Gloves",
            "Trowel",
            "Rain Gauge",
            "Bird Feeder",
            "Compost Bin",
            "Hose Reel",
            "Plant Labels",
        ],
    ),
    (
        "Toys",
        "TOYS",
        &[
            "Wooden Blocks",
            "Puzzle (500 pieces)",
            "Kite",
            "Marbles",
            "Spinning Top",
            "Board Game",
            "Yo-yo",
            "Jigsaw Globe",
            "Train Set",
            "Stacking Rings",
        ],
    ),
    (
        "Music",
        "MUSC",
        &[
            "Ukulele",
            "Harmonica",
            "Metronome",
            "Guitar Strings",
            "Tuning Fork",
            "Drumsticks",
            "Music Stand",
            "Capo",
            "Kalimba",
            "Sheet Music Folder",
        ],
    ),
];

/// What a seed run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub categories_created: usize,
    pub products_created: usize,
}

/// The identity seeding acts as: an admin that exists only inside this process (it never crosses
/// a wire, so it carries no token).
fn seeding_admin() -> Caller {
    Caller::User(AuthenticatedUser {
        id: UserId::from_uuid(uuid::Uuid::nil()),
        roles: vec![Role::Admin],
        token: Secret::new(String::new()),
    })
}

/// Creates the demo categories and products that do not exist yet.
///
/// # Errors
/// Anything but "already exists" from the catalog.
pub async fn seed_demo(catalog: &dyn CatalogApi) -> Result<SeedReport, ApiError> {
    let admin = seeding_admin();
    let mut report = SeedReport::default();
    let existing = catalog.list_categories(&admin, shared_kernel::PageRequest::new(Some(100), None)?).await?.items;
    for (category_index, (category, prefix, products)) in CATEGORIES.iter().enumerate() {
        let category_id = match existing.iter().find(|c| c.name.eq_ignore_ascii_case(category)) {
            Some(found) => found.id,
            None => {
                report.categories_created += 1;
                catalog.create_category(&admin, NewCategory { name: (*category).to_owned() }).await?.id
            }
        };
        for (index, name) in products.iter().enumerate() {
            let n = category_index * 10 + index;
            let product = NewProduct {
                sku: format!("DEMO-{prefix}-{:02}", index + 1),
                name: (*name).to_owned(),
                description: format!("{name}, from the {category} demo range."),
                price: Money::new(499 + (n as i64 * 373) % 6000, Currency::EUR),
                category_id: Some(category_id),
                stock_on_hand: 20 + (n as i64 * 7) % 80,
            };
            match catalog.create_product(&admin, product).await {
                Ok(_) => report.products_created += 1,
                Err(ApiError::Conflict { .. }) => {}
                Err(other) => return Err(other),
            }
        }
    }
    Ok(report)
}
