//! `contract!`: one declaration of a module's operations, from which both ends of every wire
//! are generated, so the trait, the server and the client cannot drift apart.

/// Declares a module contract.
///
/// ```text
/// shared_kernel::contract! {
///     /// What the users module offers.
///     pub trait UsersApi as "users" {
///         /// Creates an account.
///         fn register(input: RegisterUser) -> UserView;
///         fn me() -> UserView, idempotent;
///     }
/// }
/// ```
///
/// An operation whose repeat has no further effect (a read, a write keyed by what it writes)
/// ends `, idempotent`: `fn get_user(id: UserId) -> UserView, idempotent;`. A remote client
/// retries such an operation after a transient failure (with backoff, see
/// [`crate::resilience`]); it sends any other operation once. An operation that other modules
/// call on their own behalf names them: `fn reserve(..) -> ReserveOutcome, services [orders];`
/// (flags combine: `, idempotent, services [orders, edge]`). That list is the one place the
/// callee's check reads (`services_allowed::reserve`). An operation every process of a
/// deployment calls for itself (the users' `signing_keys`, which every process verifies tokens
/// with) ends `, every_process`. Both lists are also what `cleave trust init` derives each
/// process's broker permissions from.
///
/// expands to:
/// - `pub trait UsersApi`: each operation as `async fn op(&self, caller: &Caller, args…) ->
///   Result<T, ApiError>`, object safe (`Arc<dyn UsersApi>`);
/// - with the invoking crate's `http` feature, `pub mod http_wire` holding
///   `router(api, resolver)`, an axum router serving any `Arc<dyn UsersApi>` at
///   `POST /rpc/<module>/<op>`, and `Client`, which implements the trait over HTTP. Arguments
///   travel as a JSON object named after the parameters; results as JSON; errors as problem
///   details, read back into the same `ApiError`;
/// - with its `nats` feature (which needs `http`), `pub mod nats_wire` holding `serve(api,
///   resolver, options)`, the module as a NATS micro service (service name = the module, one
///   endpoint per operation), and `Client`, which implements the trait by NATS request/reply.
///   The same codec as over HTTP ([`crate::wire::codec`]).
///
/// - `pub mod metered` holding `Metered`, which wraps an implementation in this process and
///   counts each call (`contract_calls_total{transport="local"}`), as the clients count theirs.
///
/// `http_wire::router_as(name, ..)`, `http_wire::Client::as_name(name, ..)` and
/// `nats_wire::serve_as(name, ..)` serve and call the contract under another name than its
/// own: for a contract every module offers once (its dead letters, `outbox::admin`).
#[macro_export]
macro_rules! contract {
    (
        $(#[$trait_meta:meta])*
        $vis:vis trait $trait_name:ident as $module:literal {
            $(
                $(#[$op_meta:meta])*
                fn $op:ident ( $( $arg:ident : $arg_ty:ty ),* $(,)? ) -> $ret:ty $(, $flag:ident $([ $($service:ident),* ])?)* ;
            )*
        }
    ) => {
        $(#[$trait_meta])*
        #[$crate::__private::async_trait]
        $vis trait $trait_name: Send + Sync + 'static {
            $(
                $(#[$op_meta])*
                async fn $op(&self, caller: &$crate::Caller $(, $arg: $arg_ty)*) -> ::std::result::Result<$ret, $crate::ApiError>;
            )*
        }

        /// This module as a caller: what its own calls to other modules say they are
        /// (`Caller::Service(SERVICE)`).
        pub const SERVICE: $crate::ServiceName = $crate::ServiceName::named($module);

        /// The services each operation admits on their own behalf, as the contract declares them
        /// (`services [orders]`); an operation that names none admits no service. The module's
        /// checks read these (`Caller::service_allowed`, `Caller::require_service_or_admin`).
        #[allow(non_upper_case_globals)]
        pub mod services_allowed {
            $(
                pub const $op: &[$crate::ServiceName] = $crate::__contract_services!($($flag $([$($service),*])?)*);
            )*
        }

        /// Every operation, with the services it admits.
        pub const OPERATION_SERVICES: &[(&str, &[$crate::ServiceName])] = &[$((stringify!($op), services_allowed::$op)),*];

        /// Every operation, and whether every process calls it for itself (declared
        /// `every_process`).
        pub const OPERATION_EVERY_PROCESS: &[(&str, bool)] = &[$((stringify!($op), $crate::__contract_every_process!($($flag)*))),*];

        /// The adapter for a process that has this module neither in it nor within reach: every
        /// operation answers 503, so the rest of the process works and says what is missing.
        pub mod not_deployed {
            #[allow(unused_imports)]
            use super::*;

            #[derive(Debug, Clone, Copy, Default)]
            pub struct NotDeployed;

            #[$crate::__private::async_trait]
            impl $trait_name for NotDeployed {
                $(
                    async fn $op(&self, _caller: &$crate::Caller $(, _: $arg_ty)*) -> ::std::result::Result<$ret, $crate::ApiError> {
                        Err($crate::ApiError::not_sent(concat!("the ", $module, " module is not deployed with this service"), 30))
                    }
                )*
            }
        }

        /// The implementation in this process, with each call counted as the remote clients count
        /// theirs (`contract_calls_total{transport="local"}`).
        pub mod metered {
            #[allow(unused_imports)]
            use super::*;

            pub struct Metered(::std::sync::Arc<dyn $trait_name>);

            impl Metered {
                pub fn new(inner: ::std::sync::Arc<dyn $trait_name>) -> Self {
                    Self(inner)
                }
            }

            #[$crate::__private::async_trait]
            impl $trait_name for Metered {
                $(
                    async fn $op(&self, caller: &$crate::Caller $(, $arg: $arg_ty)*) -> ::std::result::Result<$ret, $crate::ApiError> {
                        let started = ::std::time::Instant::now();
                        let result = self.0.$op(caller $(, $arg)*).await;
                        $crate::resilience::record_call($module, stringify!($op), "local", &result, started);
                        result
                    }
                )*
            }
        }

        /// Each operation's arguments as one value: what every wire carries.
        #[cfg(feature = "http")]
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        pub mod wire_args {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[derive($crate::__private::serde::Serialize, $crate::__private::serde::Deserialize)]
                #[serde(crate = "shared_kernel::__private::serde", deny_unknown_fields)]
                pub struct $op { $( pub $arg: $arg_ty, )* }
            )*
        }

        /// Both ends of this contract's HTTP wire, generated from the trait.
        #[cfg(feature = "http")]
        pub mod http_wire {
            use super::wire_args as args;
            #[allow(unused_imports)]
            use super::*;

            /// The module's name on the wire (`/rpc/<module>/<operation>`).
            pub const MODULE: &str = $module;

            /// The operations' paths, for documentation and tests.
            pub const OPERATIONS: &[&str] = &[$(concat!("/rpc/", $module, "/", stringify!($op))),*];

            /// An axum router serving `api` over the wire. Every request's caller is resolved
            /// (tokens verified) by `resolver` on this side: nothing from the wire is trusted.
            pub fn router(
                api: ::std::sync::Arc<dyn $trait_name>,
                resolver: ::std::sync::Arc<dyn $crate::wire::CallerResolver>,
            ) -> $crate::__private::axum::Router {
                router_as(MODULE, api, resolver)
            }

            /// [`router`] under another name (`/rpc/<name>/<operation>`): for a contract that
            /// every module offers, served once per module.
            pub fn router_as(
                name: &str,
                api: ::std::sync::Arc<dyn $trait_name>,
                resolver: ::std::sync::Arc<dyn $crate::wire::CallerResolver>,
            ) -> $crate::__private::axum::Router {
                #[allow(unused_mut)]
                let mut router = $crate::__private::axum::Router::new();
                $(
                    router = router.route(
                        &format!("/rpc/{name}/{}", stringify!($op)),
                        $crate::wire::rpc_operation(resolver.clone(), $crate::__contract_handler!(api, $op($($arg),*))),
                    );
                )*
                router
            }

            /// Implements the contract by calling a remote service over HTTP.
            #[derive(Clone)]
            pub struct Client {
                rpc: $crate::wire::RpcClient,
                /// Set when it calls the contract under another name ([`Client::as_name`]).
                name: ::std::option::Option<&'static str>,
            }

            impl Client {
                pub fn new(rpc: $crate::wire::RpcClient) -> Self {
                    Self { rpc, name: None }
                }

                /// Calls the contract served under `name` (see [`router_as`]).
                pub fn as_name(name: &'static str, rpc: $crate::wire::RpcClient) -> Self {
                    Self { rpc, name: Some(name) }
                }
            }

            #[$crate::__private::async_trait]
            impl $trait_name for Client {
                $(
                    async fn $op(&self, caller: &$crate::Caller $(, $arg: $arg_ty)*) -> ::std::result::Result<$ret, $crate::ApiError> {
                        let args = args::$op { $($arg),* };
                        let operation = $crate::resilience::Operation { name: stringify!($op), idempotent: $crate::__contract_idempotent!($($flag $([$($service),*])?)*) };
                        self.rpc.call(caller, self.name.unwrap_or(MODULE), operation, &args).await
                    }
                )*
            }
        }

        /// Both ends of this contract's NATS wire, generated from the trait.
        #[cfg(feature = "nats")]
        pub mod nats_wire {
            use super::wire_args as args;
            #[allow(unused_imports)]
            use super::*;

            /// The module's name on the wire: its service name, and its subjects'
            /// (`<prefix>.rpc.<module>.<operation>`).
            pub const MODULE: &str = $module;

            /// The operations' endpoint names.
            pub const OPERATIONS: &[&str] = &[$(stringify!($op)),*];

            /// Serves `api` as the NATS micro service of this module. Every call's caller is
            /// resolved by `resolver` on this side: nothing from the wire is trusted.
            ///
            /// # Errors
            /// The service cannot be registered (the connection is gone).
            pub async fn serve(
                api: ::std::sync::Arc<dyn $trait_name>,
                resolver: ::std::sync::Arc<dyn $crate::wire::CallerResolver>,
                options: $crate::nats_wire::ServeOptions,
            ) -> ::std::result::Result<$crate::nats_wire::NatsService, $crate::nats_wire::WireError> {
                serve_as(MODULE, api, resolver, options).await
            }

            /// [`serve`] as the micro service `name` (subjects `<prefix>.rpc.<name>.<operation>`):
            /// for a contract that every module offers, served once per module. A client
            /// reaches it with a `NatsClient` made for `name`.
            ///
            /// # Errors
            /// The service cannot be registered (the connection is gone).
            pub async fn serve_as(
                name: &'static str,
                api: ::std::sync::Arc<dyn $trait_name>,
                resolver: ::std::sync::Arc<dyn $crate::wire::CallerResolver>,
                options: $crate::nats_wire::ServeOptions,
            ) -> ::std::result::Result<$crate::nats_wire::NatsService, $crate::nats_wire::WireError> {
                #[allow(unused_mut)]
                let mut operations = ::std::vec::Vec::new();
                $(
                    operations.push($crate::nats_wire::Operation::new(stringify!($op), $crate::__contract_handler!(api, $op($($arg),*))));
                )*
                let description = concat!("cleave's ", $module, " contract");
                $crate::nats_wire::serve(name, env!("CARGO_PKG_VERSION"), description, resolver, options, operations).await
            }

            /// Implements the contract by calling the module's NATS service.
            #[derive(Clone, Debug)]
            pub struct Client {
                nats: $crate::nats_wire::NatsClient,
            }

            impl Client {
                pub fn new(nats: $crate::nats_wire::NatsClient) -> Self {
                    Self { nats }
                }
            }

            #[$crate::__private::async_trait]
            impl $trait_name for Client {
                $(
                    async fn $op(&self, caller: &$crate::Caller $(, $arg: $arg_ty)*) -> ::std::result::Result<$ret, $crate::ApiError> {
                        let args = args::$op { $($arg),* };
                        let operation = $crate::resilience::Operation { name: stringify!($op), idempotent: $crate::__contract_idempotent!($($flag $([$($service),*])?)*) };
                        self.nats.call(caller, operation, &args).await
                    }
                )*
            }
        }
    };
}

/// Whether an operation is declared `idempotent` (for `contract!` only).
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_idempotent {
    () => {
        false
    };
    (idempotent $($rest:tt)*) => {
        true
    };
    (services [$($service:ident),*] $($rest:tt)*) => {
        $crate::__contract_idempotent!($($rest)*)
    };
    (every_process $($rest:tt)*) => {
        $crate::__contract_idempotent!($($rest)*)
    };
    ($other:ident $($rest:tt)*) => {
        compile_error!(concat!("unknown operation flag `", stringify!($other), "`: the flags are `idempotent`, `services [..]` and `every_process`"))
    };
}

/// Whether an operation is declared `every_process` (for `contract!` only).
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_every_process {
    () => {
        false
    };
    (every_process $($rest:ident)*) => {
        true
    };
    ($other:ident $($rest:ident)*) => {
        $crate::__contract_every_process!($($rest)*)
    };
}

/// The services an operation admits, as `services [..]` names them (for `contract!` only).
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_services {
    () => {
        &[]
    };
    (services [$($service:ident),*] $($rest:tt)*) => {
        &[$($crate::ServiceName::named(stringify!($service))),*]
    };
    ($other:ident $($rest:tt)*) => {
        $crate::__contract_services!($($rest)*)
    };
}

/// The handler both wires serve an operation with: the caller and the arguments value in, the
/// trait's method called. (For `contract!` only; `args` is the expansion's argument structs.)
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_handler {
    ($api:ident, $op:ident ( $($arg:ident),* )) => {{
        let api = $api.clone();
        move |caller: $crate::Caller, args: args::$op| {
            let api = api.clone();
            #[allow(unused_variables)]
            let args::$op { $($arg),* } = args;
            async move { api.$op(&caller $(, $arg)*).await }
        }
    }};
}
