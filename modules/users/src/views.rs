//! Accounts as the contract shows them.

use crate::domain;
use crate::entities::users;
use crate::store::STATUS_ACTIVE;
use shared_kernel::UserId;
use users_contract::{UserStatus, UserView};

pub(crate) fn view(model: &users::Model) -> UserView {
    UserView {
        id: UserId::from_uuid(model.id),
        email: model.email.clone(),
        name: model.name.clone(),
        roles: domain::roles_from_column(&model.roles),
        status: if model.status == STATUS_ACTIVE { UserStatus::Active } else { UserStatus::Deactivated },
        created_at: model.created_at,
    }
}
