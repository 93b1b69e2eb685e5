//! Payments has no GraphQL fields of its own: an order's payment is a field of `Order`
//! (`orders::graphql::Payment`), read through the payments contract.

/// No queries of its own.
pub type Query = super::super::NoFields;
/// No mutations of its own.
pub type Mutation = super::super::NoFields;
