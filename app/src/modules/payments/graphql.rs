//! Payments has no GraphQL fields of its own: an order's payment is a field of `Order`
//! (`orders::graphql::Payment`), read through the payments contract.

/// No queries of its own.
pub type Query = crate::graphql::support::NoFields;
/// No mutations of its own.
pub type Mutation = crate::graphql::support::NoFields;
